"""/api/v1/accounts: open, list, show, history; ownership."""

from __future__ import annotations

import pytest
from schwifty import IBAN

from transactions.services.cash import cash_withdraw
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_opening_an_account_gives_a_valid_iban_of_this_bank(customer_client, settings):
    response = customer_client.post("/api/v1/accounts", {"kind": "savings", "currency": "JPY"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    iban = IBAN(body["number"])  # raises unless the mod-97 check digits are right
    assert iban.country_code == settings.BANK_COUNTRY_CODE and iban.bank_code == settings.BANK_CODE
    assert body["balance"] == "0" and body["currency"] == "JPY" and body["kind"] == "savings"
    assert body["status"] == "active"


def test_opening_an_internal_or_unknown_kind_is_invalid(customer_client):
    response = customer_client.post("/api/v1/accounts", {"kind": "internal", "currency": "EUR"}, format="json")
    assert response.status_code == 400
    assert "kind" in response.json()["error"]["details"]
    response = customer_client.post("/api/v1/accounts", {"kind": "current", "currency": "XXX"}, format="json")
    assert "currency" in response.json()["error"]["details"]


def test_accounts_list_shows_only_the_callers_accounts_with_decimal_balances(customer, customer_client):
    mine = open_account(customer, balance=12_345)
    open_account(CustomerFactory(), balance=999)
    body = customer_client.get("/api/v1/accounts").json()
    assert body["next"] is None
    assert [row["id"] for row in body["results"]] == [str(mine.pk)]
    row = body["results"][0]
    assert row["balance"] == "123.45" and row["available"] == "123.45" and row["number"] == mine.iban


def test_another_customers_account_answers_404_everywhere(customer_client):
    theirs = open_account(CustomerFactory(), balance=500)
    for path in (
        f"/api/v1/accounts/{theirs.pk}",
        f"/api/v1/accounts/{theirs.pk}/transactions",
        f"/api/v1/accounts/{theirs.pk}/statement?month=2026-11&format=csv",
    ):
        response = customer_client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_unauthenticated_requests_are_refused(api_client):
    assert api_client.get("/api/v1/accounts").status_code == 401


def test_history_is_newest_first_with_signed_amounts_and_counterparty(customer, customer_client):
    from transactions.services.transfers import transfer_create

    account = open_account(customer, balance=10_000)
    friend = CustomerFactory(full_name="Frieda Friend")
    friends = open_account(friend)
    transfer_create(
        user=customer,
        source_account_id=account.pk,
        destination_iban=friends.iban,
        amount=2_550,
        currency="EUR",
        description="Dinner",
    )
    cash_withdraw(iban=account.iban, amount=450)
    rows = customer_client.get(f"/api/v1/accounts/{account.pk}/transactions").json()["results"]
    assert [(r["amount"], r["balance_after"]) for r in rows] == [
        ("-4.50", "70.00"),
        ("-25.50", "74.50"),
        ("100.00", "100.00"),
    ]
    assert rows[1]["counterparty"] == {"name": "Frieda Friend", "iban": friends.iban}
    assert rows[1]["description"] == "Dinner"
    assert rows[0]["counterparty"] is None
    received = client_for(friend).get(f"/api/v1/accounts/{friends.pk}/transactions").json()["results"]
    assert received[0]["amount"] == "25.50"
    assert received[0]["counterparty"]["iban"] == account.iban


def test_history_pages_with_a_cursor_without_gaps_or_repeats(customer, customer_client):
    account = open_account(customer, balance=100)
    for _ in range(6):
        cash_withdraw(iban=account.iban, amount=1)
    seen, url = [], f"/api/v1/accounts/{account.pk}/transactions?limit=3"
    while url:
        body = customer_client.get(url).json()
        seen.extend(row["id"] for row in body["results"])
        url = f"/api/v1/accounts/{account.pk}/transactions?limit=3&cursor={body['next']}" if body["next"] else None
    assert len(seen) == 7 and len(set(seen)) == 7
    assert [int(i) for i in seen] == sorted((int(i) for i in seen), reverse=True)


def test_history_filters_by_since_and_until(customer, customer_client):
    account = open_account(customer, balance=100)
    rows = customer_client.get(f"/api/v1/accounts/{account.pk}/transactions?since=2000-01-01").json()["results"]
    assert len(rows) == 1
    rows = customer_client.get(f"/api/v1/accounts/{account.pk}/transactions?until=2000-01-01").json()["results"]
    assert rows == []
    response = customer_client.get(f"/api/v1/accounts/{account.pk}/transactions?since=yesterday")
    assert response.status_code == 400 and "since" in response.json()["error"]["details"]


def test_history_page_is_one_index_range_scan_without_offset_count_or_sort(customer):
    from datetime import UTC, datetime

    from django.db import connection

    from transactions.selectors import _BEFORE, account_history

    account = open_account(customer, balance=100)
    page = (
        account_history(account=account)
        .extra(where=[_BEFORE], params=[datetime(2100, 1, 1, tzinfo=UTC), 10**12])
        .order_by("-created_at", "-id")[:21]
    )
    sql, params = page.query.sql_with_params()
    assert "OFFSET" not in sql.upper() and "COUNT(" not in sql.upper()
    with connection.cursor() as cur:
        # Tiny test tables whose statistics depend on what ran before: the planner may find a
        # scan-and-sort as cheap as the index. Penalise both, and the plan shows whether the
        # index alone delivers the page in order (it must: at a million entries that is the point).
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_sort = off")
        cur.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "Index Scan Backward using entry_account_created" in plan, plan
    assert "Sort" not in plan, plan
