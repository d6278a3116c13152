"""Monthly statements as CSV or PDF, produced in constant memory.

Entries are read in keyset chunks (selectors.statement_entries). CSV is streamed to the
client row by row. The PDF is drawn page by page with reportlab (compressed pages)
into a temporary file that spills to disk, then streamed out in chunks; at no point
are all of a month's entries held in memory.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterator
from datetime import date
from typing import IO, Any

from django.conf import settings
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from accounts.models import BankAccount
from bankcore.money import format_amount
from transactions.selectors import balance_at, counterparty_of, month_bounds, statement_entries

CSV_HEADER = ["date", "type", "description", "counterparty", "counterparty_iban", "amount", "balance_after", "entry_id"]


class _Echo:
    def write(self, value: str) -> str:
        return value


def statement_csv(*, account: BankAccount, month: date) -> Iterator[str]:
    """Yield CSV lines: a header block with the opening balance, every entry, then the closing balance."""
    start, end = month_bounds(month)
    currency = account.currency
    writer = csv.writer(_Echo())
    opening = balance_at(account=account, moment=start)
    yield writer.writerow(["statement", settings.BANK_NAME, account.iban, currency, month.strftime("%Y-%m")])
    yield writer.writerow(["opening_balance", format_amount(opening, currency)])
    yield writer.writerow(CSV_HEADER)
    total = 0
    count = 0
    for entry in statement_entries(account=account, start=start, end=end):
        total += entry.amount
        count += 1
        counterparty = counterparty_of(entry) or {}
        yield writer.writerow(
            [
                entry.created_at.isoformat(),
                entry.transaction.kind,
                entry.transaction.description,
                counterparty.get("name", ""),
                counterparty.get("iban", ""),
                format_amount(entry.amount, currency),
                format_amount(entry.balance_after, currency),
                entry.id,
            ]
        )
    yield writer.writerow(["entries", count, "total", format_amount(total, currency)])
    yield writer.writerow(["closing_balance", format_amount(opening + total, currency)])


def statement_pdf(*, account: BankAccount, month: date, owner_name: str) -> IO[bytes]:
    """Render the statement PDF into a spooled temporary file (rewound) and return it."""
    start, end = month_bounds(month)
    currency = account.currency
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115 - returned open
    pdf = Canvas(out, pagesize=A4, pageCompression=1)
    pdf.setTitle(f"Statement {account.iban} {month:%Y-%m}")
    width, height = A4
    left, bottom, line = 15 * mm, 15 * mm, 4.6 * mm
    columns = [left, left + 38 * mm, left + 110 * mm, left + 150 * mm]
    page = 1
    opening = balance_at(account=account, moment=start)

    def header() -> float:
        pdf.setFont("Helvetica-Bold", 12)
        pdf.drawString(left, height - 20 * mm, f"{settings.BANK_NAME} — statement {month:%B %Y}")
        pdf.setFont("Helvetica", 9)
        pdf.drawString(left, height - 26 * mm, f"{owner_name} · {account.name} · {account.iban} · {currency}")
        pdf.drawRightString(width - left, height - 26 * mm, f"page {page}")
        y = height - 34 * mm
        pdf.setFont("Helvetica-Bold", 8)
        for x, title in zip(columns, ["Date", "Description", "Amount", "Balance"], strict=True):
            pdf.drawString(x, y, title)
        pdf.setFont("Helvetica", 8)
        return y - line

    y = header()
    pdf.drawString(columns[1], y, "Opening balance")
    pdf.drawString(columns[3], y, format_amount(opening, currency))
    y -= line
    total = 0
    for entry in statement_entries(account=account, start=start, end=end):
        if y < bottom + 2 * line:
            pdf.showPage()
            page += 1
            y = header()
        total += entry.amount
        counterparty = counterparty_of(entry)
        text = entry.transaction.description or entry.transaction.get_kind_display()
        if counterparty:
            text = f"{text} · {counterparty['name']}"
        pdf.drawString(columns[0], y, entry.created_at.strftime("%Y-%m-%d %H:%M"))
        pdf.drawString(columns[1], y, text[:60])
        pdf.drawString(columns[2], y, format_amount(entry.amount, currency))
        pdf.drawString(columns[3], y, format_amount(entry.balance_after, currency))
        y -= line
    pdf.setFont("Helvetica-Bold", 8)
    pdf.drawString(columns[1], y - line / 2, "Closing balance")
    pdf.drawString(columns[3], y - line / 2, format_amount(opening + total, currency))
    pdf.save()
    out.seek(0)
    return out


def owner_display_name(account: BankAccount) -> Any:
    return account.owner.full_name if account.owner is not None else account.name
