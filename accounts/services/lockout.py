"""Consecutive failed authentications per account, kept in the database.

Every factor counts the same (password, TOTP or backup code, device signature,
step-up code): after MAX_FAILED_ATTEMPTS in a row the account locks for
BASE_LOCK, doubling with each further lock up to MAX_LOCK. The counter is a column
on the user row, so flushing Redis or restarting processes does not reset it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.exceptions import AccountLocked
from accounts.models import User
from accounts.services.auth_cache import auth_state_changed
from accounts.services.sessions import sessions_revoke
from bankcore.audit import audit_record
from notifications.events import Event
from notifications.services import notify

MAX_FAILED_ATTEMPTS = 5
BASE_LOCK = timedelta(minutes=15)
MAX_LOCK = timedelta(hours=24)


def lock_duration(*, previous_locks: int) -> timedelta:
    return min(BASE_LOCK * (2 ** min(previous_locks, 10)), MAX_LOCK)


def ensure_not_locked(*, user: User) -> None:
    """Raise AccountLocked while the lock lasts, whatever credentials came with the request."""
    if user.is_locked():
        raise AccountLocked(details={"locked_until": user.locked_until.isoformat()})  # type: ignore[union-attr]


def record_auth_failure(*, user: User, factor: str, reason: str = "") -> bool:
    """Count one failed attempt; lock the account on the MAX_FAILED_ATTEMPTS-th. Returns whether it locked.

    Commits on its own (call it outside the request's business transaction): the
    count must survive the error response that follows. Row-locks the user, so
    concurrent failures are all counted.
    """
    with transaction.atomic():
        locked_user = User.objects.select_for_update().get(pk=user.pk)
        now = timezone.now()
        if locked_user.is_locked(now):
            return True
        locked_user.failed_auth_attempts += 1
        attempt = locked_user.failed_auth_attempts
        locked = attempt >= MAX_FAILED_ATTEMPTS
        if locked:
            locked_user.locked_until = now + lock_duration(previous_locks=locked_user.lock_count)
            locked_user.lock_count += 1
            locked_user.failed_auth_attempts = 0
        locked_user.save(update_fields=["failed_auth_attempts", "locked_until", "lock_count"])
        user.failed_auth_attempts = locked_user.failed_auth_attempts
        user.locked_until = locked_user.locked_until
        user.lock_count = locked_user.lock_count
        audit_record(
            action="auth.failed",
            target=locked_user,
            details={"factor": factor, "reason": reason, "attempt": attempt},
        )
        if locked:
            _announce_lock(user=locked_user, reason=f"{MAX_FAILED_ATTEMPTS} failed attempts", actor=None)
    return locked


def record_auth_success(*, user: User) -> None:
    """A fully successful authentication: the consecutive-failure count starts again."""
    User.objects.filter(pk=user.pk).update(failed_auth_attempts=0)
    auth_state_changed(user.pk, revokes=False)  # a queryset update sends no post_save
    user.failed_auth_attempts = 0


def lock_account(*, user: User, actor: User, until: datetime | None = None) -> User:
    """Staff lock (e.g. suspected fraud): sign-in refused and every session ended. Audited; the customer is told.

    (Automatic locks after failed attempts leave existing sessions alone, so an
    attacker guessing passwords cannot log the real customer out.)
    """
    with transaction.atomic():
        locked_user = User.objects.select_for_update().get(pk=user.pk)
        locked_user.locked_until = until or timezone.now() + MAX_LOCK
        locked_user.lock_count += 1
        locked_user.save(update_fields=["locked_until", "lock_count"])
        sessions_revoke(user=locked_user, reason="locked_by_staff")
        _announce_lock(user=locked_user, reason="locked by staff", actor=actor)
    return locked_user


def unlock_account(*, user: User, actor: User) -> User:
    """Staff unlock: clears the lock and the failure count. Audited."""
    with transaction.atomic():
        unlocked = User.objects.select_for_update().get(pk=user.pk)
        unlocked.locked_until = None
        unlocked.failed_auth_attempts = 0
        unlocked.save(update_fields=["locked_until", "failed_auth_attempts"])
        audit_record(action="staff.user_unlocked", actor=actor, target=unlocked)
    return unlocked


def _announce_lock(*, user: User, reason: str, actor: User | None) -> None:
    assert user.locked_until is not None
    notify(
        user=user,
        event=Event.ACCOUNT_LOCKED,
        context={
            "title": "Your account is temporarily locked",
            "body": f"Sign-in is blocked until {user.locked_until:%Y-%m-%d %H:%M} UTC ({reason}). "
            "If this was not you, call us.",
            "locked_until": user.locked_until.isoformat(),
            "reason": reason,
        },
    )
    audit_record(
        action="staff.user_locked" if actor else "auth.account_locked",
        actor=actor,
        target=user,
        details={"locked_until": user.locked_until.isoformat(), "reason": reason, "lock_count": user.lock_count},
    )
