"""The staff site: django-otp's admin with one sign-in form and the API's lockout and throttles.

django-otp's own admin login checks the password first and only then offers the
user's OTP devices, which tells a guesser that the password was right. Here e-mail,
password and code come in one form and every failure gets the same answer.
"""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponse
from django_otp.admin import OTPAdminSite

from accounts.api.throttles import admin_login_wait
from accounts.exceptions import InvalidCredentials
from accounts.services.authentication import staff_admin_login

INVALID_LOGIN = (
    "Please enter the correct e-mail, password and authentication code of a staff account. "
    "After repeated failures the account is locked for a while."
)


class OneTimeCodeInput(forms.PasswordInput):
    """A visible text box that, like a password box, never echoes a submitted code back."""

    input_type = "text"


class StaffLoginForm(AdminAuthenticationForm):
    """E-mail, password and the staff TOTP (or static) code, checked together by staff_admin_login."""

    otp_token = forms.CharField(
        label="Authentication code",
        max_length=32,
        widget=OneTimeCodeInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    throttled_for: float | None = None

    def clean(self) -> dict[str, Any]:
        # Counted before anything is checked, so a throttled guess learns nothing.
        assert self.request is not None
        self.throttled_for = admin_login_wait(self.request)
        if self.throttled_for is not None:
            raise forms.ValidationError(
                f"Too many sign-in attempts. Try again in {math.ceil(self.throttled_for)} seconds.",
                code="throttled",
            )
        email = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        token = self.cleaned_data.get("otp_token")
        if not (email and password and token):
            return self.cleaned_data  # the missing field says so; nothing was checked
        try:
            user, device = staff_admin_login(email=email, password=password, otp_token=token)
        except InvalidCredentials:
            raise forms.ValidationError(INVALID_LOGIN, code="invalid_login") from None
        user.otp_device = device  # type: ignore[attr-defined]  # django-otp keeps it in the session at login
        self.user_cache = user
        return self.cleaned_data


class BankAdminSite(OTPAdminSite):
    """Staff pages only for users verified by their OTP device; sign-in through StaffLoginForm."""

    login_form = StaffLoginForm
    login_template = "admin/bankcore_login.html"

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().login(request, extra_context)
        form = (getattr(response, "context_data", None) or {}).get("form")
        wait = getattr(form, "throttled_for", None)
        if wait is not None:
            response.status_code = 429
            response["Retry-After"] = str(math.ceil(wait))
        return response
