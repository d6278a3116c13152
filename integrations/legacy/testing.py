"""The legacy core simulator as a real subprocess on loopback ports, for any app's tests
(the app-facing side starts it the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from integrations.simulation import SimulatorProcess, free_port


class LegacyCoreProcess(SimulatorProcess):
    """`manage.py run_legacy_core` on `port` (ISO 8583) and `control_port` (HTTP), with its
    journal in `data_dir`. stop() and start() again on the same data dir and ports is a restart
    of the same core."""

    name = "legacy core simulator"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        control_port: int | None = None,
        seed_accounts: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(data_dir, env=env)
        self.port = port or free_port()
        self.control_port = control_port or free_port()
        self.seed_accounts = seed_accounts

    @property
    def address(self) -> str:
        """ "host:port" of the ISO 8583 listener: LegacyCoreClient's address."""
        return f"127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def health_url(self) -> str:
        return f"{self.control_url}/healthz"

    def argv(self) -> list[str]:
        return [
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
