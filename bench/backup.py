"""Backup, restore and the DR drill of a 1,000,000-entry ledger. Not a test: it prints figures.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bankcore_bench_backup \
    REDIS_URL=redis://127.0.0.1:6379/5 .venv/bin/python bench/backup.py [--entries 1000000]

Setup: two funded accounts and `--entries` ledger entries between them (entries/2 balanced
transfers), bulk-loaded in SQL as bench/transfers.py's history does; verify_ledger holds.
Then, each as its own `manage.py` process (the way an operator or the beat task runs it):
  - `backup` to a temporary BACKUP_DIR: seconds, MB/s (database size / seconds, and the
    encrypted dump's size / seconds), and the peak RSS of the backup process (Python: the
    cipher and the store) and of its pg_dump child, sampled every 50 ms (psutil);
  - `restore_backup` into a new empty database: seconds, MB/s, peak RSS;
  - `dr_drill`: its RTO and RPO as it prints them, and the wall time of the whole drill.

The database named by BENCH_DATABASE_URL is DROPPED and created afresh on every run:
never point it at a database you care about.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bankcore_bench_backup")
import psutil  # noqa: E402
import psycopg2  # noqa: E402
from transfers import BENCH_URL, create_accounts, fill_history, recreate_database, setup_django  # noqa: E402


class PeakRss:
    """Peak RSS of a process and, separately, of its descendants by name, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for process in processes:
                try:
                    name = "python" if process.pid == self.pid else process.name()
                    rss = process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.peaks[name] = max(self.peaks.get(name, 0), rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def describe(self) -> str:
        return ", ".join(f"{name} {rss / 2**20:.0f} MB" for name, rss in sorted(self.peaks.items()))


def manage(*args: str, env: dict[str, str]) -> tuple[float, str, PeakRss]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with PeakRss(process.pid) as peak:
        output, _ = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{output}")
    return seconds, output, peak


def database_size(url: str) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            return int(cursor.fetchone()[0])
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()

    recreate_database()
    setup_django()
    from django.core.management import call_command

    print(f"loading {args.entries:,} ledger entries ...", flush=True)
    started = time.perf_counter()
    (_, account, _), (_, contra, _) = create_accounts(2, "backup")
    fill_history(account, contra, args.entries // 2)
    call_command("verify_ledger", stdout=open(os.devnull, "w"))  # noqa: SIM115
    print(f"  loaded and verified in {time.perf_counter() - started:.1f}s", flush=True)
    size = database_size(BENCH_URL)
    print(f"  database size {size / 2**20:.0f} MB", flush=True)

    name = BENCH_URL.rsplit("/", 1)[1]
    restore_url = BENCH_URL.rsplit("/", 1)[0] + f"/{name}_restore"
    with tempfile.TemporaryDirectory(prefix="bankcore-bench-backup-") as backup_dir:
        env = {
            **os.environ,
            "DATABASE_URL": BENCH_URL,
            "BACKUP_DIR": backup_dir,
            "DR_DRILL_DATABASE_URL": BENCH_URL,
            "LOG_LEVEL": "WARNING",
        }
        seconds, output, peak = manage("backup", env=env)
        (dump,) = [path for path in Path(backup_dir).iterdir() if path.suffix == ".bcbk"]
        dump_size = dump.stat().st_size
        backup_id = dump.name.removesuffix(".bcbk")
        facts = re.search(r"counts and checksums: ([\d.]+)s", output)
        print(f"\nbackup {backup_id}: {seconds:.1f}s (process start to manifest written)")
        print(f"  of which row counts and checksums in the snapshot: {facts.group(1) if facts else '?'}s")
        print(
            f"  {size / 2**20 / seconds:.1f} MB/s of database, {dump_size / 2**20 / seconds:.1f} MB/s of encrypted dump"
        )
        print(f"  encrypted dump {dump_size / 2**20:.1f} MB ({dump_size / size:.0%} of the database)")
        print(f"  peak RSS: {peak.describe()}", flush=True)

        admin = psycopg2.connect(BENCH_URL)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}_restore" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}_restore"')
        try:
            seconds, output, peak = manage("restore_backup", backup_id, "--database-url", restore_url, env=env)
            print(f"\nrestore into an empty database: {seconds:.1f}s (process start to verified)")
            print(f"  {size / 2**20 / seconds:.1f} MB/s of database, {dump_size / 2**20 / seconds:.1f} MB/s of dump")
            print(f"  peak RSS: {peak.describe()}", flush=True)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}_restore" WITH (FORCE)')
            admin.close()

        seconds, output, peak = manage("dr_drill", env=env)
        rto = re.search(r"RTO \(restore\): ([\d.]+) s", output)
        rpo = re.search(r"RPO \(backup age\): (\d+) s", output)
        rto_text, rpo_text = rto.group(1) if rto else "?", rpo.group(1) if rpo else "?"
        print(f"\ndr_drill: RTO {rto_text} s, RPO {rpo_text} s, whole drill {seconds:.1f}s")
        print(f"  peak RSS: {peak.describe()}")


if __name__ == "__main__":
    main()
