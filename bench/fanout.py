"""Benchmark: fan-out of one incident to 100,000 customers.

Measures what the Celery fan-out task does, run in its own process: write one delivery
row per customer per channel and publish the delivery tasks to the real broker. Prints
messages enqueued per second and the fan-out process's peak memory, sampled along the
way to show it stays flat (one batch in memory, never all customers).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bankcore_notify \\
    REDIS_URL=redis://127.0.0.1:6379/3 .venv/bin/python bench/fanout.py [--customers 100000]

Creates the customers once (reused by later runs), uses a private queue that no worker
consumes, and removes the incident, its rows and the queued tasks afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankcore.settings")
os.environ.setdefault("BANKCORE_ENV", "test")


def _setup(queue: str) -> None:
    os.environ["NOTIFICATIONS_QUEUE"] = queue
    import django

    django.setup()


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def ensure_customers(n: int) -> None:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    have = User.objects.filter(email__startswith="bench-").count()
    if have >= n:
        return
    print(f"creating {n - have} bench customers ...", flush=True)
    chunk = 5000
    for start in range(have, n, chunk):
        User.objects.bulk_create(
            [
                User(email=f"bench-{i:07d}@bench.example", phone=f"+49152{i:08d}", full_name=f"Bench {i}", password="!")
                for i in range(start, min(n, start + chunk))
            ]
        )


def run_fanout(update_id: str, batch_size: int, trace_heap: bool) -> None:
    """The measured part, in a fresh process so its peak memory is its own."""
    from notifications import services
    from notifications.models import IncidentUpdate

    if trace_heap:  # slows Python down several times: a separate run for the heap figure
        tracemalloc.start()
    samples: list[tuple[int, float]] = []
    start = time.perf_counter()
    messages = customers = steps = 0
    while True:
        step = services.incident_fanout_step(update_id=update_id, batch_size=batch_size)
        messages += step.messages
        customers += step.recipients
        steps += 1
        if steps % 20 == 0 or step.done:
            samples.append((customers, rss_mib()))
        if step.done:
            break
    elapsed = time.perf_counter() - start
    peak_heap = tracemalloc.get_traced_memory()[1] if trace_heap else None
    update = IncidentUpdate.objects.get(pk=update_id)
    assert update.recipients_done == customers, "every customer exactly once"
    rss = [mib for _, mib in samples]
    print(f"customers reached:      {customers}")
    print(f"messages enqueued:      {messages} ({len(update.channels)} channels: {', '.join(update.channels)})")
    print(f"elapsed:                {elapsed:.2f} s")
    print(f"messages enqueued/s:    {messages / elapsed:,.0f}")
    print(f"customers/s:            {customers / elapsed:,.0f}")
    if peak_heap is not None:
        print(f"peak Python heap:       {peak_heap / 2**20:.1f} MiB (tracemalloc on: throughput not comparable)")
    print(f"peak RSS of fan-out:    {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    print(
        f"RSS along the way:      {', '.join(f'{c}:{m:.0f}' for c, m in samples[:: max(1, len(samples) // 6)])} "
        f"(customers:MiB) -> spread {max(rss) - min(rss):.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="customers per fan-out step")
    parser.add_argument("--severity", default="major", help="minor: e-mail; major/critical: e-mail + SMS")
    parser.add_argument("--trace-heap", action="store_true", help="also measure the Python heap (slow)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--queue", default=f"bench-fanout-{os.getpid()}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _setup(args.queue)

    if args.child:
        run_fanout(args.child, args.batch, args.trace_heap)
        return

    from django.conf import settings
    from django.core.management import call_command

    from bankcore.celery import app
    from notifications import services
    from notifications.models import Incident

    db = settings.DATABASES["default"]
    print(f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('NAME')}; broker: {settings.CELERY_BROKER_URL}")
    call_command("migrate", verbosity=0)
    ensure_customers(args.customers)
    incident = services.incident_declare(
        title="Benchmark",
        message="Benchmark incident, not sent to anyone.",
        severity=args.severity,
        services=["payments"],
    )
    update = incident.updates.get()
    print(f"fan-out of incident {incident.pk} to {update.recipients_total} customers, batch {args.batch}", flush=True)
    try:
        subprocess.run(
            [sys.executable, __file__, "--child", str(update.pk), "--batch", str(args.batch), "--queue", args.queue]
            + (["--trace-heap"] if args.trace_heap else []),
            check=True,
            env=os.environ,
        )
    finally:
        with app.connection_for_write() as conn:
            purged = conn.default_channel.queue_purge(args.queue) or 0
        Incident.objects.filter(pk=incident.pk).delete()
        print(f"cleaned up: incident and its rows deleted, {purged} queued tasks purged")


if __name__ == "__main__":
    main()
