"""Settlement throughput: 10,000 pending payments from the cut-off to settled. Prints figures.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bankcore_bench_settle \
    REDIS_URL=redis://127.0.0.1:6379/4 .venv/bin/python bench/settlement.py [--payments 10000]

Setup: 10,000 customers with one funded EUR account each (bulk-loaded in SQL as
bench/transfers.py does), then one payment each, created through the real service
`payment_create` (customer and account locks, limits, the hold, the timeline, limit usage,
the audit chain) from --creators forked processes; that rate is printed too.
Then the gateway simulator (`run_payment_gateway`, its own journal) and ONE real Celery worker
(`bankcore.testing.CeleryWorker`, thread pool, --concurrency) start, and the clock starts when
the cut-off task `run_settlement` is published. Measured:
  - cut-off -> all batched, -> all submitted, -> all settled (seconds),
  - settled payments per second end to end (payments / cut-off-to-all-settled),
  - the worker's peak memory: RSS of the worker's process tree, sampled every 0.1 s (psutil).
Finally verify_ledger runs over everything and the gateway's execution count is compared.

The database named by BENCH_DATABASE_URL is DROPPED and created afresh on every run:
never point it at a database you care about.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from uuid import UUID

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bankcore_bench_settle")
from transfers import create_accounts, recreate_database, setup_django  # noqa: E402 - sets the env first

START_BALANCE = 100_000_000


def _create_payments(rows: list[tuple[str, str, str]], out: multiprocessing.Queue) -> None:
    """In a forked child: one payment per (user, account) row through payment_create."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from transactions.services.payments import Creditor, payment_create

    connection.close()  # the parent's connection is not ours to share
    creditor = Creditor(name="Jeanne Martin", iban="FR1420041010050500013M02606")
    users = {str(u.pk): u for u in get_user_model().objects.filter(pk__in=[r[0] for r in rows])}
    for n, (user_id, account_id, _) in enumerate(rows):
        payment_create(
            user=users[user_id],
            source_account_id=UUID(account_id),
            amount=100 + n % 900,
            currency="EUR",
            creditor=creditor,
            remittance_information=f"bench {n}",
        )
    connection.close()
    out.put(len(rows))


def create_payments(rows: list[tuple[str, str, str]], processes: int) -> float:
    """Every row's payment, from `processes` forked processes; returns payments per second."""
    from django.db import connection

    connection.close()
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    shares = [rows[i::processes] for i in range(processes)]
    started = time.perf_counter()
    children = [context.Process(target=_create_payments, args=(share, out)) for share in shares]
    for child in children:
        child.start()
    made = sum(out.get(timeout=1800) for _ in children)  # a child that died raises queue.Empty
    for child in children:
        child.join()
    return made / (time.perf_counter() - started)


class PeakRSS(threading.Thread):
    """Samples the RSS of a process and its descendants; `peak` in bytes."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self.done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in tree if p.is_running())
            except psutil.Error:
                rss = 0
            self.peak = max(self.peak, rss)
            time.sleep(self.interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--creators", type=int, default=os.cpu_count() or 2, help="processes creating payments")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's threads")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    args = parser.parse_args()

    recreate_database()
    setup_django()
    from django.conf import settings
    from django.db.models import Count

    from bankcore.celery import app
    from bankcore.testing import CeleryWorker, process_env
    from integrations.gateway.testing import GatewaySimulatorProcess
    from transactions.models import Payment, SettlementBatch
    from transactions.services.verify import ledger_verify

    print(f"setting up {args.payments} funded accounts ...", flush=True)
    rows = create_accounts(args.payments, "settle")
    print(f"creating {args.payments} payments through payment_create ({args.creators} processes) ...", flush=True)
    rate = create_payments(rows, args.creators)
    print(f"payment_create: {rate:,.0f} payments/s", flush=True)
    assert Payment.objects.filter(status="pending").count() == args.payments

    with tempfile.TemporaryDirectory() as data_dir, GatewaySimulatorProcess(Path(data_dir)) as gateway:
        env = process_env(
            BANKCORE_ENV="development",
            LOG_LEVEL="WARNING",
            PAYMENT_GATEWAY_URL=gateway.url,
            SETTLEMENT_REPORT_POLL_SECONDS="1",
        )
        app.control.purge()
        worker = CeleryWorker(concurrency=args.concurrency, env=env, log_path=BASE_DIR / "var" / "bench-settle.log")
        worker.start()
        assert worker.process is not None
        sampler = PeakRSS(worker.process.pid)
        sampler.start()
        try:
            started = time.perf_counter()
            app.send_task("transactions.tasks.run_settlement")
            marks: dict[str, float] = {}
            deadline = started + args.timeout
            while time.perf_counter() < deadline:
                counts = dict(Payment.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
                now = time.perf_counter() - started
                if not counts.get("pending") and "batched" not in marks:
                    marks["batched"] = now
                if not counts.get("pending") and not counts.get("batched") and "submitted" not in marks:
                    marks["submitted"] = now
                if counts.get("settled", 0) == args.payments:
                    marks["settled"] = now
                    break
                time.sleep(0.2)
            else:
                raise SystemExit(f"not all settled within {args.timeout}s: {counts}")
        finally:
            sampler.done.set()
            sampler.join()
            worker.stop()
        state = gateway.state()
    batches = SettlementBatch.objects.count()
    settled = marks["settled"]
    print()
    most = settings.SETTLEMENT_BATCH_MAX
    print(f"payments                       {args.payments:>10,}   in {batches} batches of <= {most}")
    print(f"cut-off -> all batched         {marks['batched']:>10.1f} s")
    print(f"cut-off -> all submitted       {marks['submitted']:>10.1f} s")
    print(f"cut-off -> all settled         {settled:>10.1f} s")
    print(f"settled end to end             {args.payments / settled:>10,.0f} payments/s")
    print(f"worker peak RSS (tree)         {sampler.peak / 2**20:>10.0f} MiB   ({args.concurrency} threads)")
    print(f"gateway executed               {state['transfers_executed']:>10,}   in {state['messages']} messages")
    report = ledger_verify()
    print(f"verify_ledger                  {'OK' if report.ok else 'BROKEN'} ({report.transactions:,} transactions)")
    if not report.ok or state["transfers_executed"] != args.payments:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
