"""Customers' devices: registration with a P-256 public key, revocation, signed challenges.

The phone keeps the private key in its secure enclave (unlocked by fingerprint or
face); the server only ever sees the public key and ECDSA-SHA256 signatures.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime, timedelta
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from django.db import transaction
from django.utils import timezone

from accounts.exceptions import InvalidCredentials
from accounts.models import Device, DeviceChallenge, User
from accounts.services.lockout import ensure_not_locked, record_auth_failure
from accounts.services.sessions import sessions_revoke
from bankcore.api.exceptions import BankError, NotFound
from bankcore.audit import audit_record
from notifications.events import Event
from notifications.services import notify

CHALLENGE_LIFETIME = timedelta(minutes=2)


def parse_public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """Base64 DER SubjectPublicKeyInfo of a P-256 key, or ValueError saying what is wrong."""
    try:
        der = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Must be base64 (DER SubjectPublicKeyInfo).") from None
    try:
        key = load_der_public_key(der)
    except (ValueError, TypeError):
        raise ValueError("Not a DER SubjectPublicKeyInfo public key.") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("Must be an elliptic-curve P-256 (secp256r1) key.")
    return key


def signature_valid(*, public_key: str, message: str, signature: str) -> bool:
    """ECDSA-SHA256 over the UTF-8 bytes of `message`; `signature` is base64 DER."""
    try:
        der_signature = base64.b64decode(signature, validate=True)
        parse_public_key(public_key).verify(der_signature, message.encode(), ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def device_register(
    *, user: User, name: str, platform: str, app_version: str, public_key: str, push_token: str = ""
) -> Device:
    """Register a device; the customer is told (NEW_DEVICE) on every channel. Atomic, audited."""
    try:
        parse_public_key(public_key)
    except ValueError as exc:
        raise BankError(details={"public_key": [str(exc)]}) from None
    with transaction.atomic():
        device = Device.objects.create(
            user=user,
            name=name,
            platform=platform,
            app_version=app_version,
            public_key=public_key,
            push_token=push_token,
        )
        notify(
            user=user,
            event=Event.NEW_DEVICE,
            context={
                "title": "New device added",
                "body": f"{name} ({platform}) can now sign in to your account. If this was not you, call us.",
                "device_id": str(device.id),
                "device_name": name,
                "platform": platform,
            },
        )
        audit_record(
            action="device.registered", actor=user, target=device, details={"name": name, "platform": platform}
        )
    return device


def device_revoke(*, device: Device, actor: User) -> Device:
    """Revoke a device and end every session it started. Idempotent, atomic, audited."""
    with transaction.atomic():
        device = Device.objects.select_for_update().get(pk=device.pk)
        if device.revoked_at is None:
            device.revoked_at = timezone.now()
            device.save(update_fields=["revoked_at"])
            ended = sessions_revoke(user=device.user, reason="device_revoked", device=device)
            action = "device.revoked" if actor.pk == device.user_id else "staff.device_revoked"
            audit_record(action=action, actor=actor, target=device, details={"sessions_ended": ended})
    return device


def device_update(*, device: Device, actor: User, changes: dict[str, str]) -> Device:
    """Change a device's name, app version or push token (push services rotate tokens). Audited.

    The public key never changes: a new key is a new device.
    """
    allowed = {"name", "app_version", "push_token"}
    unknown = set(changes) - allowed
    if unknown:
        raise BankError(details={field: ["This field cannot be changed."] for field in sorted(unknown)})
    with transaction.atomic():
        device = Device.objects.select_for_update().get(pk=device.pk)
        changed = [field for field, value in changes.items() if getattr(device, field) != value]
        for field in changed:
            setattr(device, field, changes[field])
        if changed:
            device.save(update_fields=changed)
            audit_record(action="device.updated", actor=actor, target=device, details={"fields": sorted(changed)})
    return device


def device_for_user(*, user: User, device_id: UUID | str) -> Device:
    """The user's own active device, else 404 (also for another customer's device)."""
    device = Device.objects.filter(pk=device_id, user=user, revoked_at__isnull=True).first()
    if device is None:
        raise NotFound("No such device.")
    return device


def device_challenge_issue(*, device_id: UUID | str) -> tuple[str, datetime]:
    """A random single-use challenge for the device to sign, valid CHALLENGE_LIFETIME.

    Unknown or revoked devices answer 401 (a revoked one counts as a failed attempt).
    """
    device = Device.objects.select_related("user").filter(pk=device_id).first()
    if device is None:
        raise InvalidCredentials()
    ensure_not_locked(user=device.user)
    if device.revoked_at is not None:
        record_auth_failure(user=device.user, factor="device_key", reason="device_revoked")
        raise InvalidCredentials()
    challenge = secrets.token_urlsafe(32)
    expires_at = timezone.now() + CHALLENGE_LIFETIME
    DeviceChallenge.objects.create(device=device, challenge=challenge, expires_at=expires_at)
    return challenge, expires_at


def device_challenge_consume(*, device: Device, challenge: str) -> str | None:
    """Burn the challenge (whatever happens next); return why it cannot be used, or None if it can.

    Row-locked and committed before the signature is even checked, so one challenge
    is never used twice, not even by racing requests.
    """
    with transaction.atomic():
        row = DeviceChallenge.objects.select_for_update().filter(device=device, challenge=challenge).first()
        if row is None:
            return "unknown_challenge"
        if row.used_at is not None:
            return "challenge_reused"
        row.used_at = timezone.now()
        row.save(update_fields=["used_at"])
        if row.expires_at <= row.used_at:
            return "challenge_expired"
    return None
