"""Benchmark: legacy core connector round trips per second.

Starts the legacy core simulator (`manage.py run_legacy_core`) as its own process on free
loopback ports with a fresh journal in a temporary directory, then measures, at 1, 4 and 16
concurrent callers (threads of this process sharing one LegacyCoreClient, pool size = callers
unless --pool-size), for --seconds each:

- balance inquiries (0100/0110), and
- debits (0200/0210, each journalled and fsync'd by the core before it answers),

printing round trips per second and the 50th/99th percentile latency. Every answer is checked
(approved, its caller's STAN and RRN); the final balances are checked against the debits.

    .venv/bin/python bench/legacy_connector.py [--seconds 5] [--pool-size N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankcore.settings")
os.environ.setdefault("BANKCORE_ENV", "test")


def run_point(client, core, kind: str, callers: int, seconds: float) -> tuple[float, float, float]:
    accounts = [core.create_account(holder_name="Bench", balance=10**11)["account_number"] for _ in range(callers)]
    latencies: list[list[float]] = [[] for _ in range(callers)]
    debited = [0] * callers
    start = threading.Barrier(callers + 1)
    stop_at = [0.0]

    def caller(i: int) -> None:
        account = accounts[i]
        # one untimed call first (connection set up)
        client.balance(account)
        start.wait()
        while time.monotonic() < stop_at[0]:
            began = time.monotonic()
            if kind == "balance":
                balance = client.balance(account)
                assert balance.account_number == account
            else:
                original = client.prepare_debit(account, 1, "EUR")
                result = client.send(original)
                assert result.approved and (result.stan, result.rrn) == (original.stan, original.rrn)
                debited[i] += 1
            latencies[i].append(time.monotonic() - began)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.monotonic() + seconds + 0.05
    began = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    for i, account in enumerate(accounts):
        assert core.balance(account) == 10**11 - debited[i], "balances do not add up"
    flat = sorted(x for per in latencies for x in per)
    return len(flat) / elapsed, statistics.median(flat) * 1000, flat[int(len(flat) * 0.99) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pool-size", type=int, default=0, help="connections (default: one per caller)")
    args = parser.parse_args()

    import django

    django.setup()
    from integrations.legacy.client import LegacyCoreClient
    from integrations.legacy.testing import LegacyCoreProcess

    with tempfile.TemporaryDirectory() as tmp, LegacyCoreProcess(Path(tmp)) as core:
        rows = []
        for callers in (1, 4, 16):
            client = LegacyCoreClient(core.address, timeout=10, pool_size=args.pool_size or callers)
            try:
                for kind in ("balance", "debit"):
                    rate, p50, p99 = run_point(client, core, kind, callers, args.seconds)
                    rows.append((kind, callers, rate, p50, p99))
                    line = f"{kind:8} {callers:3} callers  {rate:8.0f}/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
                    print(line, flush=True)
            finally:
                client.close()
        print()
        print(f"{'round trips/s':16}{'1':>8}{'4':>8}{'16':>8}")
        for kind in ("balance", "debit"):
            figures = [f"{rate:8.0f}" for k, _, rate, _, _ in rows if k == kind]
            print(f"{kind:16}{''.join(figures)}")
        print(f"simulator state: {core.state()['by_mti']}")


if __name__ == "__main__":
    main()
