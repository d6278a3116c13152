"""The gateway simulator subprocess and a Celery worker pointed at it, for the settlement tests.

Import the fixtures into a test module: `from transactions.tests.gateway_fixture import *`.
The simulator is the gateway helper's GatewaySimulatorProcess (a real `run_payment_gateway`
on a free loopback port, its own journal); one per module, its faults reset per test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from integrations.gateway.client import gateway_breaker
from integrations.gateway.testing import GatewaySimulatorProcess

__all__ = ["gateway", "gateway_simulator", "settlement_worker", "wait_for", "worker_env"]


@pytest.fixture(scope="module")
def gateway_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySimulatorProcess]:
    with GatewaySimulatorProcess(tmp_path_factory.mktemp("gateway")) as simulator:
        yield simulator


@pytest.fixture
def gateway(gateway_simulator: GatewaySimulatorProcess, settings: Any) -> Iterator[GatewaySimulatorProcess]:
    """The simulator, faults off, as this process's PAYMENT_GATEWAY_URL, with a closed circuit
    and test-sized client timeouts."""
    gateway_simulator.reset_faults()
    settings.PAYMENT_GATEWAY_URL = gateway_simulator.url
    settings.PAYMENT_GATEWAY_TIMEOUT = 3.0
    gateway_breaker.close()
    yield gateway_simulator
    gateway_simulator.reset_faults()
    gateway_breaker.close()


def worker_env(gateway: GatewaySimulatorProcess, **overrides: str) -> dict[str, str]:
    """A worker's environment: the test database and Redis, the simulator, fast polls."""
    from bankcore.testing import process_env

    values = {
        "PAYMENT_GATEWAY_URL": gateway.url,
        "PAYMENT_GATEWAY_TIMEOUT": "3",
        "SETTLEMENT_REPORT_POLL_SECONDS": "1",
        "SETTLEMENT_SWEEP_AFTER_SECONDS": "1",
    }
    values.update(overrides)
    return process_env(**values)


@pytest.fixture
def settlement_worker(transactional_db: Any, gateway: GatewaySimulatorProcess) -> Iterator[Callable[..., Any]]:
    """Start real Celery workers (on every queue) against the simulator: `start(**env)`.

    Every worker started is stopped at the end (a killed one is already gone). Stale tasks of
    earlier tests are purged first, as conftest.celery_worker_process does.
    """
    from bankcore.celery import app
    from bankcore.flags import flag_lower
    from bankcore.testing import CeleryWorker
    from transactions.services.notices import WAKE_FLAG

    app.control.purge()
    flag_lower(WAKE_FLAG)
    started: list[CeleryWorker] = []

    def start(**env: str) -> CeleryWorker:
        worker = CeleryWorker(env=worker_env(gateway, **env)).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    app.control.purge()


def wait_for(condition: Callable[[], Any], *, timeout: float = 30, interval: float = 0.1, what: str = "") -> Any:
    """Poll `condition` until truthy (returned) or fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
