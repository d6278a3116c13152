"""TOTP two-factor: enrolment, confirmation with backup codes, verification, removal.

A TOTP code is accepted once: the authenticator remembers the newest accepted time
step and a conditional UPDATE records it, so a code seen by a shoulder-surfer or a
proxy cannot be replayed, not even by two requests racing each other. Backup codes
are django-otp static tokens, deleted when used; only a digest of each is stored
(the codes are 12 random characters, ~59 bits, so a fast hash is enough).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import quote, urlencode

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

from accounts.exceptions import InvalidCredentials, TotpAlreadyEnabled
from accounts.models import TotpAuthenticator, User
from accounts.models.two_factor import TOTP_DIGITS, TOTP_STEP
from accounts.services.lockout import ensure_not_locked, record_auth_failure, record_auth_success
from bankcore.api.exceptions import BankError
from bankcore.audit import audit_record
from notifications.events import Event
from notifications.services import notify

BACKUP_CODE_COUNT = 10
BACKUP_CODE_LENGTH = 12
_BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
BACKUP_DEVICE_NAME = "backup codes"


def totp_enabled(*, user: User) -> bool:
    return TotpAuthenticator.objects.filter(user=user, confirmed=True).exists()


def _otpauth_uri(*, user: User, secret_b32: str) -> str:
    issuer = settings.BANK_NAME
    label = quote(f"{issuer}:{user.email}")
    query = urlencode(
        {"secret": secret_b32, "issuer": issuer, "algorithm": "SHA1", "digits": TOTP_DIGITS, "period": TOTP_STEP}
    )
    return f"otpauth://totp/{label}?{query}"


def _qr_svg(data: str) -> str:
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    return image.to_string(encoding="unicode")


def totp_enrol(*, user: User) -> dict[str, Any]:
    """Start enrolment: a fresh unconfirmed secret (replacing an unconfirmed one).

    Refuses while a confirmed authenticator exists (remove it first, with a code).
    """
    with transaction.atomic():
        User.objects.select_for_update().get(pk=user.pk)
        existing = TotpAuthenticator.objects.filter(user=user).first()
        if existing is not None and existing.confirmed:
            raise TotpAlreadyEnabled()
        if existing is not None:
            existing.delete()
        raw = secrets.token_bytes(20)
        TotpAuthenticator.objects.create(user=user, name="authenticator app", secret=raw.hex(), confirmed=False)
        audit_record(action="2fa.totp_enrolment_started", actor=user, target=user)
    secret_b32 = base64.b32encode(raw).decode().rstrip("=")
    uri = _otpauth_uri(user=user, secret_b32=secret_b32)
    return {"secret": secret_b32, "otpauth_uri": uri, "qr_svg": _qr_svg(uri)}


def backup_code_digest(code: str) -> str:
    """What the database keeps for a backup code (16 hex characters of its SHA-256), never the code."""
    return hashlib.sha256(b"bankcore-backup-code:" + _normalise_code(code).encode()).hexdigest()[:16]


def _new_backup_codes(*, user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=BACKUP_DEVICE_NAME, confirmed=True)
    codes = [
        "".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(BACKUP_CODE_LENGTH)) for _ in range(BACKUP_CODE_COUNT)
    ]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=backup_code_digest(code)) for code in codes])
    return [f"{code[:4]}-{code[4:8]}-{code[8:]}" for code in codes]


def totp_confirm(*, user: User, code: str) -> list[str]:
    """Confirm the pending authenticator with a current code; return 10 new backup codes (shown once).

    Wrong code: 400 and nothing changes (this proves the app was set up, it does not
    authenticate anyone).
    """
    with transaction.atomic():
        authenticator = TotpAuthenticator.objects.select_for_update().filter(user=user).first()
        if authenticator is None or authenticator.confirmed:
            raise BankError("There is no pending authenticator to confirm. Start with POST /api/v1/auth/totp.")
        step = authenticator.matching_step(code.strip())
        if step is None:
            raise BankError(details={"code": ["The code is not valid. Check the time on your phone."]})
        authenticator.confirmed = True
        authenticator.last_t = step
        authenticator.confirmed_at = timezone.now()
        authenticator.save(update_fields=["confirmed", "last_t", "confirmed_at"])
        codes = _new_backup_codes(user=user)
        notify(
            user=user,
            event=Event.TWO_FACTOR_CHANGED,
            context={"title": "Two-factor authentication turned on", "body": "Your authenticator app is now required."},
        )
        audit_record(action="2fa.totp_enabled", actor=user, target=user)
    return codes


def _normalise_code(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def check_second_factor(*, user: User, code: str) -> str | None:
    """Consume a TOTP code or one backup code of `user`; return which kind matched, or None.

    Single use either way: the TOTP step is recorded by a conditional UPDATE, the
    backup code is deleted (the DELETE's row count decides a race).
    """
    code = _normalise_code(code)
    if code.isdigit() and len(code) == TOTP_DIGITS:
        authenticator = TotpAuthenticator.objects.filter(user=user, confirmed=True).first()
        if authenticator is None:
            return None
        step = authenticator.matching_step(code)
        if step is None:
            return None
        recorded = TotpAuthenticator.objects.filter(pk=authenticator.pk, last_t__lt=step).update(last_t=step)
        return "totp" if recorded == 1 else None
    if not code:
        return None
    deleted, _ = StaticToken.objects.filter(
        device__user=user, device__confirmed=True, token=backup_code_digest(code)
    ).delete()
    return "backup_code" if deleted else None


def totp_disable(*, user: User, code: str) -> None:
    """Remove TOTP and backup codes. Needs a current TOTP or backup code; a wrong one counts as a failure."""
    ensure_not_locked(user=user)
    if not totp_enabled(user=user):
        raise BankError(details={"code": ["Two-factor authentication is not enabled."]})
    if check_second_factor(user=user, code=code) is None:
        record_auth_failure(user=user, factor="totp", reason="totp_disable")
        raise InvalidCredentials()
    record_auth_success(user=user)
    with transaction.atomic():
        totp_reset(user=user)
        notify(
            user=user,
            event=Event.TWO_FACTOR_CHANGED,
            context={
                "title": "Two-factor authentication turned off",
                "body": "If this was not you, call us at once.",
            },
        )
        audit_record(action="2fa.totp_disabled", actor=user, target=user)


def totp_reset(*, user: User) -> None:
    """Delete the authenticator and backup codes (no checks: callers authorise and audit)."""
    TotpAuthenticator.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
