"""`manage.py reconcile_settlements --date YYYY-MM-DD`: the gateway's camt.053 for a day against the ledger.

Prints every mismatch; exits 1 when there is any, or when the statement cannot be fetched (the
gateway unreachable, not configured, or its statement invalid), 0 on a clean day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bankcore.money import format_amount
from integrations.gateway.client import GatewayClient
from integrations.gateway.errors import GatewayError
from transactions.services.reconciliation import reconciliation_run


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--date must be YYYY-MM-DD, got {text!r}") from None


class Command(BaseCommand):
    help = "Reconcile a day's settlements and incoming credits with the gateway's camt.053 statement."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", dest="day", help="The UTC day, YYYY-MM-DD (default yesterday).")

    def handle(self, *args: Any, **options: Any) -> None:
        day = _day(options["day"]) if options["day"] else datetime.now(UTC).date() - timedelta(days=1)
        try:
            client = GatewayClient(settings.PAYMENT_GATEWAY_URL, attempts=2)
            statement = client.statement(day)
        except ValueError as exc:  # not configured
            raise CommandError(str(exc)) from None
        except GatewayError as exc:
            raise CommandError(f"Could not fetch the statement for {day} from the payment gateway: {exc}") from None
        run = reconciliation_run(day=day, statement=statement)
        self.stdout.write(
            f"{day}: statement {run.statement_id}, {run.statement_entries} entries at the gateway, "
            f"{run.ledger_entries} in the ledger, {run.mismatch_count} mismatches (run {run.pk})"
        )
        for row in run.mismatches.order_by("id"):
            direction = "credit" if row.credit else "debit"
            gateway = format_amount(row.gateway_amount, row.currency) if row.gateway_amount is not None else "-"
            ours = format_amount(row.ledger_amount, row.currency) if row.ledger_amount is not None else "-"
            self.stdout.write(
                f"  {row.kind}: {direction} {row.reference} gateway {gateway} ledger {ours} {row.currency}"
            )
        if run.mismatch_count:
            raise CommandError(f"{run.mismatch_count} mismatches on {day}; see reconciliation run {run.pk}.")
        self.stdout.write(self.style.SUCCESS(f"{day} reconciles."))
