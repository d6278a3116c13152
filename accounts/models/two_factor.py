"""Customers' TOTP authenticators (django-otp device) with the shared secret encrypted at rest.

Backup codes are django-otp's StaticDevice/StaticToken (single-use codes).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django_otp.models import Device as OTPDevice
from django_otp.oath import TOTP

from bankcore.crypto import EncryptedTextField

TOTP_STEP = 30
TOTP_DIGITS = 6
# Accept the previous and next 30-second step too: phones' clocks drift.
TOTP_TOLERANCE = 1


class TotpAuthenticator(OTPDevice):
    """One per customer. `confirmed` once the customer proved their app shows the right codes."""

    secret = EncryptedTextField(help_text="Hex of the shared secret, stored encrypted.")
    # The highest time step ever accepted: a code is accepted at most once (no replay).
    last_t = models.BigIntegerField(default=-1)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user"], name="one_totp_authenticator_per_user")]

    def totp(self) -> TOTP:
        return TOTP(bytes.fromhex(self.secret), step=TOTP_STEP, digits=TOTP_DIGITS)

    def matching_step(self, code: str) -> int | None:
        """The time step whose code equals `code` and is newer than any accepted one, or None.

        Pure check: the caller records the step with a conditional UPDATE so two
        requests carrying the same code cannot both succeed.
        """
        if not (code.isdigit() and len(code) == TOTP_DIGITS):
            return None
        totp = self.totp()
        if totp.verify(int(code), tolerance=TOTP_TOLERANCE, min_t=self.last_t + 1):
            return int(totp.t())
        return None

    def verify_token(self, token: str) -> bool:  # django-otp's device API (used by the staff admin login)
        step = self.matching_step(str(token))
        if step is None:
            return False
        return type(self).objects.filter(pk=self.pk, last_t__lt=step).update(last_t=step) == 1
