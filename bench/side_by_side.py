"""Side by side, in one run on one PostgreSQL (issue 18): the database's limit, a naive view, bankcore.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bankcore_bench_sbs \
    REDIS_URL=redis://127.0.0.1:6379/2 .venv/bin/python bench/side_by_side.py \
        [--seconds 10] [--rounds 4] [--connections 16] [--workers 5] [--accounts 50] [--profile DIR]

  (a) pgbench: the bare transfer statements as a pgbench script (`-M prepared`, C client): BEGIN;
      lock both accounts in id order (SELECT ... FOR UPDATE); two balance UPDATEs; the journal row;
      the two entries (one INSERT); COMMIT - on the real tables, with their triggers and the deferred
      balance check. The database's limit: the baseline every figure is reported against.
  (b) naive: a first-draft DRF + ORM transfer view (bench/naive_app: select_for_update, two saves,
      the journal row and two entries; no auth, no idempotency, no limits, no audit, no alerts),
      over HTTP through the same gunicorn and middleware as (c).
  (c) bankcore: POST /api/v1/transfers with real JWT sessions and a fresh Idempotency-Key per request.

(b) and (c) are served by one gunicorn (`--workers` sync workers, bankcore's gunicorn.conf.py) started
with DJANGO_SETTINGS_MODULE=bench.naive_app.settings (bankcore's settings plus the naive URL) and
driven by wrk (`--connections` connections, 2 threads, bench/side_by_side.lua rotating customers and
accounts). (a) uses the same number of connections. Rounds alternate (a b c, c b a, ...), each after
VACUUM ANALYZE + CHECKPOINT; a figure is the mean of its rounds, every round is printed, then the
ratios b/a, c/a, c/b, the CPU each side spent per transfer, and verify_ledger over everything.
`--profile DIR` then runs one more (c) and (b) round each under py-spy (gunicorn workers, on-CPU
samples) and prints where the workers' CPU goes.

`--alerts` (after the rounds) and `--alerts-only N` (no rounds: N transfers posted in-process, cheaper
and less noisy; `--web-ms` to compare with) measure issue item 3: the CPU one Celery worker spends
draining the transfers' alerts from the outbox and delivering every channel (bench customers have a
phone with a push token; every fifth chose e-mail and SMS too), per transfer. `--alerts-profile DIR`
samples that worker with py-spy (`--gil`: the thread running Python) and prints where it goes.

The database named by BENCH_DATABASE_URL is DROPPED and created afresh on every run.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bankcore_bench_sbs")

import psutil  # noqa: E402

from bench import transfers as base  # noqa: E402 - sets DATABASE_URL from BENCH_DATABASE_URL

PGBENCH = os.environ.get("PGBENCH", "/usr/bin/pgbench")
WRK = os.environ.get("WRK", "/usr/bin/wrk")
LUA = BASE_DIR / "bench" / "side_by_side.lua"
PARTS = {"a": "(a) pgbench", "b": "(b) naive view", "c": "(c) bankcore"}

# A time-ordered uuid (48-bit millisecond prefix, as bankcore's uuid7 ids): journal ids that
# append to the primary key's index instead of landing on random pages.
_UUID7_SQL = (
    "encode(overlay(uuid_send(gen_random_uuid()) PLACING"
    " substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)"
    " FROM 1 FOR 6), 'hex')::uuid"
)


def pgbench_script(rows: list[tuple[str, str, str]]) -> str:
    """The bare transfer as a pgbench script: accounts picked by index from array constants."""
    accounts = "('{" + ",".join(account for _, account, _ in rows) + "}'::uuid[])"
    owners = "('{" + ",".join(owner for owner, _, _ in rows) + "}'::uuid[])"
    src, dst = f"{accounts}[CAST(:s AS int)]", f"{accounts}[CAST(:d AS int)]"
    count = len(rows)
    return "\n".join(
        [
            f"\\set s random(1, {count})",
            f"\\set d 1 + ((:s + random(0, {count - 2})) % {count})",  # never :s
            "\\set amount random(1, 99)",
            "\\set negative -:amount",
            "BEGIN;",
            f"SELECT id, balance FROM accounts_bankaccount WHERE id IN ({src}, {dst}) ORDER BY id FOR UPDATE;",
            f"UPDATE accounts_bankaccount SET balance = balance - :amount WHERE id = {src}"
            " RETURNING balance AS source_balance \\gset",
            f"UPDATE accounts_bankaccount SET balance = balance + :amount WHERE id = {dst}"
            " RETURNING balance AS destination_balance \\gset",
            "INSERT INTO transactions_transaction (id, kind, status, reference, description, currency, amount,"
            " initiated_by_id, source_account_id, destination_account_id, created_at, posted_at)"
            f" VALUES ({_UUID7_SQL}, 'transfer', 'posted', '', '', 'EUR', :amount, {owners}[CAST(:s AS int)],"
            f" {src}, {dst}, now(), now()) RETURNING id AS journal \\gset",
            "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)"
            f" VALUES (:journal, {src}, :negative, 'EUR', :source_balance, clock_timestamp()),"
            f" (:journal, {dst}, :amount, 'EUR', :destination_balance, clock_timestamp());",
            "COMMIT;",
            "",
        ]
    )


# --- CPU accounting -------------------------------------------------------------------------


def _tree_cpu(root: psutil.Process, name: str | None = None) -> float:
    """CPU seconds of `root` and its live descendants (named `name`, if given), plus what its
    exited children used (reaped: in root's children times), so processes that end between two
    readings are still counted."""
    total = 0.0
    try:
        times = root.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    except psutil.Error:
        return 0.0
    for child in root.children(recursive=True):
        try:
            if name is None or child.name() == name:
                times = child.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def postmaster() -> psutil.Process:
    import psycopg2

    conn = psycopg2.connect(base.BENCH_URL)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.close()
    return psutil.Process(psutil.Process(backend).ppid())


_BACKGROUND = ("checkpointer", "background writer", "walwriter", "autovacuum launcher", "logical replication")


class CpuMeter:
    """CPU seconds of PostgreSQL, the gunicorn tree and our client children (pgbench, wrk).

    PostgreSQL: the backends of the bench database and the shared background processes (WAL
    writer, checkpointer, ...), not other databases' backends (other suites on the host). A
    thread polls them every 0.1 s and keeps each process's last reading, so a backend that
    exits (pgbench's, at its end) is counted up to its last poll (undercounts at most 0.1 s).
    """

    def __init__(self, gunicorn_pid: int) -> None:
        self.postgres = postmaster()
        self.gunicorn = psutil.Process(gunicorn_pid)
        self.database = base.BENCH_URL.rsplit("/", 1)[1]
        self.seen: dict[int, float] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while True:
            for child in self.postgres.children():
                try:
                    title = " ".join(child.cmdline())
                    if f" {self.database} " in title or any(name in title for name in _BACKGROUND):
                        times = child.cpu_times()
                        with self.lock:
                            self.seen[child.pid] = times.user + times.system
                except psutil.Error:
                    continue
            time.sleep(0.1)

    def read(self) -> dict[str, float]:
        time.sleep(0.15)  # one poll after the round's last work
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with self.lock:
            postgres = sum(self.seen.values())
        return {
            "postgres": postgres,
            "web": _tree_cpu(self.gunicorn),
            "client": children.ru_utime + children.ru_stime,
        }


# --- the three sides ------------------------------------------------------------------------


def run_pgbench(script: Path, connections: int, seconds: float) -> tuple[float, str]:
    result = subprocess.run(
        [
            PGBENCH,
            "-n",
            "-M",
            "prepared",
            "-c",
            str(connections),
            "-j",
            "2",
            "-T",
            str(int(seconds)),
            "-f",
            str(script),
            base.BENCH_URL,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed:\n{result.stdout}\n{result.stderr}")
    failed = re.search(r"number of failed transactions: (\d+)", result.stdout)
    return float(match.group(1)), f"failed {failed.group(1) if failed else '?'}"


def run_wrk(port: int, mode: str, datafile: Path, connections: int, seconds: float, nonce: str) -> tuple[float, str]:
    result = subprocess.run(
        [
            WRK,
            "-t",
            str(min(2, connections)),
            "-c",
            str(connections),
            "-d",
            f"{int(seconds)}s",
            "--timeout",
            "30s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}",
            "--",
            mode,
            str(datafile),
            nonce,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", result.stdout, re.MULTILINE)
    latency = re.search(r"^LATENCY (\d+) (\d+) (\d+)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None or latency is None:
        raise RuntimeError(f"wrk failed:\n{result.stdout}\n{result.stderr}")
    requests, duration_us, non_2xx, *socket_errors = (int(v) for v in match.groups())
    rate = (requests - non_2xx) / (duration_us / 1e6)
    p50, p99, _ = (int(v) / 1000 for v in latency.groups())
    return rate, f"non-2xx {non_2xx}, socket errors {sum(socket_errors)}, p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def write_tokens(rows: list[tuple[str, str, str]], path: Path) -> None:
    """Fresh JWT sessions (access tokens live 5 minutes) for every customer: one line each."""
    tokens = base._tokens(rows)
    path.write_text("".join(f"{tokens[owner]} {account} {iban}\n" for owner, account, iban in rows))


# --- profile ----------------------------------------------------------------------------------


# Where a request's time in its worker goes, by area: the share of the request's samples (those
# under SyncWorker.handle) with a frame containing the text. Wall-clock samples (py-spy --idle):
# py-spy's idle detection is unreliable on this host (threads blocked in select() or on a lock
# were sampled as running), so the profile is of wall time, at 1 connection by default, where a
# request's wall time is its worker's CPU plus its waits for PostgreSQL and Redis.
AREAS = (
    ("gunicorn: read and parse the request, write the response, close", None),
    ("Django: handler, middleware, URL resolving (all of it)", "WSGIHandler.__call__"),
    ("  connection health check (SELECT 1 per request)", "close_if_health_check_failed"),
    ("  the view (DRF dispatch and everything under it)", "APIView.dispatch"),
    ("    authentication: JWT decode and verify", "JWTAuthentication.get_validated_token"),
    (
        "    authentication: user + login session (live-session cache, a query on a miss)",
        "SessionJWTAuthentication.get_user",
    ),
    # A transfer's key is claimed by the lock statement and answered by the posting's (0 % here
    # since then); these rows count a statement of the idempotency layer's own.
    ("    idempotency: claim in a statement of its own", "_claim (bankcore/idempotency.py)"),
    ("    idempotency: completion in a statement of its own", "_complete (bankcore/idempotency.py)"),
    ("    idempotency: savepoint + release around the view", "BaseDatabaseWrapper._savepoint"),
    ("    input validation (serializer)", "BaseSerializer.is_valid"),
    ("    transfer_create", "transfer_create (transactions/services/transfers.py)"),
    ("      the key's claim, customer + account locks, limits (one SQL call)", "limits_and_accounts_lock"),
    ("      posting + alerts row + audit + the key's answer (one SQL call)", "posting_write"),
    ("        the answer rendered for the key (output serializer)", "carried_answer_call"),
    ("      audit event built in Python", "audit_event (bankcore/audit.py)"),
    ("    output serializer", "Serializer.data"),
    ("    naive view's post()", "NaiveTransfer.post"),
    ("  COMMIT", "BaseDatabaseWrapper._commit"),
    ("every PostgreSQL round trip (cursor execute; its wait included)", "CursorWrapper._execute (django/db/"),
    ("every Redis round trip", "Redis.execute_command"),
    ("Prometheus metrics", "prometheus_client/"),
    ("logging (access log, JSON lines)", "Logger._log"),
)


def _frame(frame: str) -> str:
    """'function (path/to/module.py:123)' -> 'function (module path)' without the line."""
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    function, path = match.groups()
    for marker in ("site-packages/", str(BASE_DIR) + "/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{function} ({path})"


def summarise_profile(collapsed: Path, top: int = 25) -> str:
    """Shares of the requests' wall time in the workers, by area and by frame (py-spy raw output)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";") if not f.startswith("process ")]
        if not any(frame.startswith("SyncWorker.handle ") for frame in frames):
            continue  # not serving a request: waiting for one, the waker thread, the arbiter
        count = int(count_text)
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        for _, text in AREAS:
            if text is not None and any(text in frame for frame in frames):
                areas[text] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples of workers serving a request (wall clock, every 4 ms)", "", "by area:"]
    for label, text in AREAS:
        share = total - areas["WSGIHandler.__call__"] if text is None else areas[text]
        lines.append(f"  {100 * share / total:5.1f}%  {label}")
    generic = ("gunicorn/", "runpy", "django/core/handlers/", "django/utils/deprecation", "Middleware", "_BrowserOnly")
    lines += ["", "inclusive (frame and everything it calls; request plumbing left out):"]
    shown = [(f, n) for f, n in inclusive.most_common() if not any(g in f for g in generic)][:top]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in shown]
    lines += ["", "self (the frame itself):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def _backend_pids() -> list[int]:
    import psycopg2

    conn = psycopg2.connect(base.BENCH_URL)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
        )
        pids = [row[0] for row in cur.fetchall()]
    conn.close()
    return pids


def profile_round(server_pid: int, port: int, mode: str, datafile: Path, args: argparse.Namespace, out: Path) -> str:
    """One round of `mode` under py-spy (the gunicorn workers) and perf (their PostgreSQL backends)."""
    py_spy = shutil_which("py-spy")
    collapsed = out / f"{mode}.txt"
    recorder = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(server_pid),
            "--subprocesses",
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(collapsed),
            "--duration",
            str(int(args.seconds)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    perf_data = out / f"{mode}-postgres.perf"
    perf = subprocess.Popen(
        [
            "perf",
            "record",
            "-F",
            "999",
            "-o",
            str(perf_data),
            "-p",
            ",".join(map(str, _backend_pids())),
            "--",
            "sleep",
            str(int(args.seconds)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attached to every worker
    rate, note = run_wrk(port, mode, datafile, args.profile_connections, args.seconds - 1, f"p{time.time_ns()}")
    recorder.wait(60)
    perf.wait(60)
    print(f"{mode} under py-spy, {args.profile_connections} connection(s): {rate:.0f} transfers/s ({note})", flush=True)
    report = subprocess.run(
        ["perf", "report", "-i", str(perf_data), "--stdio", "--sort", "dso,symbol", "--percent-limit", "0.7"],
        capture_output=True,
        text=True,
        check=False,
    )
    postgres = "\n".join(line for line in report.stdout.splitlines() if line.strip() and not line.startswith("#"))
    (out / f"{mode}-postgres.txt").write_text(report.stdout)
    return summarise_profile(collapsed) + "\n\nPostgreSQL backends (perf, self time by symbol):\n" + postgres


def shutil_which(name: str) -> str:
    import shutil

    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        raise RuntimeError(f"{name} not found: .venv/bin/pip install py-spy")
    return found


# --- alerts (item 3) -------------------------------------------------------------------------


def alert_recipients(rows: list[tuple[str, str, str]]) -> None:
    """Give the bench customers what real ones have, so every alert is delivered, not dead-lettered:
    a phone with a push token and a phone number; every fifth customer also chose e-mail and SMS for
    transfer alerts (three channels, one text each). Through the services, as the app would."""
    from django.contrib.auth import get_user_model

    from accounts.models import Device
    from notifications.services import preferences_update

    users = get_user_model().objects.in_bulk([user_id for user_id, _, _ in rows])
    for n, (user_id, _, _) in enumerate(rows):
        user = users[uuid.UUID(user_id)]
        user.phone = f"+4915100{n:06d}"
        user.save(update_fields=["phone"])
        Device.objects.create(
            user=user,
            name="Bench phone",
            platform="android",
            app_version="1.0",
            public_key="-",
            push_token=f"bench-push-{n}",
        )
        if n % 5 == 0:
            both = {"email": True, "sms": True}
            preferences_update(user=user, changes={"transfer_sent": both, "transfer_received": both})


def post_transfers(rows: list[tuple[str, str, str]], count: int) -> None:
    """`count` transfers through transfer_create in this process (not measured): their alerts wait in
    the outbox for the measured drain, exactly as the HTTP rounds leave them."""
    import random

    from django.contrib.auth import get_user_model

    from transactions.services.transfers import transfer_create

    users = get_user_model().objects.in_bulk([user_id for user_id, _, _ in rows])
    rng = random.Random(18)
    for _ in range(count):
        source, destination = rng.sample(rows, 2)
        transfer_create(
            user=users[uuid.UUID(source[0])],
            source_account_id=uuid.UUID(source[1]),
            destination_iban=destination[2],
            amount=rng.randint(1, 99),
            currency="EUR",
        )


def measure_alerts(
    env: dict[str, str], web_ms: float | None, profile: Path | None = None, timeout: float = 900
) -> None:
    """CPU seconds one Celery worker spends draining the alerts waiting in the outbox - rendering them,
    recording the inbox and delivery rows and delivering every channel - per transfer, against the web
    workers' CPU per (c) transfer (`web_ms`, when measured).

    The queues are purged first (the drain tasks the transfers published), the worker is started and
    left idle for 3 s (its start-up is not counted), then one drain is published and the worker's
    process tree is measured until the outbox is empty, no delivery is queued, and the worker has been
    idle for 2 s. With `profile`, py-spy samples the worker meanwhile (on-CPU samples only).
    """
    from django.utils import timezone

    from bankcore.celery import app
    from bankcore.testing import CeleryWorker
    from notifications.models import Delivery
    from transactions.models import LedgerNotice
    from transactions.services.notices import DRAIN_TASK

    queues = ("default", "settlement", "notifications", "maintenance")
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in queues:
            channel.queue_purge(queue)
    pending = LedgerNotice.objects.filter(sent_at=None).count()
    print(f"\nalerts: {pending:,} transfers' alerts in the outbox; one Celery worker (threads, 2) drains them")

    def busy_rows() -> bool:
        queued = Delivery.objects.filter(status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING]).exists()
        return queued or LedgerNotice.objects.filter(sent_at=None).exists()

    with CeleryWorker(queues=queues, concurrency=2, env=env) as worker:
        assert worker.process is not None
        tree = psutil.Process(worker.process.pid)
        time.sleep(3)
        recorder = None
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            recorder = subprocess.Popen(
                [
                    shutil_which("py-spy"),
                    "record",
                    "--pid",
                    str(worker.process.pid),
                    "--rate",
                    "250",
                    "--gil",
                    "--format",
                    "raw",
                    "--output",
                    str(profile / "alerts-worker.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        meter = CpuMeter(worker.process.pid)  # its 'web' reading: the worker's process tree
        before, db_before, start = _tree_cpu(tree), meter.read()["postgres"], time.monotonic()
        drain_started = timezone.now()
        app.send_task(DRAIN_TASK)
        last, idle_since, finished = before, None, start
        while time.monotonic() - start < timeout:
            time.sleep(0.5)
            now = _tree_cpu(tree)
            busy = now - last > 0.02 or busy_rows()
            last = now
            if busy:
                idle_since = None
            elif idle_since is None:
                idle_since, finished = time.monotonic(), time.monotonic()
            elif time.monotonic() - idle_since >= 2:
                break
        spent, db_spent = last - before, meter.read()["postgres"] - db_before
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(60)
        left = LedgerNotice.objects.filter(sent_at=None).count()
    drained = max(pending - left, 1)
    outcomes = collections.Counter(
        Delivery.objects.filter(created_at__gte=drain_started).values_list("channel", "status")
    )
    per_transfer = 1000 * spent / drained
    versus = (
        f"; web workers {web_ms:.3f} ms per transfer: alerts/web = {per_transfer / web_ms:.2f} (target <= 0.5)"
        if web_ms
        else ""
    )
    print(
        f"  drained {pending - left:,} in {finished - start:.1f} s ({left} left); worker CPU {spent:.1f} s ="
        f" {per_transfer:.3f} ms per transfer's alerts{versus}"
    )
    print(f"  PostgreSQL (bench backends + background) meanwhile: {1000 * db_spent / drained:.3f} ms per transfer")
    print(
        "  deliveries: " + ", ".join(f"{channel} {status} {n:,}" for (channel, status), n in sorted(outcomes.items()))
    )
    if profile is not None:
        summary = summarise_worker_profile(profile / "alerts-worker.txt")
        (profile / "alerts-worker-summary.txt").write_text(summary + "\n")
        print(f"\nprofile of the worker ({profile / 'alerts-worker.txt'}):\n{summary}")


# Where the worker's CPU goes while it drains, by area: the share of its on-CPU samples with a frame
# containing the text (a sample counts once per area; areas nest).
WORKER_AREAS = (
    ("ledger notice drain (outbox rows -> inbox + delivery rows)", "notices_drain"),
    ("  rendering the texts (templates)", "render_event"),
    ("  inbox + delivery rows built and inserted (ORM)", "QuerySet.bulk_create"),
    ("delivery tasks (claim, provider, outcome)", "deliveries_send"),
    ("  providers (push / SMS / e-mail out)", "providers.py"),
    ("every PostgreSQL round trip (cursor execute)", "CursorWrapper._execute (django/db/"),
    ("Prometheus (per-query and per-delivery metrics)", "prometheus_client/"),
    ("Celery outside the tasks: receiving, acking, publishing", None),
)
_TASKS = ("notices_drain", "deliveries_send", "delivery_send (")


def summarise_worker_profile(collapsed: Path, top: int = 25) -> str:
    """Shares of the Celery worker's on-CPU samples, by area and by frame (py-spy raw output)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        count = int(count_text)
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1] if frames else "?"] += count
        for _, text in WORKER_AREAS:
            if text is not None and any(text in frame for frame in frames):
                areas[text] += count
        if not any(task in frame for frame in frames for task in _TASKS):
            areas["outside"] += count
    if not total:
        return "no samples"
    lines = [f"{total} on-CPU samples of the worker (every 4 ms)", "", "by area:"]
    lines += [f"  {100 * areas[text or 'outside'] / total:5.1f}%  {label}" for label, text in WORKER_AREAS]
    generic = ("threading.py", "runpy", "concurrent/futures", "<module>", "celery/", "kombu/", "click/")
    lines += ["", "inclusive (frame and everything it calls; worker plumbing left out):"]
    shown = [(f, n) for f, n in inclusive.most_common() if not any(g in f for g in generic)][:top]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in shown]
    lines += ["", "self (the frame itself):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each round of each side")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (a b c, c b a, ...)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections of each client")
    parser.add_argument("--workers", type=int, default=5, help="gunicorn sync workers for (b) and (c)")
    parser.add_argument("--accounts", type=int, default=50, help="customers, one funded account each")
    parser.add_argument("--parts", default="a,b,c", help="comma-separated subset of a,b,c")
    parser.add_argument(
        "--profile",
        type=Path,
        help="then profile one (c) and one (b) round into DIR: py-spy on the workers, perf on their backends",
    )
    parser.add_argument(
        "--alerts",
        action="store_true",
        help="at the end, measure a Celery worker's CPU per transfer's alerts (the outbox the (c) rounds left)",
    )
    parser.add_argument(
        "--alerts-only",
        type=int,
        default=0,
        metavar="N",
        help="measure only the alerts: post N transfers in this process (not measured), then the worker's"
        " CPU per transfer's alerts as --alerts does (no rounds; cheaper and less noisy)",
    )
    parser.add_argument("--web-ms", type=float, help="with --alerts-only: web-worker CPU per transfer to compare with")
    parser.add_argument("--alerts-profile", type=Path, help="with --alerts/--alerts-only: py-spy the draining worker")
    parser.add_argument(
        "--profile-connections",
        type=int,
        default=1,
        help="wrk connections of the profiled rounds: py-spy counts a runnable thread as on CPU, so on an"
        " oversubscribed host (16 connections on 2 cores) waits for a core would read as work",
    )
    args = parser.parse_args()
    parts = [part for part in "abc" if part in args.parts.split(",")]

    base.recreate_database()
    base.setup_django()
    rows = base.create_accounts(args.accounts, "sbs")
    if args.alerts or args.alerts_only:
        alert_recipients(rows)
    work = Path(tempfile.mkdtemp(prefix="side-by-side-"))
    try:
        if args.alerts_only:
            print(f"{args.accounts} funded accounts; posting {args.alerts_only:,} transfers in-process", flush=True)
            post_transfers(rows, args.alerts_only)
            measure_alerts(server_env(work), args.web_ms, args.alerts_profile)
            return
        print(f"{args.accounts} funded accounts, {args.connections} connections, {args.workers} workers", flush=True)
        run(args, parts, rows, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def server_env(work: Path) -> dict[str, str]:
    """The environment of bench/naive_app's gunicorn and of the alerts' Celery worker (file providers
    writing under `work`)."""
    from bankcore.testing import process_env

    return process_env(
        DJANGO_SETTINGS_MODULE="bench.naive_app.settings",
        BANKCORE_ENV="development",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(BASE_DIR),
        NOTIFICATIONS_OUTBOX_DIR=str(work / "outbox"),
    )


def run(args: argparse.Namespace, parts: list[str], rows: list[tuple[str, str, str]], work: Path) -> None:
    from bankcore.testing import GunicornServer

    script = work / "transfer.sql"
    script.write_text(pgbench_script(rows))
    tokens = work / "customers.txt"
    env = server_env(work)
    rates: dict[str, list[float]] = {part: [] for part in parts}
    cpu: dict[str, dict[str, float]] = {part: collections.defaultdict(float) for part in parts}
    done: dict[str, float] = collections.defaultdict(float)
    with GunicornServer(env=env, workers=args.workers) as server:
        assert server.process is not None
        meter = CpuMeter(server.process.pid)
        write_tokens(rows, tokens)
        for mode in ("naive", "bankcore"):  # untimed warm-up: connections, lazy imports
            run_wrk(server.port, mode, tokens, args.connections, 2, f"warm{time.time_ns()}")
        for round_number in range(args.rounds):
            for part in parts if round_number % 2 == 0 else parts[::-1]:
                if part == "c":
                    write_tokens(rows, tokens)  # access tokens live 5 minutes
                base.settle()
                before = meter.read()
                if part == "a":
                    rate, note = run_pgbench(script, args.connections, args.seconds)
                else:
                    mode = "naive" if part == "b" else "bankcore"
                    rate, note = run_wrk(
                        server.port, mode, tokens, args.connections, args.seconds, f"r{round_number}{time.time_ns()}"
                    )
                after = meter.read()
                rates[part].append(rate)
                transfers = rate * args.seconds  # for the CPU per transfer only
                done[part] += transfers
                for key in ("postgres", "web", "client"):
                    cpu[part][key] += after[key] - before[key]
                print(f"round {round_number + 1} {PARTS[part]:15} {rate:8.0f} transfers/s  ({note})", flush=True)

        print("\nfigures (mean of rounds; every round)")
        mean = {part: statistics.fmean(values) for part, values in rates.items()}
        for part in parts:
            each = " ".join(f"{value:.0f}" for value in rates[part])
            print(f"  {PARTS[part]:15} {mean[part]:8.0f} transfers/s   rounds: {each}")
        print("\nratios")
        for top, bottom in (("b", "a"), ("c", "a"), ("c", "b")):
            if top in mean and bottom in mean and mean[bottom]:
                print(f"  {top}/{bottom}  {mean[top] / mean[bottom]:6.3f}  ({PARTS[top]} / {PARTS[bottom]})")
        print(
            "\nCPU per transfer, ms (PostgreSQL: the bench database's backends + background processes;"
            " web: the gunicorn workers; client: pgbench or wrk)"
        )
        for part in parts:
            shares = "  ".join(f"{key} {1000 * cpu[part][key] / max(done[part], 1):6.3f}" for key in cpu[part])
            print(f"  {PARTS[part]:15} {shares}")

        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            write_tokens(rows, tokens)
            for mode in ("bankcore", "naive"):
                summary = profile_round(server.process.pid, server.port, mode, tokens, args, args.profile)
                (args.profile / f"{mode}-summary.txt").write_text(summary + "\n")
                print(f"\nprofile of {mode} ({args.profile / mode}.txt):\n{summary}", flush=True)

    if args.alerts and "c" in parts:
        measure_alerts(env, 1000 * cpu["c"]["web"] / max(done["c"], 1), args.alerts_profile)

    from transactions.services.verify import ledger_verify

    report = ledger_verify()
    print(f"\nverify_ledger: {'OK' if report.ok else 'BROKEN'} ({report.transactions:,} transactions)")
    for violation in report.violations[:10]:
        print("  ", violation)


if __name__ == "__main__":
    main()
