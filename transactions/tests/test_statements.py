"""Monthly statements: opening + entries = closing, CSV and PDF, streamed."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest

from transactions.services.cash import cash_deposit, cash_withdraw
from transactions.tests.factories import open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def at(day, month=10):
    return datetime(2026, month, day, 12, tzinfo=UTC)


@pytest.fixture
def october(customer):
    account = open_account(customer)
    cash_deposit(iban=account.iban, amount=50_000, at=at(20, 9), reference="September salary")
    cash_withdraw(iban=account.iban, amount=1_234, at=at(2))
    cash_deposit(iban=account.iban, amount=10_000, at=at(15), reference="Refund")
    cash_withdraw(iban=account.iban, amount=99, at=at(31))
    cash_deposit(iban=account.iban, amount=7, at=at(1, 11))
    return account


def test_csv_statement_has_opening_every_entry_and_closing(customer_client, october):
    response = customer_client.get(f"/api/v1/accounts/{october.pk}/statement?month=2026-10&format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.streaming
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[1] == ["opening_balance", "500.00"]
    entries = rows[3:-2]
    assert [row[5] for row in entries] == ["-12.34", "100.00", "-0.99"]
    assert [row[6] for row in entries] == ["487.66", "587.66", "586.67"]
    assert rows[-1] == ["closing_balance", "586.67"]
    assert rows[-2] == ["entries", "3", "total", "86.67"]


def test_statement_of_an_empty_month_opens_and_closes_at_the_same_balance(customer_client, october):
    response = customer_client.get(f"/api/v1/accounts/{october.pk}/statement?month=2026-12")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[1] == ["opening_balance", "586.74"] and rows[-1] == ["closing_balance", "586.74"]


def pdf_pages(content: bytes) -> int:
    """The number of pages of a PDF: its page objects (`/Type /Page`, not `/Pages` or `/PageMode`),
    which must agree with the page tree's `/Count`."""
    import re

    pages = len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", content))
    counts = {int(n) for n in re.findall(rb"/Type\s*/Pages(?![A-Za-z])[^>]*?/Count\s+(\d+)", content)}
    counts |= {int(n) for n in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages(?![A-Za-z])", content)}
    assert counts == {pages}, f"{pages} page objects, page tree /Count {counts}"
    return pages


def test_pdf_statement_is_a_real_pdf_with_a_page_per_screenful(customer, customer_client):
    # A fixed past month: "the current month" would split when the test straddles a month's end.
    account = open_account(customer)
    cash_deposit(iban=account.iban, amount=1_000_000, at=at(1))
    for minute in range(120):
        cash_withdraw(iban=account.iban, amount=1, at=at(2) + timedelta(minutes=minute))
    month = "2026-10"
    response = customer_client.get(f"/api/v1/accounts/{account.pk}/statement?month={month}&format=pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    content = b"".join(response.streaming_content)
    assert content.startswith(b"%PDF-") and content.rstrip().endswith(b"%%EOF")
    # 121 entries and the opening line: 50 on the first page, 51 on the second, 20 on the third.
    assert pdf_pages(content) == 3
    # The count is of pages, not of the word: a month of one entry is one page.
    single = open_account(customer)
    cash_deposit(iban=single.iban, amount=100, at=at(3))
    response = customer_client.get(f"/api/v1/accounts/{single.pk}/statement?month={month}&format=pdf")
    assert pdf_pages(b"".join(response.streaming_content)) == 1


def test_statement_rejects_a_malformed_month_or_format(customer_client, october):
    response = customer_client.get(f"/api/v1/accounts/{october.pk}/statement?month=2026-13&format=doc")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"month", "format"}


@pytest.mark.django_db(transaction=True)
def test_csv_statement_of_a_big_month_streams_in_bounded_memory():
    import tracemalloc

    from django.db import connection, transaction

    from bankcore.testing import connected_as_owner
    from transactions.statements import statement_csv
    from transactions.tests.factories import CustomerFactory

    owner = CustomerFactory()
    account, contra = open_account(owner), open_account(CustomerFactory())
    entries = 20_000
    # Bulk load as the owner (balanced pairs, triggers off for the load only); verified below.
    with connected_as_owner(), transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(
            "CREATE TEMP TABLE big ON COMMIT DROP AS SELECT n, gen_random_uuid() AS id,"
            " timestamptz '2026-10-01' + interval '1 minute' * n AS at FROM generate_series(1, %s) AS n",
            [entries],
        )
        cur.execute(
            "INSERT INTO transactions_transaction (id, kind, status, reference, description, currency, amount,"
            " source_account_id, destination_account_id, created_at, posted_at)"
            " SELECT id, 'transfer', 'posted', '', 'pocket money', 'EUR', 1, %s, %s, at, at FROM big",
            [contra.pk, account.pk],
        )
        cur.execute(
            "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)"
            " SELECT id, %s, 1, 'EUR', n, at FROM big UNION ALL SELECT id, %s, -1, 'EUR', -n, at FROM big",
            [account.pk, contra.pk],
        )
        cur.execute("UPDATE accounts_bankaccount SET balance = %s WHERE id = %s", [entries, account.pk])
        cur.execute(
            "UPDATE accounts_bankaccount SET overdraft_limit = %s, balance = %s WHERE id = %s",
            [entries, -entries, contra.pk],
        )

    from transactions.services.verify import ledger_verify

    assert ledger_verify().ok
    tracemalloc.start()
    lines = 0
    last = ""
    for line in statement_csv(account=account, month=date(2026, 10, 1)):
        lines += 1
        last = line
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert lines == entries + 5
    assert last.strip() == f"closing_balance,{entries / 100:.2f}"
    # Loading the month at once peaks above 120 MB here; streamed, it stays near one chunk.
    assert peak < 15 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
