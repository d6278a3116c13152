"""Customers' own identity data: registration, profile, password."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.exceptions import InvalidCredentials
from accounts.models import User
from accounts.services.contacts import CONTACT_FIELDS, contact_change_request
from accounts.services.lockout import ensure_not_locked, record_auth_failure, record_auth_success
from accounts.services.sessions import sessions_revoke
from bankcore.api.exceptions import BankError
from bankcore.audit import audit_record
from notifications.events import Event
from notifications.services import notify

DUPLICATE_EMAIL = "An account with this e-mail address already exists. Log in or reset your password."
PROFILE_FIELDS = ("full_name", "national_id")


def _check_password(*, password: str, user: User) -> None:
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise BankError(details={"password": list(exc.messages)}) from None


def user_register(*, email: str, phone: str, full_name: str, password: str) -> User:
    """Create a customer (Argon2-hashed password, validated). Atomic, audited.

    A taken e-mail (any case) is a field error on `email` and nothing else.
    """
    email = email.strip().lower()
    candidate = User(email=email, phone=phone, full_name=full_name)
    _check_password(password=password, user=candidate)
    if User.objects.filter(email__iexact=email).exists():
        raise BankError(details={"email": [DUPLICATE_EMAIL]})
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, phone=phone, full_name=full_name)
            audit_record(action="user.registered", actor=user, target=user)
    except IntegrityError:  # a concurrent registration of the same e-mail won the race
        raise BankError(details={"email": [DUPLICATE_EMAIL]}) from None
    return user


def profile_update(*, user: User, actor: User, changes: dict[str, Any], step_up_token: str | None = None) -> User:
    """Change the customer's own profile. Atomic and audited; a refused change changes nothing.

    `full_name` and `national_id` change at once (the audit records which fields changed,
    never the national id). A contact (e-mail, phone, alert e-mail or phone) goes through
    `contact_change_request`: step-up bound to the new value, the old contact told, applied
    once the code sent to the new one is confirmed. One contact per request, since the
    step-up token is bound to one new value.
    """
    unknown = set(changes) - set(PROFILE_FIELDS) - set(CONTACT_FIELDS)
    if unknown:
        raise BankError(details={field: ["This field cannot be changed."] for field in sorted(unknown)})
    contacts = {field: value for field, value in changes.items() if field in CONTACT_FIELDS}
    if len(contacts) > 1:
        raise BankError(
            "Change one contact per request: each needs its own step-up.",
            details={field: ["Change one contact per request."] for field in sorted(contacts)},
        )
    with transaction.atomic():
        for field, value in contacts.items():
            contact_change_request(user=user, field=field, new_value=value, step_up_token=step_up_token)
        user = User.objects.select_for_update().get(pk=user.pk)
        changed = [
            field for field, value in changes.items() if field in PROFILE_FIELDS and getattr(user, field) != value
        ]
        for field in changed:
            setattr(user, field, changes[field])
        if changed:
            user.save(update_fields=changed)
            audit_record(action="user.profile_changed", actor=actor, target=user, details={"fields": sorted(changed)})
    return user


def password_change(*, user: User, current_password: str, new_password: str, keep_session_id: str | None) -> None:
    """Change the password and end every other session. A wrong current password counts as a failure."""
    ensure_not_locked(user=user)
    if not user.check_password(current_password):
        record_auth_failure(user=user, factor="password", reason="password_change")
        raise InvalidCredentials("The current password is not correct.")
    _check_password(password=new_password, user=user)
    record_auth_success(user=user)
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        ended = sessions_revoke(user=user, reason="password_changed", keep_session_id=keep_session_id)
        notify(
            user=user,
            event=Event.PASSWORD_CHANGED,
            context={"title": "Your password was changed", "body": "If this was not you, call us at once."},
        )
        audit_record(action="user.password_changed", actor=user, target=user, details={"sessions_ended": ended})
