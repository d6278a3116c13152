"""The gateway simulator as a real subprocess on a loopback port, for any app's tests
(the settlement side starts it the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from integrations.simulation import SimulatorProcess, free_port


class GatewaySimulatorProcess(SimulatorProcess):
    """`manage.py run_payment_gateway` on `port` with its journal in `data_dir`.

    stop() and start() again on the same data dir and port is a restart of the same gateway.
    """

    name = "gateway simulator"

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
        super().__init__(data_dir, env=env)
        self.port = port or free_port()
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhook_backoff = webhook_backoff

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        return f"{self.url}/healthz"

    def argv(self) -> list[str]:
        return [
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
