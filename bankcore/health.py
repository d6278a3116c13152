"""Liveness (/healthz) and readiness (/readyz) probes for load balancers and orchestrators."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from django.core.cache import cache
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from bankcore import circuits

CHECK_TIMEOUT_SECONDS = 2
logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving. Touches no dependency."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return the value just written")
    cache.delete(key)


def _check_broker() -> None:
    from bankcore.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


def _backup_freshness() -> dict[str, object]:
    """The age of the newest good backup, as information: an old backup never makes the probe fail
    (taking web pods out of the load balancer would not make a backup; the metric
    bankcore_backup_last_success_age_seconds is what to alert on)."""
    from bankcore.backups.services import backup_freshness

    try:
        return backup_freshness()
    except Exception as exc:  # noqa: BLE001 - the database check above reports the database
        logger.warning("backup freshness unknown: %s: %s", type(exc).__name__, exc)
        return {"age_seconds": None, "status": "unknown"}


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "cache": _check_cache,
    "broker": _check_broker,
}


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, cache and Celery broker answer; 503 naming what is down.

    `circuits` lists each circuit breaker to another system (bankcore.circuits) as closed,
    half-open or open. An open circuit does NOT make this probe fail: the web still serves
    everything else, and the circuit only holds back the work that needs that system (e.g.
    settlement with the payment gateway); taking the pod out of the load balancer would not
    help. Breakers are per process, so this is the answering process's view.

    `backup` gives the newest good backup's age and "ok", "stale" (older than BACKUP_STALE_AFTER)
    or "none": information only, never a 503 (see _backup_freshness).

    The probe is public, so the answer says only which check is up or down; why (exception
    text naming hosts, users, ports) goes to the log, once per failing check.
    """
    results: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            results[name] = {"status": "down"}
            logger.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
            if name == "database":
                connections["default"].close()
        else:
            results[name] = {"status": "ok"}
        results[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    down = sorted(name for name, result in results.items() if result["status"] != "ok")
    body: dict[str, object] = {"status": "ok" if not down else "unavailable", "checks": results}
    body["circuits"] = circuits.states()
    # Read from the database: not asked again when it is down (another connect timeout).
    body["backup"] = _backup_freshness() if "database" not in down else {"age_seconds": None, "status": "unknown"}
    if down:
        body["down"] = down
    return JsonResponse(body, status=200 if not down else 503)
