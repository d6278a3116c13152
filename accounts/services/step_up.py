"""Step-up authentication with dynamic linking (PSD2 RTS Art. 5).

The customer proves a second factor for one exact operation: purpose, amount,
currency and payee. The step-up token we return is valid STEP_UP_LIFETIME, once,
and only for those values: the ledger calls `step_up_consume` with the values of the
transfer it is about to post, and any difference (100.00 vs 100.01, another payee)
is refused.

The factor is a TOTP/backup code, or a device-key signature over
`operation_string(...) + "|" + challenge`, where the challenge comes from
POST /api/v1/auth/device/challenge (so a signature cannot be replayed).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from accounts.exceptions import InvalidCredentials, StepUpRequired
from accounts.models import Device, StepUpToken, User
from accounts.services.devices import device_challenge_consume, signature_valid
from accounts.services.lockout import ensure_not_locked, record_auth_failure, record_auth_success
from accounts.services.two_factor import check_second_factor
from bankcore.api.exceptions import BankError
from bankcore.audit import audit_record
from bankcore.money import CURRENCY_EXPONENTS, InvalidAmount, format_amount, parse_amount

STEP_UP_LIFETIME = timedelta(minutes=5)
OPERATION_PREFIX = "bankcore-step-up:v1"
# Changing where the bank reaches the customer: no amount, the payee is the new contact.
CONTACT_CHANGE_PURPOSE = "contact_change"
_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_PAYEE = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")


def normalise_contact(value: str) -> str:
    """A new contact as it is bound and stored: e-mail lowercased, phone in E.164 without
    spaces; "" removes an alert contact. Raises ValueError for anything else."""
    value = (value or "").strip()
    if "@" in value:
        if len(value) > 254 or not _EMAIL.match(value):
            raise ValueError("Not a valid e-mail address.")
        return value.lower()
    compact = "".join(value.split())
    if compact and not _PHONE.match(compact):
        raise ValueError("Must be the new e-mail address or phone number (E.164, e.g. +4915112345678).")
    return compact


def normalise_operation(*, purpose: str, amount: str, currency: str, payee: str) -> tuple[str, str, str, str]:
    """Canonical values, so "100.0" and "100.00", "de89 3704..." and "DE893704..." bind equally.

    For `contact_change` the amount and currency are empty and the payee is the new contact.
    Raises BankError (400 invalid_request) with per-field details when a value is not valid.
    """
    errors: dict[str, list[str]] = {}
    purpose = (purpose or "").strip()
    if not _PURPOSE.match(purpose):
        errors["purpose"] = ["Lowercase letters, digits and _ (e.g. transfer), at most 32."]
    if purpose == CONTACT_CHANGE_PURPOSE:
        try:
            contact = normalise_contact(payee)
        except ValueError as exc:
            raise BankError(details={"payee": [str(exc)]}) from None
        return purpose, "", "", contact
    currency = (currency or "").strip().upper()
    normalised_amount = ""
    if currency not in CURRENCY_EXPONENTS:
        errors["currency"] = [f"Unsupported currency; one of {', '.join(CURRENCY_EXPONENTS)}."]
    else:
        try:
            normalised_amount = format_amount(parse_amount((amount or "").strip(), currency), currency)
        except InvalidAmount as exc:
            errors["amount"] = [str(exc)]
    payee = "".join((payee or "").split()).upper()
    if not _PAYEE.match(payee):
        errors["payee"] = ["Must be the payee's IBAN."]
    if errors:
        raise BankError(details=errors)
    return purpose, normalised_amount, currency, payee


def operation_string(*, purpose: str, amount: str, currency: str, payee: str) -> str:
    """The canonical text of the operation (values already normalised)."""
    return "|".join([OPERATION_PREFIX, purpose, amount, currency, payee])


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def step_up_issue(
    *,
    user: User,
    purpose: str,
    amount: str,
    currency: str,
    payee: str,
    code: str | None = None,
    device_id: UUID | str | None = None,
    signature: str | None = None,
    challenge: str | None = None,
) -> tuple[str, datetime]:
    """Verify a fresh second factor and return (step_up_token, expires_at) bound to exactly these values.

    Give either `code` (TOTP or backup code) or `device_id` + `challenge` + `signature`
    (base64 DER ECDSA-SHA256 over `operation_string(...) + "|" + challenge`). A wrong
    factor counts as a failed authentication (lockout) and raises InvalidCredentials.
    Only the token's sha256 is stored.
    """
    purpose, amount, currency, payee = normalise_operation(
        purpose=purpose, amount=amount, currency=currency, payee=payee
    )
    ensure_not_locked(user=user)
    operation = operation_string(purpose=purpose, amount=amount, currency=currency, payee=payee)
    if code:
        method = check_second_factor(user=user, code=code)
        reason = "wrong_code"
    elif device_id and signature and challenge:
        device = Device.objects.filter(pk=device_id, user=user, revoked_at__isnull=True).first()
        method = None
        if device is None:
            reason = "unknown_device"
        else:
            reason = device_challenge_consume(device=device, challenge=challenge) or "bad_signature"
            if reason == "bad_signature" and signature_valid(
                public_key=device.public_key, message=f"{operation}|{challenge}", signature=signature
            ):
                method = "device_key"
    else:
        raise BankError(
            "Send a TOTP or backup code, or a device signature.",
            details={"code": ["Send `code`, or `device_id`, `challenge` and `signature`."]},
        )
    if method is None:
        record_auth_failure(user=user, factor="step_up", reason=reason)
        raise InvalidCredentials()
    record_auth_success(user=user)
    token = secrets.token_urlsafe(32)
    expires_at = timezone.now() + STEP_UP_LIFETIME
    with transaction.atomic():
        StepUpToken.objects.create(
            user=user,
            token_hash=_token_hash(token),
            purpose=purpose,
            amount=amount,
            currency=currency,
            payee=payee,
            method=method,
            expires_at=expires_at,
        )
        audit_record(
            action="auth.step_up_issued",
            actor=user,
            target=user,
            details={"purpose": purpose, "amount": amount, "currency": currency, "payee": payee, "method": method},
        )
    return token, expires_at


def step_up_consume(*, user: User, token: str | None, purpose: str, amount: str, currency: str, payee: str) -> None:
    """Use up a step-up token for exactly this operation, or raise StepUpRequired (403).

    Refused when the token is missing, unknown, another user's, expired, already used,
    or bound to any other purpose/amount/currency/payee. Single use under concurrency:
    one conditional UPDATE claims it. Call it inside the transaction that performs the
    operation: if that transaction rolls back, the token is unused again.
    """
    try:
        purpose, amount, currency, payee = normalise_operation(
            purpose=purpose, amount=amount, currency=currency, payee=payee
        )
    except BankError:
        raise StepUpRequired(
            details={"purpose": purpose, "amount": amount, "currency": currency, "payee": payee}
        ) from None
    details = {
        "purpose": purpose,
        "amount": amount,
        "currency": currency,
        "payee": payee,
        "canonical": operation_string(purpose=purpose, amount=amount, currency=currency, payee=payee),
    }
    if not token:
        raise StepUpRequired(details=details)
    claimed = StepUpToken.objects.filter(
        token_hash=_token_hash(token),
        user=user,
        purpose=purpose,
        amount=amount,
        currency=currency,
        payee=payee,
        used_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).update(used_at=timezone.now())
    if claimed != 1:
        raise StepUpRequired(
            "The step-up token is not valid for this operation (wrong values, expired or already used).",
            details=details,
        )
