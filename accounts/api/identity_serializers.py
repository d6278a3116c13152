"""Request and response bodies of the identity endpoints (shared/API.md, "Identity")."""

from __future__ import annotations

from typing import Any

import phonenumbers
from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Device, User
from accounts.services.contacts import pending_contact_changes
from accounts.services.devices import parse_public_key
from accounts.services.step_up import CONTACT_CHANGE_PURPOSE
from accounts.services.two_factor import totp_enabled
from bankcore.api.inputs import StrictInputSerializer
from bankcore.api.schema import POSITIVE_AMOUNT
from bankcore.money import CURRENCY_EXPONENTS


def e164(value: str) -> str:
    """Validate an E.164 phone number and return it normalised (+4915112345678)."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise serializers.ValidationError("Enter the number in international format, e.g. +4915112345678.") from None
    if not phonenumbers.is_valid_number(number):
        raise serializers.ValidationError("This is not a valid phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@extend_schema_field({"type": "string", "pattern": r"^\+[1-9][0-9]{6,14}$", "example": "+4915112345678"})
class PhoneField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        return e164(value) if value else value


class _BlankAsNull:
    """An optional contact the user has not set reads as null, never "" (which is no e-mail address)."""

    def to_representation(self, value: Any) -> Any:
        return super().to_representation(value) if value else None  # type: ignore[misc]


class OptionalEmailField(_BlankAsNull, serializers.EmailField):
    """An e-mail address the user may leave unset (null when unset)."""


class OptionalPhoneField(_BlankAsNull, serializers.CharField):
    """A phone number the user may leave unset (null when unset)."""


class UserOutput(serializers.ModelSerializer):
    notification_email = OptionalEmailField(
        read_only=True, allow_null=True, help_text="Where alerts go; null: the login e-mail."
    )
    notification_phone = OptionalPhoneField(
        read_only=True, allow_null=True, help_text="Where SMS alerts go (E.164); null: `phone`."
    )
    pending_contacts = serializers.SerializerMethodField(
        help_text="Contacts waiting for the code sent to them, {field: new value}; the fields above keep the "
        "verified ones until then."
    )
    totp_enabled = serializers.SerializerMethodField()
    locked = serializers.SerializerMethodField()
    national_id_masked = serializers.SerializerMethodField(help_text="Last 4 characters only; never the full number.")

    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "full_name",
            "phone",
            "notification_email",
            "notification_phone",
            "national_id_masked",
            "email_verified",
            "phone_verified",
            "pending_contacts",
            "totp_enabled",
            "locked",
            "locked_until",
            "is_staff",
            "date_joined",
        ]
        read_only_fields = fields

    def get_pending_contacts(self, user: User) -> dict[str, str]:
        return pending_contact_changes(user=user)

    def get_totp_enabled(self, user: User) -> bool:
        return totp_enabled(user=user)

    def get_locked(self, user: User) -> bool:
        return user.is_locked()

    def get_national_id_masked(self, user: User) -> str | None:
        return ("•" * 4 + user.national_id[-4:]) if user.national_id else None


def _password_min_length() -> int:
    validators: Any = settings.AUTH_PASSWORD_VALIDATORS
    for validator in validators:
        if validator["NAME"].endswith(".MinimumLengthValidator"):
            return int(validator.get("OPTIONS", {}).get("min_length", 8))
    return 1


@extend_schema_field(
    {
        "type": "string",
        "minLength": _password_min_length(),
        "maxLength": 128,
        # Not all digits (NumericPasswordValidator); the common-password and similarity checks cannot be a schema.
        "pattern": "[^0-9]",
        "writeOnly": True,
    }
)
class NewPasswordField(serializers.CharField):
    """A password being set: Django's AUTH_PASSWORD_VALIDATORS decide, in the service."""


class RegisterInput(StrictInputSerializer):
    email = serializers.EmailField(max_length=254)
    phone = PhoneField(max_length=32)
    full_name = serializers.CharField(max_length=200)
    password = NewPasswordField(max_length=128, write_only=True, trim_whitespace=False)


class ProfileInput(StrictInputSerializer):
    @classmethod
    def openapi_request_constraints(cls) -> list[dict[str, Any]]:
        contacts = ("email", "phone", "notification_email", "notification_phone")
        pairs = [[a, b] for i, a in enumerate(contacts) for b in contacts[i + 1 :]]
        return [{"not": {"anyOf": [{"required": pair} for pair in pairs]}}]  # one contact per request

    """Only these can change; anything else in the body (is_staff, lock state...) is ignored.

    A contact (email, phone, notification_email, notification_phone) needs `step_up_token`
    (purpose `contact_change`, payee = the new value) and applies once the code sent to the
    new contact is confirmed (POST /api/v1/me/contacts/confirm). One contact per request.
    """

    full_name = serializers.CharField(max_length=200, required=False)
    email = serializers.EmailField(max_length=254, required=False)
    phone = PhoneField(max_length=32, required=False)
    notification_email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    notification_phone = PhoneField(max_length=32, required=False, allow_blank=True)
    national_id = serializers.CharField(max_length=64, required=False, allow_blank=True, write_only=True)
    step_up_token = serializers.CharField(
        max_length=512, required=False, allow_blank=True, write_only=True, help_text="Needed for a contact change."
    )


class ContactConfirmInput(StrictInputSerializer):
    field = serializers.ChoiceField(choices=["email", "phone", "notification_email", "notification_phone"])
    code = serializers.CharField(max_length=16, help_text="The code sent to the new contact.")


class PasswordChangeInput(StrictInputSerializer):
    current_password = serializers.CharField(max_length=128, trim_whitespace=False)
    new_password = NewPasswordField(max_length=128, trim_whitespace=False)


class TokenInput(StrictInputSerializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    device_id = serializers.UUIDField(
        required=False, help_text="The registered device signing in, so the session is tied to it."
    )


class TokenPairOutput(serializers.Serializer):
    access = serializers.CharField(help_text="JWT, valid 5 minutes. Send as `Authorization: Bearer <access>`.")
    refresh = serializers.CharField(help_text="JWT; rotates on every use. Reusing an old one ends the session.")


class MfaTokenInput(StrictInputSerializer):
    mfa_token = serializers.CharField(max_length=128)
    code = serializers.CharField(max_length=32, help_text="6-digit TOTP code, or a backup code (xxxx-xxxx-xxxx).")


class RefreshInput(StrictInputSerializer):
    refresh = serializers.CharField(max_length=4096)


class TotpEnrolOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="Base32 secret, for typing into an authenticator app.")
    otpauth_uri = serializers.CharField()
    qr_svg = serializers.CharField(help_text="The otpauth URI as a QR code, SVG markup.")


class CodeInput(StrictInputSerializer):
    code = serializers.CharField(max_length=32)


class BackupCodesOutput(serializers.Serializer):
    backup_codes = serializers.ListField(child=serializers.CharField(), help_text="Shown once; each works once.")


class DeviceInput(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    platform = serializers.ChoiceField(choices=Device.Platform.choices)
    app_version = serializers.RegexField(r"^\d{1,4}(\.\d{1,4}){0,3}$", max_length=32)
    public_key = serializers.CharField(max_length=1024, help_text="P-256 public key, base64 DER SubjectPublicKeyInfo.")
    push_token = serializers.CharField(max_length=512, required=False, allow_blank=True, default="")

    def validate_public_key(self, value: str) -> str:
        try:
            parse_public_key(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class DeviceUpdateInput(StrictInputSerializer):
    name = serializers.CharField(max_length=100, required=False)
    app_version = serializers.RegexField(r"^\d{1,4}(\.\d{1,4}){0,3}$", max_length=32, required=False)
    push_token = serializers.CharField(max_length=512, required=False, allow_blank=True)


class DeviceOutput(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "name", "platform", "app_version", "public_key", "created_at", "last_login_at"]
        read_only_fields = fields


class DeviceChallengeInput(StrictInputSerializer):
    device_id = serializers.UUIDField()


class DeviceChallengeOutput(serializers.Serializer):
    challenge = serializers.CharField(help_text="Sign its UTF-8 bytes with the device key. Single use.")
    expires_at = serializers.DateTimeField()


class DeviceTokenInput(StrictInputSerializer):
    device_id = serializers.UUIDField()
    challenge = serializers.CharField(max_length=64)
    signature = serializers.CharField(max_length=512, help_text="Base64 DER ECDSA-SHA256 over the challenge.")


class DecimalStringField(serializers.CharField):
    """An amount as the API speaks it: a JSON string such as "12.50", never a JSON number (no floats near money)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError('Send the amount as a string, e.g. "12.50".')
        return super().to_internal_value(data)


class StepUpInput(StrictInputSerializer):
    @classmethod
    def openapi_request_constraints(cls) -> list[dict[str, Any]]:
        # Every purpose but contact_change binds an amount, a currency and the payee's IBAN.
        money = {
            "required": ["amount", "currency"],
            "properties": {
                "amount": {"pattern": POSITIVE_AMOUNT},
                "currency": {"enum": list(CURRENCY_EXPONENTS)},
                "payee": {"pattern": r"^[A-Za-z]{2}[0-9]{2}[A-Za-z0-9 ]{11,38}$"},
            },
        }
        return [{"anyOf": [{"properties": {"purpose": {"enum": [CONTACT_CHANGE_PURPOSE]}}}, money]}]

    purpose = serializers.RegexField(
        r"^[a-z][a-z0-9_]{0,31}$", max_length=32, help_text="What is approved, e.g. `transfer`, `contact_change`."
    )
    amount = DecimalStringField(
        max_length=32,
        required=False,
        allow_blank=True,
        default="",
        help_text='Decimal string, e.g. "1500.00". Not used for `contact_change`.',
    )
    currency = serializers.CharField(max_length=3, required=False, allow_blank=True, default="")
    payee = serializers.CharField(
        max_length=254,
        allow_blank=True,
        help_text="Destination IBAN; for `contact_change` the new e-mail or phone (E.164), or empty to remove "
        "an alert contact.",
    )
    code = serializers.CharField(max_length=32, required=False, help_text="TOTP or backup code.")
    device_id = serializers.UUIDField(required=False)
    challenge = serializers.CharField(max_length=64, required=False, help_text="From /auth/device/challenge.")
    signature = serializers.CharField(
        max_length=512,
        required=False,
        help_text="Base64 DER ECDSA-SHA256 over `bankcore-step-up:v1|purpose|amount|currency|payee|challenge`.",
    )


class StepUpOutput(serializers.Serializer):
    step_up_token = serializers.CharField()
    expires_at = serializers.DateTimeField()
