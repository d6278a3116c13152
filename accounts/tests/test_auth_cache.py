"""The live-session cache (accounts/services/auth_cache.py): a repeated request reads no user or
session row, and every change that ends or alters a session is seen on the very next request."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import LoginSession
from accounts.services import auth_cache
from accounts.services.sessions import user_with_session_state
from accounts.tests.factories import PASSWORD, UserFactory
from bankcore.redis_client import forget_shared_redis

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _login(user) -> dict[str, str]:
    return APIClient().post("/api/v1/auth/token", {"email": user.email, "password": PASSWORD}).json()


def _me(access: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get("/api/v1/me")


def _auth_queries(captured) -> list[str]:
    return [query["sql"] for query in captured if "accounts_loginsession" in query["sql"]]


def test_the_cache_is_the_shared_redis_one_in_tests():
    assert auth_cache.enabled()  # otherwise nothing below tests the cache


def test_a_repeated_request_reads_no_user_or_session_row():
    tokens = _login(UserFactory())
    assert _me(tokens["access"]).status_code == 200  # read from the database, then cached
    with CaptureQueriesContext(connection) as queries:
        again = _me(tokens["access"])
    assert again.status_code == 200 and again.json()["email"]
    assert _auth_queries(queries.captured_queries) == []


@pytest.mark.parametrize("change", ["logout", "refresh_reuse", "deactivate", "password_change"])
def test_a_cached_session_ends_on_the_next_request_after(change):
    user = UserFactory()
    tokens = _login(user)
    client = APIClient()
    assert _me(tokens["access"]).status_code == 200
    assert _me(tokens["access"]).status_code == 200  # now served from the cache
    if change == "logout":
        assert client.post("/api/v1/auth/logout", {"refresh": tokens["refresh"]}).status_code == 204
    elif change == "refresh_reuse":
        client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]})
        assert client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}).status_code == 401
    elif change == "deactivate":
        user.is_active = False
        user.save(update_fields=["is_active"])
    else:
        other = _login(user)["access"]  # another login changes it, its user from the cache too
        assert _me(other).status_code == 200
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {other}")
        response = client.post(
            "/api/v1/auth/password", {"current_password": PASSWORD, "new_password": "An0ther-l0ng-passphrase"}
        )
        assert response.status_code in (200, 204), response.content
    assert _me(tokens["access"]).status_code == 401


def test_an_answer_read_before_a_revocation_committed_is_never_served_after_it(
    django_capture_on_commit_callbacks,
):
    """The race the generation guards: a request reads the session as live, the revocation
    commits, then the request stores what it read. That entry must not be served."""
    user = UserFactory()
    tokens = _login(user)
    session = LoginSession.objects.get(user=user)
    generation, cached = auth_cache.cached_user_row(user_id=user.pk, session_id=session.pk)
    assert cached is None
    row = user_with_session_state(user_id=user.pk, session_id=session.pk)  # read: live (and cached)
    assert row is not None and row[1] is True
    with django_capture_on_commit_callbacks(execute=True):
        session.revoked_at = session.created_at
        session.save(update_fields=["revoked_at"])
    # The slow request stores its stale answer under the generation it read first.
    auth_cache.cache_user_row(generation=generation, user_id=user.pk, session_id=session.pk, row=("stale",))
    assert auth_cache.cached_user_row(user_id=user.pk, session_id=session.pk)[1] is None
    assert user_with_session_state(user_id=user.pk, session_id=session.pk)[1] is False
    assert _me(tokens["access"]).status_code == 401


@pytest.fixture
def auth_cache_unreachable(settings):
    """The auth cache's Redis on a port nothing listens on (a real refused connection)."""
    from integrations.simulation import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    forget_shared_redis()
    yield
    forget_shared_redis()


def test_without_the_cache_sign_in_and_failure_counting_go_on_but_a_revocation_answers_503(auth_cache_unreachable):
    """Sign-in bookkeeping cannot make a cached answer wrong, so it does not need Redis; a logout
    could leave a cached session live, so it is refused (503, nothing changed) until Redis answers."""
    user = UserFactory()
    tokens = _login(user)
    assert "access" in tokens, tokens
    assert _me(tokens["access"]).status_code == 200  # read from the database
    wrong = APIClient().post("/api/v1/auth/token", {"email": user.email, "password": "not-the-password-1"})
    assert wrong.status_code == 401
    user.refresh_from_db()
    assert user.failed_auth_attempts == 1  # counted on the database alone
    refreshed = APIClient().post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200, refreshed.content
    logout = APIClient().post("/api/v1/auth/logout", {"refresh": refreshed.json()["refresh"]})
    assert logout.status_code == 503 and logout.json()["error"]["code"] == "unavailable"
    assert LoginSession.objects.get(user=user).revoked_at is None
