"""The gateway simulator as a real subprocess on a loopback port, for any app's tests
(the settlement side starts it the same way)."""

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


class GatewaySimulatorProcess:
    """`manage.py run_payment_gateway` on `port` with its journal in `data_dir`.

    stop() and start() again on the same data dir and port is a restart of the same gateway.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        webhook_url: str = "",
        webhook_secret: str = "",
        webhook_backoff: float = 0.05,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or _free_port()
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhook_backoff = webhook_backoff
        self.env = env or {**os.environ, "DJANGO_SETTINGS_MODULE": "bankcore.settings", "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "simulator.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> GatewaySimulatorProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "manage.py",
            "run_payment_gateway",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--webhook-url",
            self.webhook_url,
            "--webhook-secret",
            self.webhook_secret,
            "--webhook-backoff",
            str(self.webhook_backoff),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv
                argv, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway simulator exited early; see {self.log_path}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway simulator did not answer in {timeout}s; see {self.log_path}")

    def wait_exit(self, timeout: float = 10) -> int:
        """Wait for the process to end by itself (e.g. crash_after_accept); its exit code."""
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

    def __enter__(self) -> GatewaySimulatorProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- control endpoints ------------------------------------------------------------------

    def faults(self, **switches: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_control/faults", json=switches, timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def reset_faults(self) -> None:
        self.faults(reset=True)

    def state(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/_control/state", timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def credit(self, **body: Any) -> dict[str, Any]:
        """Book an incoming credit (iban, amount, currency, debtor, remittance_information)."""
        response = requests.post(f"{self.url}/_control/credits", json=body, timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def plant_statement_entry(self, **entry: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_control/statement-entry", json=entry, timeout=5)
        response.raise_for_status()
        return dict(response.json())
