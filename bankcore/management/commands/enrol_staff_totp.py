"""Give a staff user a TOTP device for the admin and print its QR code and otpauth URI."""

from __future__ import annotations

import io
from typing import Any

import qrcode
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = "Enrol a TOTP device for a staff user (needed to sign in to the admin)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--name", default="admin", help="Device name (default: admin).")
        parser.add_argument("--replace", action="store_true", help="Delete the user's existing admin devices first.")

    def handle(self, *args: Any, email: str, name: str, replace: bool, **options: Any) -> None:
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with e-mail {email}.")
        if not user.is_staff:
            raise CommandError(f"{email} is not staff; only staff use the admin.")
        devices = TOTPDevice.objects.devices_for_user(user, confirmed=None).filter(name=name)
        if devices.exists() and not replace:
            raise CommandError(f"{email} already has a TOTP device named {name!r}; use --replace to issue a new one.")
        devices.delete()
        device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
        uri = device.config_url
        qr = qrcode.QRCode(border=1)
        qr.add_data(uri)
        buffer = io.StringIO()
        qr.print_ascii(out=buffer, invert=True)
        self.stdout.write(buffer.getvalue())
        self.stdout.write(f"otpauth URI: {uri}")
        self.stdout.write(
            self.style.SUCCESS(f"TOTP device {name!r} enrolled for {email}. Scan it in an authenticator app.")
        )
