"""Single-use credentials stay single-use and failures are all counted when requests race (real PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import LoginSession, User
from accounts.tests.factories import PASSWORD, UserFactory, enrol_totp, new_backup_code, tokens_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def race(count: int, action: Callable[[], int]) -> list[int]:
    """Run `action` in `count` threads released together; return their results, sorted.

    A thread that raises fails the test (its exception is re-raised here): a race whose
    requests all crash must not look like a race that refused them.
    """
    barrier = threading.Barrier(count)
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            outcome = action()
            with lock:
                results.append(outcome)
        except BaseException as exc:  # re-raised in the test's thread below
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a racing thread never finished"
    if errors:
        raise errors[0]
    assert len(results) == count
    return sorted(results)


def _mfa_tokens(user: User, count: int) -> list[str]:
    client = APIClient()
    return [
        client.post("/api/v1/auth/token", {"email": user.email, "password": PASSWORD}).json()["error"]["details"][
            "mfa_token"
        ]
        for _ in range(count)
    ]


def test_one_totp_code_raced_from_many_logins_logs_in_once():
    user = UserFactory()
    _, code = enrol_totp(user)
    mfa_tokens = iter(_mfa_tokens(user, 5))
    token_lock = threading.Lock()

    def attempt() -> int:
        with token_lock:
            mfa_token = next(mfa_tokens)
        return APIClient().post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": code}).status_code

    assert race(5, attempt) == [200, 401, 401, 401, 401]


def test_one_backup_code_raced_logs_in_once():
    user = UserFactory()
    code = new_backup_code(user)
    mfa_tokens = iter(_mfa_tokens(user, 5))
    token_lock = threading.Lock()

    def attempt() -> int:
        with token_lock:
            mfa_token = next(mfa_tokens)
        return APIClient().post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": code}).status_code

    assert race(5, attempt) == [200, 401, 401, 401, 401]


def test_one_refresh_token_raced_rotates_exactly_once_and_ends_the_login():
    user = UserFactory()
    refresh = tokens_for(user)["refresh"]
    rotated: list[str] = []

    def attempt() -> int:
        response = APIClient().post("/api/v1/auth/token/refresh", {"refresh": refresh})
        if response.status_code == 200:
            rotated.append(response.json()["refresh"])
        return response.status_code

    # The session row lock serialises them: the first rotates, every later one presents a
    # spent token (reuse: the login is revoked) or a revoked session.
    assert race(4, attempt) == [200, 401, 401, 401]
    session = LoginSession.objects.get(user=user)
    assert session.revoked_reason == "refresh_token_reuse" and session.revoked_at is not None
    # Whoever came second presented a spent token: the login is over for everyone, the winner too.
    [winner] = rotated
    assert APIClient().post("/api/v1/auth/token/refresh", {"refresh": winner}).status_code == 401


def test_concurrent_wrong_passwords_are_all_counted_and_lock_once():
    user = UserFactory()

    def attempt() -> int:
        return APIClient().post("/api/v1/auth/token", {"email": user.email, "password": "wrong!"}).status_code

    results = race(8, attempt)
    user.refresh_from_db()
    assert user.lock_count == 1
    assert user.locked_until is not None
    # 5 failures lock; the rest were refused as locked (before or after their check).
    assert results.count(401) >= 5
    assert set(results) <= {401, 403}
