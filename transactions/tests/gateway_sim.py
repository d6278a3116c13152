"""The payment gateway simulator as a real subprocess on a free loopback port, for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from bankcore.testing import free_port, process_env

BASE_DIR = Path(__file__).resolve().parents[2]


class GatewaySimulatorProcess:
    """`manage.py run_payment_gateway` with its own data directory; `url` is its base URL."""

    def __init__(self, *, data_dir: Path, webhook_url: str = "", webhook_secret: str = "") -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.log_path = data_dir / "simulator.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> GatewaySimulatorProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "manage.py", "run_payment_gateway", "--port", str(self.port)]
        argv += ["--data-dir", str(self.data_dir), "--webhook-url", self.webhook_url]
        argv += ["--webhook-secret", self.webhook_secret]
        self.process = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=process_env(),
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"simulator exited early; see {self.log_path}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=0.5).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"simulator did not answer within {timeout}s; see {self.log_path}")

    def control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_control/{path}", json=body, timeout=5)
        response.raise_for_status()
        return response.json()

    def state(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_control/state", timeout=5).json()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> GatewaySimulatorProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
