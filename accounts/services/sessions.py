"""Login sessions ("token families") and the JWTs descended from them.

Every login creates one LoginSession; its refresh token rotates on every use and
only the newest one (`current_refresh_jti`) is accepted. Presenting an older one
means it was copied: the whole session is revoked, so neither the thief nor the
customer can go on with it (refresh is checked here, access tokens on every request
by accounts.api.authentication).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.exceptions import SessionRevoked
from accounts.models import Device, LoginSession, User
from accounts.services import auth_cache
from accounts.services.auth_cache import auth_state_changed
from bankcore.api.logging import current_request_meta
from bankcore.audit import audit_record
from bankcore.crypto import EncryptedTextField
from notifications.events import Event
from notifications.services import notify

SESSION_CLAIM = "fam"
DEVICE_CLAIM = "device_id"


def _new_refresh(*, session: LoginSession) -> RefreshToken:
    """A refresh token of `session`, recorded as outstanding (simplejwt's blacklist tables)."""
    refresh = RefreshToken()
    refresh[jwt_settings.USER_ID_CLAIM] = str(session.user_id)
    refresh[SESSION_CLAIM] = str(session.id)
    if session.device_id:
        refresh[DEVICE_CLAIM] = str(session.device_id)
    OutstandingToken.objects.create(
        user_id=session.user_id,
        jti=refresh[jwt_settings.JTI_CLAIM],
        token=str(refresh),
        created_at=timezone.now(),
        expires_at=datetime.fromtimestamp(refresh["exp"], tz=UTC),
    )
    return refresh


def _pair(refresh: RefreshToken) -> dict[str, str]:
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def session_start(*, user: User, method: str, device: Device | None = None) -> tuple[LoginSession, dict[str, str]]:
    """Complete a login: new session, first token pair, failure count reset, audited.

    Tells the customer (NEW_DEVICE_LOGIN) when a password login comes from a client
    (User-Agent) none of their earlier logins used. Atomic.
    """
    meta = current_request_meta()
    now = timezone.now()
    with transaction.atomic():
        earlier = LoginSession.objects.filter(user=user)
        unfamiliar_client = (
            device is None and earlier.exists() and not earlier.filter(user_agent=meta.user_agent).exists()
        )
        session = LoginSession.objects.create(
            user=user, device=device, method=method, ip=meta.ip, user_agent=meta.user_agent
        )
        refresh = _new_refresh(session=session)
        session.current_refresh_jti = refresh[jwt_settings.JTI_CLAIM]
        session.save(update_fields=["current_refresh_jti"])
        User.objects.filter(pk=user.pk).update(failed_auth_attempts=0, last_login=now)
        auth_state_changed(user.pk, revokes=False)  # a queryset update sends no post_save
        user.failed_auth_attempts = 0
        user.last_login = now
        if device is not None:
            Device.objects.filter(pk=device.pk).update(last_login_at=now)
        if unfamiliar_client:
            notify(
                user=user,
                event=Event.NEW_DEVICE_LOGIN,
                context={
                    "title": "New sign-in to your account",
                    "body": f"Someone signed in from {meta.user_agent or 'an unknown app'} ({meta.ip}). "
                    "If this was not you, change your password and call us.",
                    "user_agent": meta.user_agent,
                    "ip": meta.ip,
                },
            )
        audit_record(
            action="auth.login",
            actor=user,
            target=user,
            details={
                "method": method,
                "session": str(session.id),
                "device": str(device.id) if device else None,
            },
        )
    return session, _pair(refresh)


def _decode_refresh(raw: str) -> dict[str, Any]:
    """The verified claims of a refresh token of one of our sessions, else SessionRevoked (401)."""
    try:
        payload = token_backend.decode(raw, verify=True)  # type: ignore[arg-type]  # stubs say Token; it takes str
    except TokenBackendError:
        raise SessionRevoked("The refresh token is not valid or has expired.") from None
    claims_present = payload.get(SESSION_CLAIM) and payload.get(jwt_settings.USER_ID_CLAIM)
    if payload.get(jwt_settings.TOKEN_TYPE_CLAIM) != "refresh" or not claims_present:
        raise SessionRevoked("The refresh token is not valid or has expired.")
    try:
        uuid.UUID(str(payload[SESSION_CLAIM]))
    except ValueError:
        raise SessionRevoked("The refresh token is not valid or has expired.") from None
    return payload


def _revoke(*, session: LoginSession, reason: str) -> None:
    """Mark revoked and blacklist its live refresh token. Call inside a transaction."""
    session.revoked_at = timezone.now()
    session.revoked_reason = reason
    session.save(update_fields=["revoked_at", "revoked_reason"])
    if session.current_refresh_jti:
        outstanding = OutstandingToken.objects.filter(jti=session.current_refresh_jti).first()
        if outstanding is not None:
            BlacklistedToken.objects.get_or_create(token=outstanding)


def session_refresh(*, refresh: str) -> dict[str, str]:
    """Rotate: blacklist the presented refresh token and return a new pair of the same session.

    A refresh token that was already rotated away is a stolen copy (or the
    customer's copy after a thief used it first): the session is revoked, the event
    audited, and the caller gets 401. Row-locks the session, so two concurrent uses
    of one token cannot both rotate it.
    """
    payload = _decode_refresh(refresh)
    jti = payload[jwt_settings.JTI_CLAIM]
    reused = False
    with transaction.atomic():
        session = (
            LoginSession.objects.select_for_update()
            .select_related("user")
            .filter(pk=payload[SESSION_CLAIM], user_id=str(payload.get(jwt_settings.USER_ID_CLAIM)))
            .first()
        )
        if session is None or session.revoked_at is not None or not session.user.is_active:
            raise SessionRevoked("This session has ended. Log in again.")
        if jti != session.current_refresh_jti:
            _revoke(session=session, reason="refresh_token_reuse")
            audit_record(
                action="auth.refresh_token_reuse",
                target=session.user,
                details={"session": str(session.id), "jti": jti},
            )
            reused = True
        else:
            outstanding, _ = OutstandingToken.objects.get_or_create(
                jti=jti,
                defaults={
                    "user_id": session.user_id,
                    "token": refresh,
                    "created_at": timezone.now(),
                    "expires_at": datetime.fromtimestamp(payload["exp"], tz=UTC),
                },
            )
            BlacklistedToken.objects.get_or_create(token=outstanding)
            new_refresh = _new_refresh(session=session)
            session.current_refresh_jti = new_refresh[jwt_settings.JTI_CLAIM]
            session.last_refreshed_at = timezone.now()
            session.save(update_fields=["current_refresh_jti", "last_refreshed_at"])
    if reused:
        # Outside the atomic block: the revocation is committed before we answer.
        raise SessionRevoked(
            "This refresh token was already used. For your safety this login has been ended; log in again."
        )
    return _pair(new_refresh)


def session_logout(*, refresh: str) -> None:
    """End the session the refresh token belongs to (blacklists its refresh token). Idempotent."""
    payload = _decode_refresh(refresh)
    with transaction.atomic():
        session = (
            LoginSession.objects.select_for_update()
            .filter(pk=payload[SESSION_CLAIM], user_id=str(payload.get(jwt_settings.USER_ID_CLAIM)))
            .first()
        )
        if session is None or session.revoked_at is not None:
            return
        _revoke(session=session, reason="logout")
        audit_record(
            action="auth.logout", actor=session.user, target=session.user, details={"session": str(session.id)}
        )


def sessions_revoke(
    *, user: User, reason: str, keep_session_id: str | None = None, device: Device | None = None
) -> int:
    """Revoke the user's live sessions (or only those of `device`), except `keep_session_id`.

    Call inside the caller's transaction. Returns how many were revoked.
    """
    sessions = LoginSession.objects.select_for_update().filter(user=user, revoked_at__isnull=True)
    if device is not None:
        sessions = sessions.filter(device=device)
    if keep_session_id:
        sessions = sessions.exclude(pk=keep_session_id)
    count = 0
    for session in sessions.order_by("pk"):
        _revoke(session=session, reason=reason)
        count += 1
    return count


def session_is_live(*, session_id: str, user_id: Any) -> bool:
    return LoginSession.objects.filter(pk=session_id, user_id=user_id, revoked_at__isnull=True).exists()


def user_with_session_state(*, user_id: Any, session_id: str) -> tuple[User, bool] | None:
    """The user and whether `session_id` is one of their unrevoked sessions.

    What every authenticated request needs (the user row and the revocation check): from the
    live-session cache (accounts.services.auth_cache, which every change to the user or their
    sessions retires at once), else one hand-written query, whose answer for a live session is
    then cached. Encrypted columns (and, from the cache, the password hash and lockout state) are left deferred,
    so they load only if a request reads them. None if either id is malformed or unknown.
    """
    try:
        user_pk, session_pk = uuid.UUID(str(user_id)), uuid.UUID(str(session_id))
    except ValueError:
        return None
    use_cache = auth_cache.enabled()
    if use_cache:
        generation, cached = auth_cache.cached_user_row(user_id=user_pk, session_id=session_pk)
        if cached is not None:
            return User.from_db(connection.alias, _CACHED_ATTNAMES, cached), True
    with connection.cursor() as cursor:
        cursor.execute(_USER_WITH_SESSION_SQL, [session_pk, user_pk])
        row = cursor.fetchone()
    if row is None:
        return None
    values, live = row[:-1], bool(row[-1])
    if use_cache and live:
        cached_row = tuple(value for value, field in zip(values, _USER_FIELDS, strict=True) if field in _CACHED)
        auth_cache.cache_user_row(generation=generation, user_id=user_pk, session_id=session_pk, row=cached_row)
    return User.from_db(connection.alias, [f.attname for f in _USER_FIELDS], values), live


_USER_FIELDS = [f for f in User._meta.concrete_fields if not isinstance(f, EncryptedTextField)]
# Only the model's own column names are spliced in; the ids are bound parameters.
_USER_WITH_SESSION_SQL = (
    "SELECT <columns>, EXISTS (SELECT 1 FROM accounts_loginsession s"
    " WHERE s.id = %s AND s.user_id = u.id AND s.revoked_at IS NULL)"
    " FROM accounts_user u WHERE u.id = %s"
).replace("<columns>", ", ".join(f"u.{f.column}" for f in _USER_FIELDS))
# What the live-session cache keeps: the same row without the password hash and the lockout
# state, which stay deferred - read fresh from the database by the flows that check them.
_NOT_CACHED = frozenset({"password", "failed_auth_attempts", "locked_until", "lock_count"})
_CACHED = [f for f in _USER_FIELDS if f.attname not in _NOT_CACHED]
_CACHED_ATTNAMES = [f.attname for f in _CACHED]
