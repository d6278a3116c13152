"""Admin for linked legacy accounts: staff link a customer's core account (checked with the core
through `legacy_account_link`); balances are the core's, read-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from accounts.models import LegacyAccountLink
from accounts.services.legacy_links import (
    LegacyAccountAlreadyLinked,
    LegacyAccountUnknown,
    legacy_account_link,
)
from bankcore.money import format_amount
from integrations.legacy.errors import LegacyError


class LegacyAccountLinkForm(forms.ModelForm):
    actor: Any = None

    class Meta:
        model = LegacyAccountLink
        fields = ("customer", "account_number", "name", "kind")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk is None and not self.errors:
            try:
                # Asks the core (0100) and creates the link; the admin's save then only echoes it.
                self.instance = legacy_account_link(
                    customer=data["customer"],
                    account_number=data["account_number"],
                    actor=self.actor,
                    name=data.get("name", ""),
                    kind=data.get("kind") or LegacyAccountLink.Kind.CURRENT,
                )
            except (LegacyAccountUnknown, LegacyAccountAlreadyLinked) as exc:
                raise forms.ValidationError(str(exc)) from exc
            except LegacyError as exc:
                raise forms.ValidationError(f"The legacy core does not answer: {exc}") from exc
        return data


@admin.register(LegacyAccountLink)
class LegacyAccountLinkAdmin(admin.ModelAdmin):
    form = LegacyAccountLinkForm
    list_display = ("iban", "account_number", "name", "customer", "currency", "last_ledger_display", "as_of", "status")
    list_filter = ("currency", "status")
    search_fields = ("iban", "account_number", "customer__email", "name")
    readonly_fields = ("iban", "currency", "status", "last_ledger", "last_available", "as_of", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:
            return (*self.readonly_fields, "customer", "account_number")
        return self.readonly_fields

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = request.user  # type: ignore[attr-defined]
        return form

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name", "kind"])
        # A new link was created by the service in the form's clean().

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Last known balance")
    def last_ledger_display(self, link: LegacyAccountLink) -> str:
        return "—" if link.last_ledger is None else f"{format_amount(link.last_ledger, link.currency)} {link.currency}"
