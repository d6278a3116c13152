"""Circuit breakers' state, visible to operators: a registry the apps fill, read by /readyz,
and the Prometheus gauge `bankcore_circuit_state{circuit=...}` (0 closed, 1 half-open, 2 open).

bankcore owns the mechanism and knows no app: an app registers each of its breakers in its
AppConfig.ready (`register("payment_gateway", lambda: breaker.current_state)`) and reports
state changes with `record(name, state)` (e.g. from a pybreaker listener). State is per
process, like the breakers themselves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prometheus_client import Gauge

CLOSED, HALF_OPEN, OPEN = "closed", "half-open", "open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

CIRCUIT_STATE = Gauge(
    "bankcore_circuit_state",
    "State of a circuit breaker to another system: 0 closed, 1 half-open, 2 open.",
    ["circuit"],
)

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_registry: dict[str, Callable[[], str]] = {}


def register(name: str, state_fn: Callable[[], str]) -> None:
    """Make circuit `name` visible; `state_fn` answers "closed", "half-open" or "open".
    Registering a name again replaces it (AppConfig.ready may run more than once in tests)."""
    with _lock:
        _registry[name] = state_fn
    record(name, state_fn())


def record(name: str, state: str) -> None:
    """Set the gauge of circuit `name` to `state` (call on every state change)."""
    value = STATE_VALUES.get(state)
    if value is None:
        logger.warning("circuit %s reported an unknown state %r", name, state)
        return
    CIRCUIT_STATE.labels(circuit=name).set(value)


def states() -> dict[str, str]:
    """Every registered circuit's current state, by name."""
    with _lock:
        registry = dict(_registry)
    return {name: state_fn() for name, state_fn in sorted(registry.items())}
