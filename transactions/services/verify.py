"""Proving the ledger's invariants from the data (manage.py verify_ledger, daily task)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from bankcore.money import format_amount


@dataclass
class LedgerReport:
    accounts: int = 0
    transactions: int = 0
    entries: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary_lines(self) -> list[str]:
        lines = [
            f"accounts: {self.accounts}",
            f"transactions: {self.transactions}",
            f"entries: {self.entries}",
        ]
        for currency, total in sorted(self.totals.items()):
            lines.append(f"total {currency}: {format_amount(total, currency)}")
        return lines


_UNBALANCED = """
SELECT transaction_id, currency, sum(amount), count(*) FROM transactions_entry
GROUP BY transaction_id, currency HAVING sum(amount) <> 0
"""
_TOO_FEW_ENTRIES = """
SELECT t.id FROM transactions_transaction t LEFT JOIN transactions_entry e ON e.transaction_id = t.id
GROUP BY t.id HAVING count(e.id) < 2
"""
_BALANCE_MISMATCH = """
SELECT a.id, a.iban, a.balance, coalesce(s.total, 0) FROM accounts_bankaccount a
LEFT JOIN (SELECT account_id, sum(amount) AS total FROM transactions_entry GROUP BY account_id) s
  ON s.account_id = a.id
WHERE a.balance <> coalesce(s.total, 0)
"""
_BELOW_OVERDRAFT = """
SELECT id, iban, balance, overdraft_limit FROM accounts_bankaccount
WHERE kind <> 'internal' AND balance < -overdraft_limit
"""
_LAST_BALANCE_AFTER = """
SELECT a.id, a.iban, a.balance, e.balance_after FROM accounts_bankaccount a
JOIN LATERAL (
    SELECT balance_after FROM transactions_entry WHERE account_id = a.id ORDER BY created_at DESC, id DESC LIMIT 1
) e ON true
WHERE e.balance_after <> a.balance
"""
_HELD_MISMATCH = """
SELECT a.id, a.iban, a.held, coalesce(h.total, 0) FROM accounts_bankaccount a
LEFT JOIN (SELECT account_id, sum(amount) AS total FROM transactions_hold WHERE status = 'active'
           GROUP BY account_id) h ON h.account_id = a.id
WHERE a.held <> coalesce(h.total, 0)
"""
_OPEN_PAYMENT_WITHOUT_ACTIVE_HOLD = """
SELECT p.id, p.status, h.status FROM transactions_payment p JOIN transactions_hold h ON h.id = p.hold_id
WHERE (p.status IN ('pending', 'batched', 'submitted') AND h.status <> 'active')
   OR (p.status = 'settled' AND h.status <> 'captured')
   OR (p.status IN ('rejected', 'cancelled') AND h.status <> 'released')
"""
_WRONG_CURRENCY = """
SELECT e.id, e.currency, a.currency FROM transactions_entry e JOIN accounts_bankaccount a ON a.id = e.account_id
WHERE e.currency <> a.currency
"""


def ledger_verify() -> LedgerReport:
    """Check every invariant over the whole ledger in one consistent snapshot.

    Read-only. Runs in a REPEATABLE READ transaction so concurrent
    postings cannot make a consistent ledger look broken.
    """
    report = LedgerReport()
    # Inside a caller's transaction (e.g. a test) its snapshot is used as it is.
    snapshot = not connection.in_atomic_block
    with connection.cursor() as cur:
        if snapshot:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # Whole-ledger scans outlast the app's statement_timeout on a large ledger; the
            # daily task runs this in a worker, whose sessions have one (settings).
            cur.execute("SET LOCAL statement_timeout = 0")
        try:
            cur.execute("SELECT count(*) FROM accounts_bankaccount")
            report.accounts = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM transactions_transaction")
            report.transactions = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM transactions_entry")
            report.entries = cur.fetchone()[0]
            cur.execute("SELECT currency, sum(balance) FROM accounts_bankaccount GROUP BY currency")
            report.totals = {currency: int(total) for currency, total in cur.fetchall()}
            for currency, total in report.totals.items():
                if total != 0:
                    report.violations.append(
                        f"total of all {currency} balances is {format_amount(total, currency)}, not 0"
                    )
            cur.execute(_UNBALANCED)
            for txn, currency, total, count in cur.fetchall():
                report.violations.append(f"transaction {txn}: {count} {currency} entries sum to {total}, not 0")
            cur.execute(_TOO_FEW_ENTRIES)
            for (txn,) in cur.fetchall():
                report.violations.append(f"transaction {txn} has fewer than two entries")
            cur.execute(_BALANCE_MISMATCH)
            for account, iban, balance, total in cur.fetchall():
                report.violations.append(f"account {iban} ({account}): balance {balance} != sum of entries {total}")
            cur.execute(_BELOW_OVERDRAFT)
            for account, iban, balance, overdraft in cur.fetchall():
                report.violations.append(f"account {iban} ({account}): balance {balance} below -overdraft {overdraft}")
            cur.execute(_LAST_BALANCE_AFTER)
            for account, iban, balance, after in cur.fetchall():
                report.violations.append(
                    f"account {iban} ({account}): balance {balance} != latest entry's balance_after {after}"
                )
            cur.execute(_HELD_MISMATCH)
            for account, iban, held, total in cur.fetchall():
                report.violations.append(f"account {iban} ({account}): held {held} != sum of active holds {total}")
            cur.execute(_OPEN_PAYMENT_WITHOUT_ACTIVE_HOLD)
            for payment, payment_status, hold_status in cur.fetchall():
                report.violations.append(f"payment {payment} is {payment_status} but its hold is {hold_status}")
            cur.execute(_WRONG_CURRENCY)
            for entry, entry_currency, account_currency in cur.fetchall():
                report.violations.append(f"entry {entry}: currency {entry_currency} on a {account_currency} account")
        finally:
            if snapshot:
                cur.execute("COMMIT")
    return report


def ledger_alert_staff(*, report: LedgerReport, staff: Any) -> int:
    """E-mail every active staff member that the ledger check failed (and log it at ERROR).

    Direct e-mail rather than notify(): there is no customer-facing event for it.
    Returns how many staff were e-mailed.
    """
    import logging

    from django.conf import settings
    from django.core.mail import send_mail

    logging.getLogger(__name__).error(
        "ledger verification failed", extra={"violations": report.violations[:50], "count": len(report.violations)}
    )
    recipients = [user.email for user in staff if user.email]
    if not recipients:
        return 0
    body = "\n".join(
        [
            f"verify_ledger found {len(report.violations)} violation(s):",
            *report.violations[:100],
            "",
            *report.summary_lines(),
        ]
    )
    send_mail(f"[{settings.BANK_NAME}] LEDGER VERIFICATION FAILED", body, settings.DEFAULT_FROM_EMAIL, recipients)
    return len(recipients)
