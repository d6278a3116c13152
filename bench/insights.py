"""Spending insights on an account with 1,000,000 entries. Not a test: it prints figures.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bankcore_bench_insights \
    REDIS_URL=redis://127.0.0.1:6379/2 .venv/bin/python bench/insights.py [--entries 1000000] [--runs 20]

Setup (bulk-loaded in SQL, triggers off for the load only, as bench/transfers.py does; the final
verify_ledger proves the load balanced): one customer with one EUR current account and
`--entries` entries on it - about 31,000 a month (one every 86.4 s) for ~32 months, then three
empty months, then a sparse month of 300 entries. 95 % are money out to 40 merchants (bankcore
customers whose names the bank's default rules know, and some they do not), 20 % of those with a
unique invoice reference in the description (the worst case for rule matching: one group per
entry); 5 % are money in (salary). Every entry has its balanced contra entry on the merchant's or
the employer's account, with balance_after consistent on both sides. The customer has
re-categorised a few entries (their own choices and taught counterparties join in).

Measured: GET /api/v1/insights/spending?month= through the API (in-process test client, a real
JWT session), median and p95 of `--runs`, for a dense month (~31,000 entries, its previous month
as many: the statement reads both) and for the sparse month; the aggregation statement alone;
and EXPLAIN (ANALYZE) of the dense month, summarised: how the entries are reached.

The database named by BENCH_DATABASE_URL is DROPPED and created afresh on every run.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bankcore_bench_insights")
from transfers import recreate_database, setup_django  # noqa: E402 - sets the env first

MERCHANTS = [
    "Lidl Vertrieb",
    "Aldi Sued",
    "Rewe Markt",
    "Edeka Center",
    "BVG Berlin",
    "Deutsche Bahn Fernverkehr",
    "Uber BV",
    "Stadtwerke Berlin",
    "Vodafone GmbH",
    "Telekom Deutschland",
    "Pizzeria Da Mario",
    "Cafe Einstein",
    "Restaurant Lotus",
    "Amazon EU",
    "Zalando SE",
    "IKEA Deutschland",
    "Netflix International",
    "Spotify AB",
    "Apotheke am Markt",
    "Lufthansa",
    "Hausverwaltung Landlord GmbH",
    *(f"Small Shop {n}" for n in range(19)),
]
DESCRIPTIONS = ["Card payment", "Contactless", "Online order", "Groceries", "Dinner", "Monthly ticket"]
OPENING = 10**13  # minor units: the customer never runs dry
DENSE_SECONDS = 86.4  # one entry every 86.4 s: 1,000 a day, ~31,000 a month
DENSE_START = "2023-01-01 00:00:00+00"
SPARSE_ENTRIES = 300


def load(entries: int) -> tuple[str, str, date, date]:
    """The customer, merchants, employer and `entries` entries; returns (user id, account id,
    dense month, sparse month)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from accounts.services.bank_accounts import iban_generate, internal_account
    from bankcore.ids import uuid7

    user_model = get_user_model()
    names = ["Bench Customer", "Employer GmbH", *MERCHANTS]
    users = [
        user_model(id=uuid7(), email=f"bench-insights-{n}@bench.test", full_name=name, password="!")
        for n, name in enumerate(names)
    ]
    user_model.objects.bulk_create(users)
    accounts = [(str(uuid7()), str(user.pk), iban_generate(), user.full_name) for user in users]
    customer_account, employer_account = accounts[0][0], accounts[1][0]
    merchant_ids = [row[0] for row in accounts[2:]]
    migration = internal_account(purpose="migration", currency="EUR")
    dense = entries - SPARSE_ENTRIES
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.executemany(
            "INSERT INTO accounts_bankaccount (id, owner_id, name, kind, currency, status, iban, balance, held,"
            " overdraft_limit, created_at) VALUES (%s, %s, %s, 'current', 'EUR', 'active', %s, 0, 0, 0,"
            " '2022-12-01')",
            [(account_id, owner, name[:100], iban) for account_id, owner, iban, name in accounts],
        )
        # The opening balance: one balanced transaction against the migration account.
        opening = uuid7()
        cur.execute(
            "INSERT INTO transactions_transaction (id, kind, status, reference, description, currency,"
            " created_at, posted_at) VALUES (%s, 'opening', 'posted', 'bench', 'Opening balance', 'EUR',"
            " '2022-12-31', '2022-12-31')",
            [opening],
        )
        cur.execute(
            "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)"
            " VALUES (%s, %s, %s, 'EUR', %s, '2022-12-31'), (%s, %s, %s, 'EUR', %s, '2022-12-31'),"
            " (%s, %s, %s, 'EUR', %s, '2022-12-31')",
            [
                *(opening, customer_account, OPENING, OPENING),
                *(opening, employer_account, OPENING, OPENING),
                *(opening, migration.pk, -2 * OPENING, migration.balance - 2 * OPENING),
            ],
        )
        cur.execute("UPDATE accounts_bankaccount SET balance = balance - %s WHERE id = %s", [2 * OPENING, migration.pk])
        # The movements: n < dense every 86.4 s from DENSE_START; then SPARSE_ENTRIES spread over the
        # 4th month after the last dense one. Every 20th is salary in; the rest card spending.
        cur.execute(
            """
            CREATE TEMP TABLE bench_move ON COMMIT DROP AS
            SELECT n, NULL::uuid AS id,
                   CASE WHEN n < %(dense)s
                        THEN %(dense_start)s::timestamptz + make_interval(secs => n * %(step)s)
                        ELSE date_trunc('month', %(dense_start)s::timestamptz
                                 + make_interval(secs => %(dense)s * %(step)s)) + interval '4 months'
                             + make_interval(secs => (n - %(dense)s) * 8000)
                   END AS at,
                   n %% 20 = 7 AS salary,
                   (%(merchants)s::uuid[])[1 + (hashint4(n) & 2147483647) %% %(merchant_count)s] AS merchant,
                   CASE WHEN n %% 5 = 0 THEN 'Invoice ' || (100000 + n)::text
                        ELSE (%(descriptions)s::text[])[1 + n %% %(description_count)s] END AS description,
                   100 + (hashint4(n + 17) & 2147483647) %% 9900 AS amount
            FROM generate_series(0, %(total)s - 1) AS n
            """,
            {
                "dense": dense,
                "dense_start": DENSE_START,
                "step": DENSE_SECONDS,
                "merchants": merchant_ids,
                "merchant_count": len(merchant_ids),
                "descriptions": DESCRIPTIONS,
                "description_count": len(DESCRIPTIONS),
                "total": entries,
            },
        )
        # Time-ordered ids, as uuid7() gives the journal in production (a month's rows are neighbours).
        cur.execute(
            "UPDATE bench_move SET id = (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0')"
            " || '7' || substr(md5(n::text), 1, 3) || '8' || substr(md5(n::text), 4, 15))::uuid"
        )
        cur.execute(
            "INSERT INTO transactions_transaction (id, kind, status, reference, description, currency, amount,"
            " source_account_id, destination_account_id, created_at, posted_at)"
            " SELECT id, 'transfer', 'posted', '', CASE WHEN salary THEN 'Salary' ELSE description END, 'EUR',"
            " CASE WHEN salary THEN amount * 40 ELSE amount END,"
            " CASE WHEN salary THEN %(employer)s::uuid ELSE %(customer)s::uuid END,"
            " CASE WHEN salary THEN %(customer)s::uuid ELSE merchant END, at, at FROM bench_move ORDER BY n",
            {"employer": employer_account, "customer": customer_account},
        )
        # Both legs of every movement, balance_after as a running sum per account in time order.
        cur.execute(
            """
            INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)
            SELECT id, account_id, amount, 'EUR',
                   start + sum(amount) OVER (PARTITION BY account_id ORDER BY at, n, leg), at
            FROM (
                SELECT m.id, m.n, m.at, 0 AS leg, %(customer)s::uuid AS account_id,
                       CASE WHEN m.salary THEN m.amount * 40 ELSE -m.amount END AS amount,
                       %(opening)s::bigint AS start
                FROM bench_move m
                UNION ALL
                SELECT m.id, m.n, m.at, 1, CASE WHEN m.salary THEN %(employer)s::uuid ELSE m.merchant END,
                       CASE WHEN m.salary THEN -m.amount * 40 ELSE m.amount END,
                       CASE WHEN m.salary THEN %(opening)s::bigint ELSE 0 END
                FROM bench_move m
            ) AS legs
            ORDER BY at, n, leg
            """,
            {"customer": customer_account, "employer": employer_account, "opening": OPENING},
        )
        cur.execute(
            "UPDATE accounts_bankaccount a SET balance = s.total FROM ("
            " SELECT account_id, sum(amount) AS total FROM transactions_entry GROUP BY account_id) s"
            " WHERE a.id = s.account_id AND a.kind <> 'internal'"
        )
    print(f"loaded {entries:,} entries on the customer's account in {time.perf_counter() - started:.0f} s", flush=True)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE transactions_entry")
        cur.execute("VACUUM ANALYZE transactions_transaction")
        cur.execute("VACUUM ANALYZE accounts_bankaccount")
        cur.execute(
            "SELECT min(created_at), max(created_at) FROM transactions_entry WHERE account_id = %s", [customer_account]
        )
        _, last = cur.fetchone()
    dense_month = date(2025, 6, 1)
    sparse_month = date(last.year, last.month, 1)
    return str(users[0].pk), customer_account, dense_month, sparse_month


def teach(user_id: str, account_id: str) -> None:
    """A few of the customer's own choices: three entries re-categorised (two teach their counterparty)."""
    from django.contrib.auth import get_user_model

    from transactions.models import Entry
    from transactions.services.insights import entry_recategorise

    user = get_user_model().objects.get(pk=user_id)
    picks = (
        Entry.objects.filter(account_id=account_id, amount__lt=0, created_at__gte=datetime(2024, 3, 1, tzinfo=UTC))
        .order_by("created_at", "id")
        .select_related("transaction")[:400]
    )
    chosen = {}
    for entry in picks:
        key = entry.transaction.destination_account_id
        if key not in chosen and len(chosen) < 3:
            chosen[key] = entry
    for entry, category in zip(chosen.values(), ("health", "entertainment", "travel"), strict=False):
        entry_recategorise(user=user, entry=entry, category=category)


def measure(user_id: str, months: dict[str, date], runs: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.test import APIClient

    from accounts.models import LoginSession
    from accounts.services.sessions import session_start
    from transactions.services import insights
    from transactions.services.insights import spending_for_month

    user = get_user_model().objects.get(pk=user_id)
    _, pair = session_start(user=user, method=LoginSession.Method.PASSWORD, device=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")

    for label, month in months.items():
        path = f"/api/v1/insights/spending?month={month:%Y-%m}"
        client.get(path)  # warm
        api, sql = [], []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(path)
            api.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content
            started = time.perf_counter()
            spending_for_month(user=user, month=month, currency="EUR")
            sql.append((time.perf_counter() - started) * 1000)
        body = response.json()
        with connection.cursor() as cur:
            start, end = insights.month_bounds(month)
            cur.execute(
                "SELECT count(*) FROM transactions_entry e JOIN accounts_bankaccount a ON a.id = e.account_id"
                " WHERE a.owner_id = %s AND e.created_at >= %s AND e.created_at < %s",
                [user_id, start, end],
            )
            count = cur.fetchone()[0]
        p95 = sorted(api)[max(0, int(len(api) * 0.95) - 1)]
        print(
            f"\n{label} month {month:%Y-%m}: {count:,} entries; GET /insights/spending median "
            f"{statistics.median(api):.1f} ms (p95 {p95:.1f} ms); spending_for_month alone "
            f"{statistics.median(sql):.1f} ms"
        )
        print(f"  total_out {body['total_out']} {body['currency']}; categories:")
        for item in body["categories"]:
            print(
                f"    {item['category']:14} {item['amount']:>14} (vs previous month {item['change_vs_previous_month']})"
            )


def explain(user_id: str, account_id: str, month: date) -> None:
    from django.db import connection

    from transactions.services import insights

    start, end = insights.month_bounds(month)
    previous, _ = insights.month_bounds(insights.previous_month(month))
    params = {"customer": user_id, "accounts": [account_id], "since": previous, "until": end, "month_start": start}
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + insights._SPENDING_SQL, params)
        plan = [row[0] for row in cur.fetchall()]
    print(f"\nEXPLAIN ANALYZE of the aggregation ({month:%Y-%m} and its previous month), the entry access:")
    for line in plan:
        if re.search(
            r"on transactions_entry|Index Cond: \(\(e\.account_id|Seq Scan|Execution Time|Planning Time", line
        ):
            print("  " + line.strip()[:150])
    seq = [
        line
        for line in plan
        if "Seq Scan on transactions_entry" in line or "Seq Scan on transactions_transaction" in line
    ]
    print(
        "  -> entries by an index range scan of entry_account_created:",
        "YES" if any("entry_account_created" in line for line in plan) and not seq else "NO",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    recreate_database()
    setup_django()
    user_id, account_id, dense, sparse = load(args.entries)
    teach(user_id, account_id)
    measure(user_id, {"dense": dense, "sparse": sparse}, args.runs)
    explain(user_id, account_id, dense)

    from transactions.services.verify import ledger_verify

    report = ledger_verify()
    print(f"\nverify_ledger after the load: {'OK' if report.ok else 'BROKEN'} ({report.transactions:,} transactions)")
    for violation in report.violations[:10]:
        print("  ", violation)


if __name__ == "__main__":
    main()
