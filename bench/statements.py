"""PostgreSQL backend CPU per statement of one transfer request: bankcore against the naive view.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bankcore_bench_sbs \
    REDIS_URL=redis://127.0.0.1:6379/2 .venv/bin/python bench/statements.py [--requests 300] \
        [--sides naive,bankcore,naive,bankcore]

Runs on the database bench/side_by_side.py left behind (its 50 funded customers; run that first).
In one process, through Django's test client (no gunicorn, no network): for each side, `--requests`
transfers between random customers, and around every statement the backend's CPU time read from
/proc/<backend pid>/schedstat (so this must run on the database's host). Prints, per request, the
backend CPU of each statement (BEGIN travels with the first), what is left for COMMIT (deferred
triggers and foreign keys, the WAL flush) and the whole request's. Sides alternate as given.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bankcore_bench_sbs")
os.environ["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.naive_app.settings"
os.environ.setdefault("BANKCORE_ENV", "development")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.models import BankAccount  # noqa: E402
from bench import transfers as base  # noqa: E402


def backend_cpu_ns() -> int:
    with open(f"/proc/{connection.connection.get_backend_pid()}/schedstat") as stat:
        return int(stat.read().split()[0])


def measure(side: str, requests: int, rows: list[tuple[str, str, str]], tokens: dict[str, str]) -> str:
    per_statement: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])  # count, backend ns

    def timed(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        before = backend_cpu_ns()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = per_statement[" ".join(sql.split())[:72]]
            entry[0] += 1
            entry[1] += backend_cpu_ns() - before

    client, total = Client(), 0
    connection.ensure_connection()
    for _ in range(requests):
        source, destination = random.sample(rows, 2)
        cents = random.randint(1, 99)
        before = backend_cpu_ns()
        with connection.execute_wrapper(timed):
            if side == "naive":
                body = {"source": source[1], "destination": destination[1], "amount": cents}
                response = client.post("/api/bench/naive-transfers", json.dumps(body), content_type="application/json")
            else:
                body = {"source_account": source[1], "destination": destination[2], "amount": f"0.{cents:02d}"}
                response = client.post(
                    "/api/v1/transfers",
                    json.dumps({**body, "currency": "EUR"}),
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {tokens[source[0]]}",
                    HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
                )
        if response.status_code != 201:
            raise SystemExit(f"{side}: {response.status_code} {response.content!r}")
        total += backend_cpu_ns() - before
    lines = [f"{side}: backend CPU per request {total / requests / 1000:.0f} us"]
    listed = 0
    for sql, (count, ns) in sorted(per_statement.items(), key=lambda item: -item[1][1]):
        listed += ns
        lines.append(f"  {count / requests:4.1f}x {ns / requests / 1000:6.0f} us  {sql}")
    lines.append(f"         {(total - listed) / requests / 1000:6.0f} us  COMMIT (deferred checks, WAL flush)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="transfers per side")
    parser.add_argument("--sides", default="naive,bankcore,naive,bankcore", help="sides in order (naive, bankcore)")
    args = parser.parse_args()
    rows = [(str(a.owner_id), str(a.pk), a.iban) for a in BankAccount.objects.filter(kind="current")]
    if len(rows) < 2:
        raise SystemExit("No bench customers: run bench/side_by_side.py on this database first.")
    tokens = base._tokens(rows)
    started = time.strftime("%H:%M:%S")
    print(f"{len(rows)} customers, {args.requests} requests per side ({started})")
    for side in args.sides.split(","):
        print(measure(side.strip(), args.requests, rows, tokens))


if __name__ == "__main__":
    main()
