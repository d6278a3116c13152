"""Field encryption for personal data at rest (TOTP secrets, national id numbers).

Keys come from ``FIELD_ENCRYPTION_KEYS``: Fernet keys (AES-128-CBC + HMAC-SHA256,
authenticated), newest first. Values are encrypted with the first key and decrypted
with whichever key fits, so a new key can be put in front at any time;
``manage.py rotate_field_keys`` then re-encrypts every stored value with it, after
which the old key can be dropped.

Without configured keys (development and tests only) one key is derived from
SECRET_KEY, so a laptop works out of the box; production refuses to start without them.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import models

# Every ciphertext we write starts with this, so a plaintext value is never mistaken
# for one (and the rotation command can tell them apart).
PREFIX = "enc1:"


class DecryptionError(Exception):
    """No configured key opens the stored value (wrong keys, or the value was tampered with)."""


def _configured_keys() -> tuple[str, ...]:
    keys = tuple(k.strip() for k in getattr(settings, "FIELD_ENCRYPTION_KEYS", []) if k.strip())
    if keys:
        return keys
    if getattr(settings, "PRODUCTION", False):
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set in production (comma-separated Fernet keys).")
    derived = hashlib.sha256(b"bankcore-field-encryption:" + settings.SECRET_KEY.encode()).digest()
    return (base64.urlsafe_b64encode(derived).decode(),)


@lru_cache(maxsize=8)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS holds an invalid Fernet key: {exc}") from None


def fernet() -> MultiFernet:
    """The MultiFernet for the keys configured now (re-read so settings overrides apply)."""
    return _fernet_for(_configured_keys())


def encrypt(plaintext: str) -> str:
    return PREFIX + fernet().encrypt(plaintext.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise DecryptionError("The value is not an encrypted field value.")
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise DecryptionError("No configured FIELD_ENCRYPTION_KEYS key decrypts this value.") from None


def reencrypt(stored: str) -> str:
    """The same plaintext, encrypted with the first (newest) key."""
    if not stored.startswith(PREFIX):
        raise DecryptionError("The value is not an encrypted field value.")
    try:
        return PREFIX + fernet().rotate(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise DecryptionError("No configured FIELD_ENCRYPTION_KEYS key decrypts this value.") from None


class EncryptedTextField(models.TextField):
    """A text column whose value is stored encrypted; Python code sees plaintext.

    Not searchable or indexable (each encryption is randomised). Empty strings are
    stored as empty strings, so "no value" stays cheap to test for.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))


def encrypted_fields() -> list[tuple[type[models.Model], str]]:
    """Every (model, attname) holding an EncryptedTextField, across installed apps."""
    from django.apps import apps

    found = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                found.append((model, field.attname))
    return found


@checks.register(checks.Tags.security, deploy=True)
def check_field_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """`manage.py check --deploy` fails when production has no (or invalid) field encryption keys."""
    try:
        fernet()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="bankcore.E101")]
    return []
