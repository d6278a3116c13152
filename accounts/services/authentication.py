"""The login flows: password (+ second factor) and device key. Each ends in sessions.session_start.

Every failure answers the same 401 `invalid_credentials` whatever went wrong (unknown
e-mail, wrong password, wrong code, bad signature), counts against the account when
there is one, and is audited with the real reason.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from uuid import UUID

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.exceptions import InvalidCredentials, MfaRequired
from accounts.models import Device, LoginSession, MfaChallenge, User
from accounts.services.devices import device_challenge_consume, signature_valid
from accounts.services.lockout import ensure_not_locked, record_auth_failure, record_auth_success
from accounts.services.sessions import session_start
from accounts.services.two_factor import check_second_factor, totp_enabled
from bankcore.audit import audit_record

MFA_TOKEN_LIFETIME = timedelta(minutes=5)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user_device(*, user: User, device_id: UUID | str | None) -> Device | None:
    if device_id is None:
        return None
    return Device.objects.filter(pk=device_id, user=user, revoked_at__isnull=True).first()


def password_login(*, email: str, password: str, device_id: UUID | str | None = None) -> dict[str, str]:
    """E-mail and password -> tokens, or MfaRequired (with a 5-minute single-use mfa_token) when TOTP is on.

    Locked accounts answer AccountLocked even with the right password.
    """
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        make_password(password)  # same work as a real check: timing does not reveal unknown e-mails
        with transaction.atomic():
            audit_record(action="auth.failed", details={"factor": "password", "reason": "unknown_email"})
        raise InvalidCredentials()
    ensure_not_locked(user=user)
    if not user.check_password(password) or not user.is_active:
        reason = "wrong_password" if user.is_active else "inactive_user"
        record_auth_failure(user=user, factor="password", reason=reason)
        raise InvalidCredentials()
    device = _user_device(user=user, device_id=device_id)
    if totp_enabled(user=user):
        mfa_token = secrets.token_urlsafe(32)
        MfaChallenge.objects.create(
            user=user, token_hash=_hash(mfa_token), device=device, expires_at=timezone.now() + MFA_TOKEN_LIFETIME
        )
        raise MfaRequired(details={"mfa_token": mfa_token, "expires_in": int(MFA_TOKEN_LIFETIME.total_seconds())})
    _, tokens = session_start(user=user, method=LoginSession.Method.PASSWORD, device=device)
    return tokens


def mfa_login(*, mfa_token: str, code: str) -> dict[str, str]:
    """Exchange an mfa_token and a TOTP or backup code for tokens. The mfa_token works once."""
    challenge = MfaChallenge.objects.select_related("user", "device").filter(token_hash=_hash(mfa_token)).first()
    if challenge is None or challenge.used_at is not None or challenge.expires_at <= timezone.now():
        raise InvalidCredentials("The sign-in has expired or is not valid. Start again with your password.")
    user = challenge.user
    ensure_not_locked(user=user)
    kind = check_second_factor(user=user, code=code)
    if kind is None:
        record_auth_failure(user=user, factor="otp", reason="wrong_code")
        raise InvalidCredentials()
    claimed = MfaChallenge.objects.filter(pk=challenge.pk, used_at__isnull=True).update(used_at=timezone.now())
    if claimed != 1:
        raise InvalidCredentials("The sign-in has expired or is not valid. Start again with your password.")
    method = LoginSession.Method.PASSWORD_TOTP if kind == "totp" else LoginSession.Method.PASSWORD_BACKUP
    device = challenge.device if challenge.device and challenge.device.revoked_at is None else None
    _, tokens = session_start(user=user, method=method, device=device)
    return tokens


def device_login(*, device_id: UUID | str, challenge: str, signature: str) -> dict[str, str]:
    """Tokens for a registered device that signed a fresh challenge with its key.

    Unknown device, revoked device, unknown/expired/reused challenge, wrong signature:
    401, counted against the device's owner. A device-key login is two factors in one
    (possession of the phone's key, unlocked by the owner's biometrics): no TOTP asked.
    """
    device = Device.objects.select_related("user").filter(pk=device_id).first()
    if device is None:
        raise InvalidCredentials()
    user = device.user
    ensure_not_locked(user=user)
    if device.revoked_at is not None:
        reason: str | None = "device_revoked"
    else:
        reason = device_challenge_consume(device=device, challenge=challenge)
        if reason is None and not signature_valid(public_key=device.public_key, message=challenge, signature=signature):
            reason = "bad_signature"
    if reason is not None or not user.is_active:
        record_auth_failure(user=user, factor="device_key", reason=reason or "inactive_user")
        raise InvalidCredentials()
    _, tokens = session_start(user=user, method=LoginSession.Method.DEVICE_KEY, device=device)
    return tokens


def staff_admin_login(*, email: str, password: str, otp_token: str) -> tuple[User, TOTPDevice]:
    """The staff site's sign-in: e-mail, password and the staff TOTP code checked in one step.

    Any failure raises the same InvalidCredentials (unknown e-mail, wrong password,
    inactive or non-staff account, wrong or missing code, locked account), so the
    answer never reveals that the password was right. Every failure on a known account
    counts towards the database lockout shared with the API (accounts.services.lockout);
    while an account is locked nothing is checked, not even a right password and code.
    Audited either way. Returns the user and the OTP device that verified the code.
    """
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None or user.is_locked():
        make_password(password)  # the work of a password check: timing reveals neither case
        with transaction.atomic():
            reason = "unknown_email" if user is None else "account_locked"
            audit_record(action="auth.failed", target=user, details={"factor": "admin_password", "reason": reason})
        raise InvalidCredentials()
    password_ok = user.check_password(password)
    if not (password_ok and user.is_active and user.is_staff):
        reason = "not_active_staff" if password_ok else "wrong_password"
        record_auth_failure(user=user, factor="admin_password", reason=reason)
        raise InvalidCredentials()
    device = _verified_staff_device(user=user, token=otp_token.strip())
    if device is None:
        record_auth_failure(user=user, factor="admin_otp", reason="wrong_code")
        raise InvalidCredentials()
    record_auth_success(user=user)
    with transaction.atomic():
        audit_record(action="staff.admin_login", actor=user, target=user, details={"otp_device": device.persistent_id})
    return user, device


def _verified_staff_device(*, user: User, token: str) -> TOTPDevice | None:
    """The staff member's confirmed admin TOTP device (`manage.py enrol_staff_totp`) that accepts `token`.

    Only those: the customer factors (the app's authenticator, backup codes) do not
    open the staff site. Each device keeps django-otp's own growing delay after
    failures; a device in that delay is skipped, which reads as a wrong code.
    """
    if not token:
        return None
    for device in TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk"):
        allowed, _ = device.verify_is_allowed()
        if allowed and device.verify_token(token):
            return device
    return None
