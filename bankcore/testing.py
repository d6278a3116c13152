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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def database_url_of_current_connection() -> str:
    """The URL of the database the tests use (the test database once pytest-django made it)."""
    s = connection.settings_dict
    if "sqlite" in s["ENGINE"]:
        return f"sqlite:///{s['NAME']}"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


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
