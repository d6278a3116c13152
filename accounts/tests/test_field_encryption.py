"""PII at rest: the column holds ciphertext; rotating keys keeps every value readable."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from accounts.models import TotpAuthenticator, User
from accounts.tests.factories import UserFactory, enrol_totp
from bankcore.crypto import DecryptionError, decrypt

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def stored(table: str, column: str, pk) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_national_id_column_holds_ciphertext_not_the_number():
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
        user = UserFactory(national_id="DE-9876-5432")
        raw = stored("accounts_user", "national_id", user.pk)
        assert "9876" not in raw and raw.startswith("enc1:")
        assert Fernet(OLD_KEY.encode()).decrypt(raw[5:].encode()).decode() == "DE-9876-5432"
        assert User.objects.get(pk=user.pk).national_id == "DE-9876-5432"


def test_key_rotation_keeps_values_readable_and_rewrites_them_with_the_new_key():
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
        user = UserFactory(national_id="DE-1111-2222")
        authenticator, _ = enrol_totp(user)
        secret = authenticator.secret
    # New key in front, old one kept: everything still reads.
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        assert User.objects.get(pk=user.pk).national_id == "DE-1111-2222"
        call_command("rotate_field_keys", batch_size=1, stdout=io.StringIO())
    # Old key dropped: still readable, because every value was re-encrypted.
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY]):
        assert User.objects.get(pk=user.pk).national_id == "DE-1111-2222"
        assert TotpAuthenticator.objects.get(pk=authenticator.pk).secret == secret
        assert decrypt(stored("accounts_user", "national_id", user.pk)) == "DE-1111-2222"
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]), pytest.raises(DecryptionError):
        decrypt(stored("accounts_user", "national_id", user.pk))


def test_rotation_without_the_old_key_fails_loudly_and_changes_nothing():
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
        user = UserFactory(national_id="DE-3333-4444")
    before = stored("accounts_user", "national_id", user.pk)
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY]), pytest.raises(CommandError):
        call_command("rotate_field_keys", stdout=io.StringIO())
    assert stored("accounts_user", "national_id", user.pk) == before


def test_production_without_field_keys_fails_the_deploy_check():
    from bankcore.crypto import check_field_encryption_keys

    with override_settings(FIELD_ENCRYPTION_KEYS=[], PRODUCTION=True):
        assert [error.id for error in check_field_encryption_keys()] == ["bankcore.E101"]
    with override_settings(FIELD_ENCRYPTION_KEYS=["not a fernet key"]):
        assert [error.id for error in check_field_encryption_keys()] == ["bankcore.E101"]
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY], PRODUCTION=True):
        assert check_field_encryption_keys() == []
