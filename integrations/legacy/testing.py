"""The legacy core simulator as a real subprocess on loopback ports, for any app's tests
(the app-facing side starts it the same way)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LegacyCoreProcess:
    """`manage.py run_legacy_core` on `port` (ISO 8583) and `control_port` (HTTP), with its
    journal in `data_dir`. stop() and start() again on the same data dir and ports is a restart
    of the same core."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        control_port: int | None = None,
        seed_accounts: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or _free_port()
        self.control_port = control_port or _free_port()
        self.seed_accounts = seed_accounts
        self.env = env or {**os.environ, "DJANGO_SETTINGS_MODULE": "bankcore.settings", "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "simulator.log"

    @property
    def address(self) -> str:
        """ "host:port" of the ISO 8583 listener: LegacyCoreClient's address."""
        return f"127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def start(self, timeout: float = 30) -> LegacyCoreProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "manage.py",
            "run_legacy_core",
            "--port",
            str(self.port),
            "--control-port",
            str(self.control_port),
            "--data-dir",
            str(self.data_dir),
            "--seed-accounts",
            str(self.seed_accounts),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv
                argv, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"legacy core simulator exited early; see {self.log_path}")
            try:
                if requests.get(f"{self.control_url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"legacy core simulator did not answer in {timeout}s; see {self.log_path}")

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

    def __enter__(self) -> LegacyCoreProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- control port -------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = requests.request(method, f"{self.control_url}{path}", json=body, timeout=5)
        response.raise_for_status()
        return response.json()

    def faults(self, **switches: Any) -> dict[str, Any]:
        """Set fault switches (merged): latency_seconds, slow_next, slow_seconds,
        approve_after_timeout, drop_next, garbage_next, down."""
        return dict(self._call("POST", "/faults", switches))

    def reset_faults(self) -> None:
        self._call("POST", "/reset", {})

    def state(self) -> dict[str, Any]:
        return dict(self._call("GET", "/state"))

    def create_account(self, **fields: Any) -> dict[str, Any]:
        """holder_name, and optionally balance (minor units), currency, status, account_number,
        customer_number."""
        return dict(self._call("POST", "/accounts", fields))

    def accounts(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/accounts"))

    def account(self, account_number: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/accounts/{account_number}"))

    def balance(self, account_number: str) -> int:
        return int(self.account(account_number)["balance"])

    def set_status(self, account_number: str, status: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/accounts/{account_number}/status", {"status": status}))

    def rrn(self, rrn: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/rrn/{rrn}"))
