"""Reconciliation with the legacy core: do both sides agree? (`manage.py reconcile_legacy`)

"Both sides", for accounts linked to the app (LegacyAccountLink) — their money lives on the core:
1. balance: the core's ledger balance now (a fresh 0100) against the last balance bankcore
   recorded from the core's own answers (inquiry, 0210, 0410). They differ when the account
   moved at the core without bankcore knowing it, or when an effect bankcore believes undone
   was not (or the other way round).
2. open requests: a 0200 that is neither completed on both sides, nor declined, nor reversed,
   older than LEGACY_REQUEST_STALE_SECONDS — an effect that may exist on one side only.
3. clearing: `legacy_clearing` in each currency must hold what completed requests moved through
   it (credits sent to the core minus debits taken from it): every completed request posted
   exactly once in bankcore.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import BankAccount, LegacyAccountLink
from bankcore.money import format_amount
from integrations.legacy.client import default_client
from integrations.legacy.errors import LegacyDeclined
from transactions.models import LegacyRequest
from transactions.services.legacy_transfers import CLEARING, legacy_clearing_expected, legacy_open_requests


@dataclass(frozen=True)
class LegacyDifference:
    kind: str  # balance_differs | missing_at_core | open_request | clearing_differs
    reference: str
    core: int | None
    bankcore: int | None
    currency: str
    note: str = ""

    def describe(self) -> str:
        core = "-" if self.core is None else format_amount(self.core, self.currency)
        ours = "-" if self.bankcore is None else format_amount(self.bankcore, self.currency)
        note = f" ({self.note})" if self.note else ""
        return f"{self.kind}: {self.reference} core {core} bankcore {ours} {self.currency}{note}"


def legacy_reconcile() -> tuple[int, list[LegacyDifference]]:
    """How many accounts were compared, and every difference. Raises the connector's LegacyError
    when the core does not answer (nothing can be compared then)."""
    client = default_client()
    differences: list[LegacyDifference] = []
    links = list(LegacyAccountLink.objects.order_by("account_number"))
    for link in links:
        try:
            balance = client.balance(link.account_number)
        except LegacyDeclined as exc:
            differences.append(
                LegacyDifference("missing_at_core", link.iban, None, link.last_ledger, link.currency, str(exc))
            )
            continue
        if balance.ledger != link.last_ledger:
            as_of = link.as_of.isoformat() if link.as_of else "never read"
            differences.append(
                LegacyDifference(
                    "balance_differs", link.iban, balance.ledger, link.last_ledger, link.currency, f"as of {as_of}"
                )
            )
    stale = timezone.now() - timedelta(seconds=settings.LEGACY_REQUEST_STALE_SECONDS)
    for row in legacy_open_requests():
        if row.created_at <= stale:
            differences.append(
                LegacyDifference(
                    "open_request",
                    f"rrn {row.rrn} ({row.direction})",
                    None,
                    row.amount,
                    row.currency,
                    f"{row.status}, {row.reversal_attempts} reversal attempts",
                )
            )
    currencies = set(LegacyRequest.objects.values_list("currency", flat=True).distinct())
    for currency in sorted(currencies):
        clearing = BankAccount.objects.filter(internal_code=f"{CLEARING}:{currency}").first()
        actual = clearing.balance if clearing is not None else 0
        expected = legacy_clearing_expected(currency=currency)
        if actual != expected:
            differences.append(
                LegacyDifference(
                    "clearing_differs", f"{CLEARING}:{currency}", expected, actual, currency, "completed requests"
                )
            )
    return len(links), differences
