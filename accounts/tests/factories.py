"""Factories and helpers for any test that needs a customer, a second factor or a logged-in client.

user = UserFactory()
client = authenticated_client(user)                  # real JWT of a real login session
authenticator, code = enrol_totp(user)               # confirmed TOTP + a currently valid code
token = step_up_token_for(user, amount="1500.00", currency="EUR", payee=iban)
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import factory
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from rest_framework.test import APIClient

from accounts.models import Device, LoginSession, TotpAuthenticator, User
from accounts.services.two_factor import backup_code_digest

PASSWORD = "correct horse battery 9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    full_name = factory.Faker("name")
    phone = factory.Sequence(lambda n: f"+4915112{n % 1_000_000:06d}")
    password = PASSWORD

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, **kwargs: Any) -> User:
        password = kwargs.pop("password", PASSWORD)
        return model_class.objects.create_user(*args, password=password, **kwargs)


def totp_code(authenticator: TotpAuthenticator, *, step_offset: int = 0) -> str:
    """The code the customer's app shows now (or `step_offset` 30-second steps away)."""
    totp = authenticator.totp()
    totp.time = time.time() + step_offset * totp.step
    return f"{totp.token():06d}"


def enrol_totp(user: User) -> tuple[TotpAuthenticator, str]:
    """Give `user` a confirmed TOTP authenticator (and backup codes); return it and a valid current code."""

    TotpAuthenticator.objects.filter(user=user).delete()
    authenticator = TotpAuthenticator.objects.create(
        user=user, name="authenticator app", secret=secrets.token_bytes(20).hex(), confirmed=True
    )
    StaticDevice.objects.get_or_create(user=user, name="backup codes", defaults={"confirmed": True})
    return authenticator, totp_code(authenticator)


def new_backup_code(user: User) -> str:
    """Add one fresh backup code to `user` (enrolling TOTP first if needed) and return it."""

    if not TotpAuthenticator.objects.filter(user=user, confirmed=True).exists():
        enrol_totp(user)
    device = StaticDevice.objects.get(user=user, name="backup codes")
    code = secrets.token_hex(6)
    StaticToken.objects.create(device=device, token=backup_code_digest(code))
    return code


def step_up_token_for(user: User, *, amount: str, currency: str, payee: str, purpose: str = "transfer") -> str:
    """A real step-up token for exactly this operation (approved with a fresh backup code)."""
    from accounts.services.step_up import step_up_issue

    token, _ = step_up_issue(
        user=user, purpose=purpose, amount=amount, currency=currency, payee=payee, code=new_backup_code(user)
    )
    return token


def tokens_for(user: User, *, device: Device | None = None) -> dict[str, str]:
    """{access, refresh} of a new login session of `user` (as after a successful login)."""
    from accounts.services.sessions import session_start

    _, tokens = session_start(user=user, method=LoginSession.Method.PASSWORD, device=device)
    return tokens


def authenticated_client(user: User, *, device: Device | None = None) -> APIClient:
    """An APIClient sending `Authorization: Bearer <access>` of a real login session."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_for(user, device=device)['access']}")
    return client


def new_device_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair as a phone's secure enclave makes it; returns (private key, base64 DER SPKI)."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_key, base64.b64encode(der).decode()


def sign(private_key: ec.EllipticCurvePrivateKey, message: str) -> str:
    """Base64 DER ECDSA-SHA256 signature over the UTF-8 bytes of `message` (what the app sends)."""
    return base64.b64encode(private_key.sign(message.encode(), ec.ECDSA(hashes.SHA256()))).decode()


class DeviceFactory(factory.django.DjangoModelFactory):
    """A registered device. Its private key is on `device.private_key` (not stored by the server)."""

    class Meta:
        model = Device

    user = factory.SubFactory(UserFactory)
    name = "Pixel 9"
    platform = Device.Platform.ANDROID
    app_version = "1.4.0"

    @classmethod
    def _create(cls, model_class: type[Device], *args: Any, **kwargs: Any) -> Device:
        private_key, public_key = new_device_key()
        kwargs.setdefault("public_key", public_key)
        device = super()._create(model_class, *args, **kwargs)
        device.private_key = private_key  # type: ignore[attr-defined]
        return device
