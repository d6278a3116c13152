"""Changing where the bank reaches a customer: login e-mail, phone and the alert contacts.

A stolen session must not be able to redirect security alerts, so a change needs a fresh
second factor bound to the new value (step-up, purpose `contact_change`), the current
contacts are told at once, and a new e-mail or phone only replaces the old one once the
customer typed the code sent to it. Until then the record, and so every alert, keeps the
verified contact.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ContactChange, User
from accounts.services.step_up import CONTACT_CHANGE_PURPOSE, normalise_contact, step_up_consume
from bankcore.api.exceptions import BankError
from bankcore.audit import audit_record
from notifications.events import Event
from notifications.services import notify, send_contact_code

CONTACT_FIELDS = tuple(ContactChange.Field.values)
CODE_LIFETIME = timedelta(minutes=30)
MAX_CODE_ATTEMPTS = 5
_EMAIL_FIELDS = (ContactChange.Field.EMAIL, ContactChange.Field.NOTIFICATION_EMAIL)
DUPLICATE_EMAIL = "Another account uses this e-mail address."


def _code_hash(change_id: object, code: str) -> str:
    return hashlib.sha256(f"{change_id}:{code.strip()}".encode()).hexdigest()


def _label(field: str) -> str:
    return str(ContactChange.Field(field).label).lower()


def _masked(value: str) -> str:
    """Enough for the customer to recognise the contact, not enough to learn it."""
    if "@" in value:
        name, _, domain = value.partition("@")
        return f"{name[:1]}•••@{domain}"
    return f"•••• {value[-4:]}" if value else "none"


def _validated(*, user: User, field: str, new_value: str) -> str:
    if field not in CONTACT_FIELDS:
        raise BankError(details={field: ["This field cannot be changed."]})
    try:
        value = normalise_contact(new_value)
    except ValueError as exc:
        raise BankError(details={field: [str(exc)]}) from None
    wants_email = field in _EMAIL_FIELDS
    if value and ("@" in value) != wants_email:
        raise BankError(details={field: ["Must be an e-mail address." if wants_email else "Must be a phone number."]})
    if not value and field in (ContactChange.Field.EMAIL, ContactChange.Field.PHONE):
        raise BankError(details={field: ["This field may not be blank."]})
    if field == ContactChange.Field.EMAIL and User.objects.filter(email__iexact=value).exclude(pk=user.pk).exists():
        raise BankError(details={field: [DUPLICATE_EMAIL]})
    return value


def contact_change_request(
    *, user: User, field: str, new_value: str, step_up_token: str | None
) -> ContactChange | None:
    """Start changing one contact of `user` to `new_value`.

    Needs `step_up_token` (purpose `contact_change`, payee = the new value), else
    StepUpRequired (403). Atomic: the token is consumed, the customer's current contacts are
    told, and a code goes to the new contact; nothing on the record changes until
    `contact_change_confirm`. Removing an alert contact (""), which sends alerts back to the
    verified login e-mail or phone, applies at once. Returns the open change, or None when
    nothing is left to confirm. A new request for the same field replaces an open one.
    """
    value = _validated(user=user, field=field, new_value=new_value)
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if getattr(user, field) == value:
            return None
        step_up_consume(
            user=user, token=step_up_token, purpose=CONTACT_CHANGE_PURPOSE, amount="", currency="", payee=value
        )
        # Told first, so the delivery rows are addressed to the contacts the record still has.
        notify(
            user=user,
            event=Event.CONTACT_CHANGE_REQUESTED,
            context={"contact": _label(field), "new_contact": _masked(value)},
        )
        ContactChange.objects.filter(user=user, field=field, confirmed_at__isnull=True).delete()
        if not value:
            setattr(user, field, "")
            user.save(update_fields=[field])
            audit_record(action="user.contact_removed", actor=user, target=user, details={"field": field})
            return None
        code = f"{secrets.randbelow(10**6):06d}"
        change = ContactChange(user=user, field=field, new_value=value, expires_at=timezone.now() + CODE_LIFETIME)
        change.code_hash = _code_hash(change.id, code)
        change.save(force_insert=True)
        send_contact_code(
            user=user,
            channel="email" if field in _EMAIL_FIELDS else "sms",
            address=value,
            code=code,
            key=str(change.id),
        )
        audit_record(
            action="user.contact_change_requested",
            actor=user,
            target=user,
            details={"field": field, "new_contact": _masked(value)},
        )
    return change


def pending_contact_changes(*, user: User) -> dict[str, str]:
    """The contacts waiting for their code: {field: new value}."""
    return dict(
        ContactChange.objects.filter(user=user, confirmed_at__isnull=True, expires_at__gt=timezone.now())
        .order_by("field")
        .values_list("field", "new_value")
    )


class InvalidContactCode(BankError):
    default_message = "The code is not valid for this change. Request a new one if it expired."


def contact_change_confirm(*, user: User, field: str, code: str) -> User:
    """Apply an open change of `field` with the code that was sent to the new contact.

    Atomic. A wrong code counts; after MAX_CODE_ATTEMPTS the change is void and must be
    requested again (with a new step-up). The old contact is told; a login e-mail or phone
    confirmed this way is marked verified. Raises InvalidContactCode (400).
    """
    refused = False
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        change = (
            ContactChange.objects.select_for_update()
            .filter(user=user, field=field, confirmed_at__isnull=True, expires_at__gt=timezone.now())
            .first()
        )
        if change is None or change.attempts >= MAX_CODE_ATTEMPTS:
            raise InvalidContactCode(details={"code": ["No open change for this field, or too many wrong codes."]})
        if not hmac.compare_digest(change.code_hash, _code_hash(change.id, code or "")):
            change.attempts += 1
            change.save(update_fields=["attempts"])
            refused = True  # the attempt is counted (committed), then refused
        else:
            notify(
                user=user,
                event=Event.CONTACT_CHANGED,
                context={"contact": _label(field), "new_contact": _masked(change.new_value)},
            )
            setattr(user, field, change.new_value)
            changed = [field]
            if field == ContactChange.Field.EMAIL:
                user.email_verified = True
                changed.append("email_verified")
            elif field == ContactChange.Field.PHONE:
                user.phone_verified = True
                changed.append("phone_verified")
            try:
                with transaction.atomic():
                    user.save(update_fields=changed)
            except IntegrityError:  # another account took this e-mail since the request
                raise BankError(details={field: [DUPLICATE_EMAIL]}) from None
            change.confirmed_at = timezone.now()
            change.save(update_fields=["confirmed_at"])
            audit_record(action="user.contact_changed", actor=user, target=user, details={"field": field})
    if refused:
        raise InvalidContactCode(details={"code": ["Wrong code."]})
    return user
