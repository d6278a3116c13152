"""What the simulators of other systems (payment gateway, legacy core) share: their own
persistent store, and running one as a real subprocess for tests, demos and benchmarks.

A simulator stands in for another bank's system, so it keeps its state outside bankcore's
database: an append-only journal of JSON lines in its data directory, replayed at start.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, BinaryIO, Self

import requests

JOURNAL_NAME = "journal.jsonl"
BASE_DIR = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)


class Journal:
    """Append-only JSON lines, one fsync per record; the only state that survives a restart.

    One simulator per data directory (an exclusive lock on the journal file)."""

    def __init__(self, data_dir: Path, *, owner: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / JOURNAL_NAME
        self._file: BinaryIO = self.path.open("ab")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise RuntimeError(f"another {owner} is using {data_dir}") from None

    def records(self) -> list[dict[str, Any]]:
        records = []
        with self.path.open("rb") as journal:
            for number, line in enumerate(journal, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError:
                    # A torn last line (crash mid-write) was never answered: skip it.
                    logger.warning("journal line %s unreadable, skipped", number)
        return records

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SimulatorProcess(ABC):
    """A simulator's `manage.py` command as a subprocess with its journal in `data_dir`; ready
    when `health_url` answers 200. stop() and start() again on the same data dir and ports is a
    restart of the same simulated system. Subclasses give `name`, `argv()` and `health_url`."""

    name = "simulator"

    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.env = env or {**os.environ, "DJANGO_SETTINGS_MODULE": "bankcore.settings", "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "simulator.log"

    @abstractmethod
    def argv(self) -> list[str]:
        """The command and its arguments after `manage.py`."""

    @property
    @abstractmethod
    def health_url(self) -> str:
        """A URL that answers 200 once the simulator serves."""

    def start(self, timeout: float = 30) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and command
                [sys.executable, "manage.py", *self.argv()],
                cwd=BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            try:
                if requests.get(self.health_url, timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer in {timeout}s; see {self.log_path}")

    def wait_exit(self, timeout: float = 10) -> int:
        """Wait for the process to end by itself (e.g. a crash switch); its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
