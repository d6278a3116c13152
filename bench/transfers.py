"""Transfer throughput and history page cost, on PostgreSQL. Not a test: it prints figures.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bankcore_bench \
    REDIS_URL=redis://127.0.0.1:6379/2 .venv/bin/python bench/transfers.py [--seconds 5]

Measures, each at 1, 4 and 16 concurrent clients, on 10,000 accounts and on 10 hot accounts:
  (a) raw SQL: the same transfer (lock two accounts in id order, update both balances,
      insert the journal row and two entries) through psycopg2, no Python framework;
  (b) the service layer: transactions.services.transfers.transfer_create (customer and
      account locks, limits, notifications, audit chain);
  both with their clients as threads spread over one forked process per CPU (--processes),
  the layout an app server gives a Python service: one worker process per core; each
  point in --rounds alternating rounds (a b, b a, a b), whose mean is the figure, so the
  host's drift during a run weighs on (a) and (b) alike;
  (c) HTTP: POST /api/v1/transfers through gunicorn with real JWT auth and an
      Idempotency-Key per request, from concurrent client threads;
and the history page time (first page and a deep cursor page) at 1,000 vs 1,000,000
entries. Prints each figure and the ratios (b)/(a) and (c)/(a).

The database named by BENCH_DATABASE_URL is DROPPED and created afresh on every run:
never point it at a database you care about.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bankcore_bench")
os.environ["DATABASE_URL"] = BENCH_URL
os.environ.setdefault("BANKCORE_ENV", "development")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankcore.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import psycopg2  # noqa: E402

CONCURRENCY = (1, 4, 16)
WIDE_ACCOUNTS = 10_000
HOT_ACCOUNTS = 10
START_BALANCE = 100_000_000  # minor units per account: nobody runs dry during the bench


def recreate_database() -> None:
    """A fresh, empty database for every run: figures never depend on earlier runs."""
    parsed = urlparse(BENCH_URL)
    name = parsed.path.lstrip("/")
    admin = psycopg2.connect(BENCH_URL.replace(f"/{name}", "/postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def setup_django() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def create_accounts(count: int, label: str) -> list[tuple[str, str, str]]:
    """`count` customers with one funded EUR account each: [(user_id, account_id, iban)].

    Funded by one balanced opening transaction against the migration account, in SQL
    (the bench measures transfers, not setup).
    """
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from accounts.services.bank_accounts import iban_generate, internal_account
    from bankcore.ids import uuid7

    user_model = get_user_model()
    users = [
        user_model(id=uuid7(), email=f"bench-{label}-{n}@bench.test", full_name=f"Bench {label} {n}", password="!")
        for n in range(count)
    ]
    user_model.objects.bulk_create(users, batch_size=2000)
    rows = [(str(user.pk), str(uuid7()), iban_generate()) for user in users]
    migration = internal_account(purpose="migration", currency="EUR")
    txn = uuid7()
    with transaction.atomic(), connection.cursor() as cur:
        # Bulk load: the per-row deferred balance check would make one 10,001-leg opening
        # transaction quadratic. verify_ledger at the end proves the load balanced.
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.executemany(
            "INSERT INTO accounts_bankaccount (id, owner_id, name, kind, currency, status, iban, balance, held,"
            " overdraft_limit, created_at) VALUES (%s, %s, 'Bench', 'current', 'EUR', 'active', %s, %s, 0, 0, now())",
            [(account_id, user_id, iban, START_BALANCE) for user_id, account_id, iban in rows],
        )
        cur.execute(
            "INSERT INTO transactions_transaction (id, kind, status, reference, description, currency,"
            " created_at, posted_at) VALUES (%s, 'opening', 'posted', 'bench', 'Opening balance', 'EUR', now(), now())",
            [txn],
        )
        cur.executemany(
            "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)"
            " VALUES (%s, %s, %s, 'EUR', %s, now())",
            [(txn, account_id, START_BALANCE, START_BALANCE) for _, account_id, _ in rows],
        )
        cur.execute(
            "UPDATE accounts_bankaccount SET balance = balance - %s WHERE id = %s",
            [START_BALANCE * count, migration.pk],
        )
        cur.execute(
            "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)"
            " SELECT %s, id, %s, 'EUR', balance, now() FROM accounts_bankaccount WHERE id = %s",
            [txn, -START_BALANCE * count, migration.pk],
        )
    return rows


# --- (a) raw SQL ------------------------------------------------------------------------


def _raw_client(accounts: list[str], seconds: float, ready: Any, out: Any) -> None:
    """One raw SQL client (a thread): the plain transfer in a loop for `seconds`."""
    conn = psycopg2.connect(BENCH_URL)
    rng = random.Random()
    done = 0
    ready.wait()
    deadline = time.perf_counter() + seconds
    with conn.cursor() as cur:
        while time.perf_counter() < deadline:
            source, destination = rng.sample(accounts, 2)
            amount = rng.randint(1, 100)
            first, second = sorted([source, destination])
            cur.execute(
                "SELECT id, balance FROM accounts_bankaccount WHERE id IN (%s, %s) ORDER BY id FOR UPDATE",
                [first, second],
            )
            balances = {str(account): balance for account, balance in cur.fetchall()}
            if balances[source] < amount:
                conn.rollback()
                continue
            cur.execute(
                "UPDATE accounts_bankaccount SET balance = balance + CASE WHEN id = %s THEN %s ELSE %s END"
                " WHERE id IN (%s, %s) RETURNING id, balance",
                [source, -amount, amount, source, destination],
            )
            after = {str(account): balance for account, balance in cur.fetchall()}
            txn = str(uuid.uuid4())
            cur.execute(
                "INSERT INTO transactions_transaction (id, kind, status, reference, description, currency, amount,"
                " source_account_id, destination_account_id, created_at, posted_at)"
                " VALUES (%s, 'transfer', 'posted', '', 'bench', 'EUR', %s, %s, %s, now(), now())",
                [txn, amount, source, destination],
            )
            cur.execute(
                "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after,"
                " created_at) VALUES (%s, %s, %s, 'EUR', %s, clock_timestamp()),"
                " (%s, %s, %s, 'EUR', %s, clock_timestamp())",
                [txn, source, -amount, after[source], txn, destination, amount, after[destination]],
            )
            conn.commit()
            done += 1
    conn.close()
    out.put((done, 0))


def run_clients(client: Any, args: tuple, clients: int, processes: int) -> list[tuple[int, int]]:
    """Run `client(*args, ready, out)` as `clients` threads spread over `processes` forked
    processes (at most one per client); all start together at a barrier. Returns what each
    client put in `out`. Raw SQL and service clients run in the same layout."""
    import queue

    processes = max(1, min(processes, clients))
    if processes == 1:
        out: Any = queue.Queue()
        _client_threads(client, args, threading.Barrier(clients), out, clients)
        return [out.get() for _ in range(clients)]
    context = multiprocessing.get_context("fork")
    out, ready = context.Queue(), context.Barrier(clients)
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    workers = [context.Process(target=_client_threads, args=(client, args, ready, out, share)) for share in shares]
    for worker in workers:
        worker.start()
    results = [out.get() for _ in range(clients)]
    for worker in workers:
        worker.join()
    return results


def _client_threads(client: Any, args: tuple, ready: Any, out: Any, count: int) -> None:
    threads = [threading.Thread(target=client, args=(*args, ready, out)) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def bench_raw(rows: list[tuple[str, str, str]], clients: int, seconds: float, *, processes: int) -> float:
    accounts = [account_id for _, account_id, _ in rows]
    results = run_clients(_raw_client, (accounts, seconds), clients, processes)
    return sum(done for done, _ in results) / seconds


# --- (b) service layer -----------------------------------------------------------------


def _service_client(rows: list[tuple[str, str, str]], users: dict, seconds: float, ready: Any, out: Any) -> None:
    """One client (a thread): transfer_create in a loop for `seconds`, after one warm-up call."""
    from django.db import connections

    from bankcore.api.exceptions import BankError
    from transactions.services.transfers import transfer_create

    rng = random.Random()
    done = refused = 0
    # Warm up before the clock starts, as the raw SQL clients connect before theirs: the first
    # transfer of a client pays for its database and broker connections and lazy imports.
    source, destination = rng.sample(rows, 2)
    transfer_create(
        user=users[source[0]],
        source_account_id=uuid.UUID(source[1]),
        destination_iban=destination[2],
        amount=1,
        currency="EUR",
    )
    ready.wait()  # every client warm, then all start together
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        source, destination = rng.sample(rows, 2)
        try:
            transfer_create(
                user=users[source[0]],
                source_account_id=uuid.UUID(source[1]),
                destination_iban=destination[2],
                amount=rng.randint(1, 100),
                currency="EUR",
            )
            done += 1
        except BankError:
            refused += 1
    connections.close_all()  # this thread's connection
    out.put((done, refused))


def bench_service(rows: list[tuple[str, str, str]], clients: int, seconds: float, *, processes: int) -> float:
    """`clients` concurrent callers of transfer_create, in the same layout as the raw SQL clients."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    # Loaded once, before the clients start (and inherited by forked processes): 16 clients
    # each loading 10,000 users would still be busy when the others start their clocks.
    users = {str(u.pk): u for u in get_user_model().objects.filter(pk__in={row[0] for row in rows})}
    connections.close_all()  # a forked child must not inherit (and later close) our socket
    results = run_clients(_service_client, (rows, users, seconds), clients, processes)
    return sum(done for done, _ in results) / seconds


# --- (c) HTTP ---------------------------------------------------------------------------


def _tokens(rows: list[tuple[str, str, str]]) -> dict[str, str]:
    from django.contrib.auth import get_user_model

    from accounts.models import LoginSession
    from accounts.services.sessions import session_start

    tokens = {}
    for user in get_user_model().objects.filter(pk__in={row[0] for row in rows}):
        _, pair = session_start(user=user, method=LoginSession.Method.PASSWORD, device=None)
        tokens[str(user.pk)] = pair["access"]
    return tokens


def _http_worker(
    port: int,
    sources: list[tuple[str, str, str]],
    destinations: list[tuple[str, str, str]],
    tokens: dict[str, str],
    seconds: float,
    counter: list[tuple[int, int, int]],
    barrier: threading.Barrier,
) -> None:
    rng = random.Random()
    done = refused = errors = 0
    barrier.wait()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        source = rng.choice(sources)
        destination = rng.choice(destinations)
        if destination[1] == source[1]:
            continue
        body = json.dumps(
            {
                "source_account": source[1],
                "destination": destination[2],
                "amount": f"0.{rng.randint(1, 99):02d}",
                "currency": "EUR",
            }
        )
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request(
            "POST",
            "/api/v1/transfers",
            body=body,
            headers={
                "Authorization": f"Bearer {tokens[source[0]]}",
                "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        status = connection.getresponse().status
        connection.close()
        if status == 201:
            done += 1
        elif status < 500:
            refused += 1
        else:
            errors += 1
    counter.append((done, refused, errors))


def bench_http(port: int, rows, sources, tokens, clients: int, seconds: float) -> tuple[float, int, int]:
    counter: list[tuple[int, int, int]] = []
    barrier = threading.Barrier(clients)
    threads = [
        threading.Thread(target=_http_worker, args=(port, sources, rows, tokens, seconds, counter, barrier))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(c[0] for c in counter) / seconds, sum(c[1] for c in counter), sum(c[2] for c in counter)


def settle() -> None:
    """Start a measurement from the same state: statistics fresh, dirty pages written out."""
    conn = psycopg2.connect(BENCH_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
        cur.execute("CHECKPOINT")
    conn.close()


def run_http(sets: dict[str, list[tuple[str, str, str]]], workers: int, seconds: float) -> dict:
    from bankcore.testing import GunicornServer, process_env

    results = {}
    env = process_env(DJANGO_SETTINGS_MODULE="bankcore.settings", BANKCORE_ENV="development", LOG_LEVEL="WARNING")
    with GunicornServer(env=env, workers=workers) as server:
        for set_name, rows in sets.items():
            sources = rows if len(rows) <= 1000 else random.sample(rows, 1000)
            tokens = _tokens(sources)
            # Untimed warm-up, as for the other two: every worker's first request pays for its
            # database and broker connections and lazy imports.
            bench_http(server.port, rows, sources, tokens, workers * 2, 1.0)
            for clients in CONCURRENCY:
                settle()
                rate, refused, errors = bench_http(server.port, rows, sources, tokens, clients, seconds)
                results[("http", set_name, clients)] = rate
                print(
                    f"(c) HTTP      {set_name:16} {clients:2} clients: {rate:8.0f} transfers/s"
                    f"  (refused {refused}, 5xx {errors})",
                    flush=True,
                )
    return results


# --- history ------------------------------------------------------------------------------


def fill_history(account_id: str, contra_id: str, entries: int) -> None:
    """`entries` postings on the account, as balanced transactions with a contra account.

    Bulk-loaded in SQL with triggers off for the load (session_replication_role), then
    balances set to match, so verify_ledger still holds afterwards.
    """
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute("SELECT balance FROM accounts_bankaccount WHERE id = %s FOR UPDATE", [account_id])
        account_balance = cur.fetchone()[0]
        cur.execute("SELECT balance FROM accounts_bankaccount WHERE id = %s FOR UPDATE", [contra_id])
        contra_balance = cur.fetchone()[0]
        cur.execute(
            "CREATE TEMP TABLE bench_txn ON COMMIT DROP AS SELECT n, gen_random_uuid() AS id,"
            " now() - interval '1 second' * (%s - n) AS at FROM generate_series(1, %s) AS n",
            [entries, entries],
        )
        cur.execute(
            "INSERT INTO transactions_transaction (id, kind, status, reference, description, currency, amount,"
            " source_account_id, destination_account_id, created_at, posted_at)"
            " SELECT id, 'transfer', 'posted', '', 'history bench', 'EUR', 1, %s, %s, at, at FROM bench_txn",
            [contra_id, account_id],
        )
        cur.execute(
            "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)"
            " SELECT id, %s, 1, 'EUR', %s + n, at FROM bench_txn ORDER BY n",
            [account_id, account_balance],
        )
        cur.execute(
            "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)"
            " SELECT id, %s, -1, 'EUR', %s - n, at FROM bench_txn ORDER BY n",
            [contra_id, contra_balance],
        )
        cur.execute("UPDATE accounts_bankaccount SET balance = balance + %s WHERE id = %s", [entries, account_id])
        cur.execute("UPDATE accounts_bankaccount SET balance = balance - %s WHERE id = %s", [entries, contra_id])
    with connection.cursor() as cur:
        cur.execute("ANALYZE transactions_entry")


def _history_paths(client_factory, user_id: str, account_id: str) -> tuple[object, str, str, str]:
    from django.contrib.auth import get_user_model

    from accounts.models import LoginSession
    from accounts.services.sessions import session_start
    from bankcore.api.pagination import encode_cursor
    from transactions.models import Entry

    user = get_user_model().objects.get(pk=user_id)
    _, pair = session_start(user=user, method=LoginSession.Method.PASSWORD, device=None)
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    oldest = Entry.objects.filter(account_id=account_id).order_by("created_at", "id")[50]
    cursor = encode_cursor([oldest.created_at.isoformat(), oldest.id])
    first = f"/api/v1/accounts/{account_id}/transactions"
    return client, first, f"{first}?cursor={cursor}", account_id


def time_history_pages(small: tuple[str, str], big: tuple[str, str], runs: int = 300) -> dict[str, float]:
    """Median ms per page (through the API, in-process) and of the page's SQL alone, small vs big.

    Requests alternate small/big so machine load drifts affect both alike.
    """
    from django.db import connection
    from rest_framework.test import APIClient

    from accounts.models import BankAccount
    from transactions.selectors import account_history

    targets = {"small": _history_paths(APIClient, *small), "big": _history_paths(APIClient, *big)}
    samples: dict[str, list[float]] = {f"{size} {page}": [] for size in targets for page in ("first", "deep", "sql")}
    for path_index, page in ((1, "first"), (2, "deep")):
        for size in targets:  # warm up
            targets[size][0].get(targets[size][path_index])
        for _ in range(runs):
            for size, (client, *paths) in targets.items():
                start = time.perf_counter()
                response = client.get(paths[path_index - 1])
                samples[f"{size} {page}"].append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200 and len(response.json()["results"]) == 20
    for size, (_, _, _, account_id) in targets.items():
        account = BankAccount.objects.get(pk=account_id)
        sql, params = account_history(account=account).order_by("-created_at", "-id")[:21].query.sql_with_params()
        with connection.cursor() as cur:
            for _ in range(runs):
                cur.execute(f"EXPLAIN (ANALYZE, TIMING OFF) {sql}", params)
                plan = [row[0] for row in cur.fetchall()]
                samples[f"{size} sql"].append(float(plan[-1].split(":")[1].split("ms")[0]))
    return {name: statistics.median(values) for name, values in samples.items()}


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--history-entries", type=int, default=1_000_000)
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="(a) and (b): spread each point's client threads over this many forked processes, at most"
        " one per client (default: one per CPU, as an app server runs one worker process per core;"
        " 1 runs every client as a thread of this process)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="(a) and (b): alternating rounds per point, each --seconds long; a figure is their mean",
    )
    parser.add_argument(
        "--parts", default="raw,service,http,history", help="comma-separated subset to run (quick iterations)"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    recreate_database()
    setup_django()
    print(f"setting up {WIDE_ACCOUNTS} + {HOT_ACCOUNTS} accounts ...", flush=True)
    wide = create_accounts(WIDE_ACCOUNTS, "wide")
    hot = create_accounts(HOT_ACCOUNTS, "hot")
    sets = {"10,000 accounts": wide, "10 hot accounts": hot}

    settle()
    results: dict[tuple[str, str, int], float] = {}
    runners = {
        "raw": lambda rows, clients: bench_raw(rows, clients, args.seconds, processes=args.processes),
        "service": lambda rows, clients: bench_service(rows, clients, args.seconds, processes=args.processes),
    }
    labels = {"raw": "(a) raw SQL", "service": "(b) service"}
    measured = [part for part in ("raw", "service") if part in parts]
    # (a) and (b) for each point in --rounds alternating rounds (a b, b a, a b, ...), each run
    # after a CHECKPOINT: the host's drift and background work (checkpoints, autovacuum) land
    # on both alike instead of on whichever runs later. A figure is the mean of its rounds.
    for set_name, rows in sets.items():
        for clients in CONCURRENCY:
            layout = f"({clients} clients in {min(args.processes, clients)} process(es))"
            rounds: dict[str, list[float]] = {part: [] for part in measured}
            for round_number in range(args.rounds):
                for part in measured if round_number % 2 == 0 else measured[::-1]:
                    settle()
                    rounds[part].append(runners[part](rows, clients))
            for part in measured:
                rate = statistics.fmean(rounds[part])
                results[(part, set_name, clients)] = rate
                each = " ".join(f"{r:.0f}" for r in rounds[part])
                print(
                    f"{labels[part]:13} {set_name:16} {clients:2} clients: {rate:8.0f} transfers/s  {layout}"
                    f"  rounds: {each}",
                    flush=True,
                )

    if "http" in parts:
        results.update(run_http(sets, args.workers, args.seconds))

    print("\nratios to raw SQL")
    for set_name in sets:
        for clients in CONCURRENCY:
            raw = results.get(("raw", set_name, clients))
            if raw:
                service = results.get(("service", set_name, clients), 0.0) / raw
                http = results.get(("http", set_name, clients), 0.0) / raw
                print(f"  {set_name:16} {clients:2} clients: service/raw {service:6.1%}   http/raw {http:6.1%}")

    if "history" not in parts:
        return

    print(f"\nhistory: filling one account with {args.history_entries:,} entries ...", flush=True)
    small_owner, small_account, _ = wide[0]
    big_owner, big_account, _ = wide[1]
    contra = wide[2][1]
    fill_history(small_account, contra, 1_000)
    fill_history(big_account, contra, args.history_entries)
    settle()  # as autovacuum would have, long before anyone pages through a year of history
    m = time_history_pages((small_owner, small_account), (big_owner, big_account))
    for page in ("first", "deep", "sql"):
        label = {"first": "first page (API)", "deep": "deep page (API)", "sql": "page query (SQL only)"}[page]
        print(
            f"  {label:22} 1,000: {m[f'small {page}']:7.2f} ms   {args.history_entries:,}: {m[f'big {page}']:7.2f} ms"
            f"   ratio {m[f'big {page}'] / m[f'small {page}']:.2f}"
        )

    from transactions.services.verify import ledger_verify

    report = ledger_verify()
    print(f"\nverify_ledger after the bench: {'OK' if report.ok else 'BROKEN'} ({report.transactions:,} transactions)")
    for violation in report.violations[:10]:
        print("  ", violation)


if __name__ == "__main__":
    main()
