"""Legacy import of 1,000,000 records: records per second and peak memory. Not a test: it prints figures.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bankcore_bench \
    REDIS_URL=redis://127.0.0.1:6379/2 .venv/bin/python bench/legacy_import.py [--records 1000000]

Writes a sample export (integrations.legacy.export.write_sample_export, 1-3 accounts per
customer, 0.1 % planted bad lines) to a temporary directory, imports it with
transactions.services.legacy_import (both passes: totals, then the chunked import), and prints
records per second and the process's resident memory: before the import, its high-water mark
sampled during the import (psutil, every 50 ms) and getrusage's lifetime peak. Then runs the
import again (everything skipped) and verify_ledger.

The database named by BENCH_DATABASE_URL is DROPPED and created afresh on every run:
never point it at a database you care about.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bankcore_bench")
os.environ["DATABASE_URL"] = BENCH_URL
os.environ.setdefault("BANKCORE_ENV", "development")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankcore.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import psutil  # noqa: E402
import psycopg2  # noqa: E402

RECORDS_PER_CUSTOMER = 2.55  # the generator's mean: a customer record and 1.55 account records


def recreate_database() -> None:
    parsed = urlparse(BENCH_URL)
    name = parsed.path.lstrip("/")
    admin = psycopg2.connect(BENCH_URL.replace(f"/{name}", "/postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()


class RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=2000)
    args = parser.parse_args()

    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from integrations.legacy.export import write_sample_export
    from transactions.services.legacy_import import legacy_import
    from transactions.services.verify import ledger_verify

    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "legacy.txt"
        customers = round(args.records / RECORDS_PER_CUSTOMER)
        started = time.monotonic()
        truth = write_sample_export(export, customers=customers, bad_lines=args.records // 1000, seed=1)
        size = export.stat().st_size / 1e6
        print(
            f"export: {truth.records:,} records ({truth.customers:,} customers, {truth.accounts:,} accounts, "
            f"{len(truth.bad_lines):,} bad), {size:,.0f} MB, written in {time.monotonic() - started:.1f} s"
        )

        baseline = psutil.Process().memory_info().rss
        sampler = RssSampler()
        sampler.start()
        started = time.monotonic()
        report = legacy_import(path=export, rejects_path=Path(tmp) / "rejects", chunk_size=args.chunk_size)
        seconds = time.monotonic() - started
        sampler.running = False
        sampler.join()
        assert report.totals_ok and report.accounts_created == truth.accounts, report
        print(
            f"import: {truth.records / seconds:,.0f} records/s ({truth.records:,} records in {seconds:.1f} s;"
            f" {report.opening_postings:,} opening postings, {report.rejected:,} rejected)"
        )
        print(
            f"memory: RSS {baseline / 2**20:,.0f} MiB before the import, peak {sampler.peak / 2**20:,.0f} MiB during it"
            f" (+{(sampler.peak - baseline) / 2**20:,.0f} MiB); getrusage peak"
            f" {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
        )

        started = time.monotonic()
        again = legacy_import(path=export, rejects_path=Path(tmp) / "rejects", chunk_size=args.chunk_size)
        seconds = time.monotonic() - started
        print(
            f"re-run: {again.customers_created + again.accounts_created} created, "
            f"{again.customers_skipped + again.accounts_skipped:,} skipped in {seconds:.1f} s"
        )
        ledger = ledger_verify()
        print("verify_ledger:", "OK" if ledger.ok else f"{len(ledger.violations)} violations")


if __name__ == "__main__":
    main()
