"""`manage.py link_legacy_account EMAIL ACCOUNT_NUMBER [--name N] [--kind current|savings]`.

Links a customer's account on the legacy core after asking the core (0100) that it exists; the
account then appears in the customer's app. Exit 1 when the core does not know it or is down.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services.legacy_links import LegacyAccountAlreadyLinked, LegacyAccountUnknown, legacy_account_link
from integrations.legacy.errors import LegacyError


class Command(BaseCommand):
    help = "Link a customer's legacy core account so it shows in the app."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("account_number")
        parser.add_argument("--name", default="")
        parser.add_argument("--kind", default="current", choices=["current", "savings"])

    def handle(self, *args: Any, **options: Any) -> None:
        customer = get_user_model().objects.filter(email__iexact=options["email"]).first()
        if customer is None:
            raise CommandError(f"No customer with e-mail {options['email']}.")
        try:
            link = legacy_account_link(
                customer=customer,
                account_number=options["account_number"],
                actor="manage.py link_legacy_account",
                name=options["name"],
                kind=options["kind"],
            )
        except (LegacyAccountUnknown, LegacyAccountAlreadyLinked, ValueError) as exc:
            raise CommandError(str(exc)) from None
        except LegacyError as exc:
            raise CommandError(f"The legacy core cannot be reached: {exc}") from None
        self.stdout.write(f"{link.iban} ({link.currency}) linked to {customer.email}: {link.pk}")
