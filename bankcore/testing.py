"""Helpers for tests that need real processes: a Celery worker, a gunicorn server.

Kept importable (not only in conftest.py) so every app's tests start them the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def database_url_of_current_connection() -> str:
    """The URL of the database the tests use (the test database once pytest-django made it)."""
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


# --- the two database roles (bankcore/db/roles.py) -------------------------------------
# The suite creates and migrates the test database as the owner (DATABASE_URL's user), then
# runs as the runtime role `grant_app_role` set up, like production; child processes inherit it.


def database_owner() -> str:
    """The role that owns the test database's tables (DATABASE_URL's user)."""
    from django.conf import settings

    return settings.DATABASE_OWNER


def database_app_role() -> str:
    """The runtime login role the suite runs as (DATABASE_APP_ROLE, default bankcore_app)."""
    from django.conf import settings

    return settings.DATABASE_APP_ROLE


def use_database_role(user: str) -> None:
    """Point the default connection at `user` from its next query on (closes the current one)."""
    from django.conf import settings
    from django.db import connections

    connection.close()
    connection.settings_dict["USER"] = user
    settings.DATABASES[connection.alias]["USER"] = user
    # Aliases that are second connections to the same database (test mirrors of default, e.g.
    # the legacy request journal) log in as the same role.
    for alias in connections:
        other = connections[alias]
        if alias != connection.alias and other.settings_dict.get("TEST", {}).get("MIRROR") == connection.alias:
            other.close()
            other.settings_dict["USER"] = user


def setup_app_role() -> None:
    """As the owner: create the runtime login role if missing (roles are cluster-wide; local trust
    auth, no password), grant it what the app needs on the test database, then switch to it."""
    from django.core.management import call_command

    from bankcore.db.roles import quote_ident

    role = database_app_role()
    use_database_role(database_owner())
    with connection.cursor() as cursor:
        # Parallel runs on one cluster may create it at the same moment.
        cursor.execute(
            f"DO $$ BEGIN CREATE ROLE {quote_ident(role)} LOGIN; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
    call_command("grant_app_role", role, stdout=open(os.devnull, "w"))  # noqa: SIM115 - closed at exit
    use_database_role(role)


@contextmanager
def connected_as_owner(*, triggers: bool = True) -> Iterator[None]:
    """Run the block on the default connection logged in as the owner, then return to the
    runtime role. With triggers=False the owner (a superuser in tests) also switches every
    trigger off (replica mode). Commits are real: for transactional tests only."""
    use_database_role(database_owner())
    try:
        if not triggers:
            with connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = replica")
        yield
    finally:
        use_database_role(database_app_role())


def flush_as_owner_between_tests() -> None:
    """Django empties the database after each transactional test with TRUNCATE, which the runtime
    role may not run and the ledger and audit tables refuse by trigger: flush as the owner, in
    replica mode (no triggers)."""
    from django.test import TransactionTestCase

    flush = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]
    if getattr(flush, "as_owner", False):
        return

    def _fixture_teardown(self: TransactionTestCase) -> None:
        with connected_as_owner(triggers=False):
            flush(self)

    _fixture_teardown.as_owner = True  # type: ignore[attr-defined]
    TransactionTestCase._fixture_teardown = _fixture_teardown  # type: ignore[attr-defined]


@contextmanager
def owner_cursor() -> Iterator[Any]:
    """A cursor on a separate, autocommit connection to the test database as the owner: for tests
    that use the owner's powers on purpose (what an attacker with the owner's password could do).
    It sees committed rows only, so use it from transactional tests."""
    from django.db import connections

    wrapper = connections[connection.alias]
    owner = type(wrapper)({**wrapper.settings_dict, "USER": database_owner()}, alias="owner")
    try:
        with owner.cursor() as cursor:
            yield cursor
    finally:
        owner.close()


def process_env(**overrides: str) -> dict[str, str]:
    """Environment for a child bankcore process pointed at the test database and Redis."""
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "bankcore.settings",
            "BANKCORE_ENV": "test",
            "DATABASE_URL": database_url_of_current_connection(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
            "SECRET_KEY": settings.SECRET_KEY,
            "AUDIT_HMAC_KEY": ",".join(settings.AUDIT_HMAC_KEY),
            "AUDIT_CHECKPOINT_DIR": settings.AUDIT_CHECKPOINT_DIR,
            "AUDIT_CHECKPOINT_S3_BUCKET": settings.AUDIT_CHECKPOINT_S3_BUCKET,
            "AUDIT_CHECKPOINT_S3_PREFIX": settings.AUDIT_CHECKPOINT_S3_PREFIX,
            "AUDIT_CHECKPOINT_S3_ENDPOINT_URL": settings.AUDIT_CHECKPOINT_S3_ENDPOINT_URL,
            "AUDIT_CHECKPOINT_S3_REGION": settings.AUDIT_CHECKPOINT_S3_REGION,
            "AUDIT_CHECKPOINT_S3_ACCESS_KEY_ID": settings.AUDIT_CHECKPOINT_S3_ACCESS_KEY_ID,
            "AUDIT_CHECKPOINT_S3_SECRET_ACCESS_KEY": settings.AUDIT_CHECKPOINT_S3_SECRET_ACCESS_KEY,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def admin_request(user: Any, method: str = "get", data: dict[str, str] | None = None) -> Any:
    """A request to the admin as `user`, signed in with their second factor, with a session and
    message storage: what the admin's views expect after the middleware has run."""
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.test import RequestFactory

    request = getattr(RequestFactory(), method)("/admin/", data or {})
    user.is_verified = lambda: True  # what django_otp's middleware sets after the staff TOTP login
    request.user = user
    request.session = {}
    request._messages = FallbackStorage(request)
    return request


def staff_client(user: Any) -> Any:
    """A test client signed in to the admin as `user`, past the TOTP step (a confirmed staff device)."""
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="admin", confirmed=True)
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Run `code` in a fresh bankcore Python process on the test database (`process_env`),
    with `args` as sys.argv[1:]; returns the finished process (output captured)."""
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code, *args], cwd=BASE_DIR, env=process_env(), capture_output=True, timeout=timeout
    )


class CeleryWorker:
    """A real `celery worker` subprocess consuming every bankcore queue."""

    def __init__(
        self,
        queues: Iterable[str] = ("default", "settlement", "notifications", "maintenance"),
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.queues = list(queues)
        self.concurrency = concurrency
        self.env = env or process_env()
        self.log_path = log_path or BASE_DIR / "var" / f"celery-worker-{os.getpid()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> CeleryWorker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bankcore",
                "worker",
                "-Q",
                ",".join(self.queues),
                "-P",
                "threads",
                "-c",
                str(self.concurrency),
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
                "-n",
                f"test-{os.getpid()}-{time.time_ns()}@%h",
            ],
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from bankcore.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early; see {self.log_path}")
            replies = app.control.ping(timeout=0.5)
            if replies:
                return
        raise RuntimeError(f"celery worker did not answer within {timeout}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the worker and its pool, like a crashed machine."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> CeleryWorker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    """bankcore served by a real gunicorn on a loopback port."""

    def __init__(self, env: dict[str, str] | None = None, workers: int = 2, port: int | None = None) -> None:
        self.env = env or process_env()
        self.workers = workers
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = BASE_DIR / "var" / f"gunicorn-{os.getpid()}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> GunicornServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv
            [
                sys.executable,
                "-m",
                "gunicorn",
                "bankcore.wsgi:application",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                str(self.workers),
                "--graceful-timeout",
                "5",
            ],
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not listen within {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
