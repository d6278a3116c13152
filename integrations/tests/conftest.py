"""The payment gateway and legacy core simulators as real subprocesses; the clients' breakers
reset per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from integrations.gateway.client import GatewayClient, gateway_breaker
from integrations.gateway.testing import GatewaySimulatorProcess
from integrations.legacy.client import LegacyCoreClient, legacy_breaker, reset_circuit
from integrations.legacy.testing import LegacyCoreProcess


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


# --- the legacy core ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def legacy_core_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LegacyCoreProcess]:
    """One legacy core simulator per test module (tests make their own accounts)."""
    with LegacyCoreProcess(tmp_path_factory.mktemp("legacy-core")) as core:
        yield core


@pytest.fixture
def legacy_core(legacy_core_process: LegacyCoreProcess) -> Iterator[LegacyCoreProcess]:
    legacy_core_process.reset_faults()
    yield legacy_core_process
    legacy_core_process.reset_faults()


@pytest.fixture
def legacy_circuit() -> Iterator[None]:
    """The process's legacy circuit closed, with its settings' thresholds, before and after."""
    fail_max, reset_timeout = legacy_breaker.fail_max, legacy_breaker.reset_timeout
    reset_circuit()
    yield
    legacy_breaker.fail_max, legacy_breaker.reset_timeout = fail_max, reset_timeout
    reset_circuit()


@pytest.fixture
def make_legacy_client(legacy_circuit: None) -> Iterator[Callable[..., LegacyCoreClient]]:
    """Connectors with test-sized timeouts and backoff (overridable per call), closed after."""
    made: list[LegacyCoreClient] = []

    def make(address: str, **overrides: Any) -> LegacyCoreClient:
        options: dict[str, Any] = {"timeout": 0.5, "pool_size": 4, "attempts": 2, "backoff": 0.01, "max_backoff": 0.05}
        options.update(overrides)
        client = LegacyCoreClient(address, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
