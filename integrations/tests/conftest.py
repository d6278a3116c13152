"""The payment gateway simulator as a real subprocess; the client's breaker reset per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from integrations.gateway.client import GatewayClient, gateway_breaker
from integrations.gateway.testing import GatewaySimulatorProcess


@pytest.fixture(scope="module")
def gateway_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySimulatorProcess]:
    """One simulator per test module (tests use fresh ids and compare counts before/after)."""
    with GatewaySimulatorProcess(tmp_path_factory.mktemp("gateway")) as simulator:
        yield simulator


@pytest.fixture
def gateway(gateway_simulator: GatewaySimulatorProcess) -> Iterator[GatewaySimulatorProcess]:
    gateway_simulator.reset_faults()
    yield gateway_simulator
    gateway_simulator.reset_faults()


@pytest.fixture(autouse=True)
def closed_breaker() -> Iterator[None]:
    """Each test starts with the process's gateway circuit closed and its settings' thresholds."""
    fail_max, reset_timeout = gateway_breaker.fail_max, gateway_breaker.reset_timeout
    gateway_breaker.close()
    yield
    gateway_breaker.fail_max, gateway_breaker.reset_timeout = fail_max, reset_timeout
    gateway_breaker.close()


@pytest.fixture
def make_client() -> Callable[..., GatewayClient]:
    """Clients with test-sized timeouts and backoff (overridable per call)."""

    def make(url: str, **overrides: Any) -> GatewayClient:
        options: dict[str, Any] = {"timeout": 1.0, "attempts": 3, "backoff": 0.01, "max_backoff": 0.05}
        options.update(overrides)
        return GatewayClient(url, **options)

    return make
