"""The API side of maintenance mode: writes answer 503 `maintenance`, reads go through.

Which requests still change something during maintenance, and why:

- Signing in, refreshing and signing out (the `auth/token*`, `auth/device/*` and `auth/logout`
  paths below). "Reads keep working" needs them: an access token lives 5 minutes, so without a
  refresh every customer would be locked out of reading within minutes; signing out ends a
  session (a lost phone) and must never be refused. What they write is session state, never
  money or customer data.
- Nothing else. In particular the payment gateway's webhook (incoming credits) answers 503 too:
  the gateway keeps a credit and redelivers it until it gets a 2xx (integrations/gateway), and
  the webhook applies each notification id once, so a credit refused now is applied after the
  maintenance - while a credit accepted during, say, a restore of the database could be erased
  by that restore after the gateway was told it had arrived. Refusing is what cannot lose money.

Outside /api/ nothing is refused: staff use the admin (which is how maintenance is switched off).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from bankcore.api.errors import error_response
from bankcore.maintenance import maintenance_state, retry_after_seconds

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Session lifecycle only (see the module docstring); matched against the path after /api/vN/.
WRITES_ALLOWED_DURING_MAINTENANCE = re.compile(
    r"^/api/v\d+/auth/(token|token/mfa|token/refresh|logout|device/challenge|device/token)/?$"
)


def write_refused(request: HttpRequest) -> bool:
    """Whether this request changes something maintenance mode refuses (method and path only)."""
    return (
        request.method not in SAFE_METHODS
        and request.path.startswith(API_PREFIX)
        and not WRITES_ALLOWED_DURING_MAINTENANCE.match(request.path)
    )


class MaintenanceMiddleware:
    """During maintenance: 503 `maintenance` with Retry-After for every /api/ request that
    would change something (before authentication, parsing or the view run), reads untouched.

    Costs no query per request: the switch is memoised per process (bankcore.maintenance).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if write_refused(request):
            state = maintenance_state()
            if state.active:
                retry_after = retry_after_seconds(state)
                response = error_response(
                    503,
                    "maintenance",
                    state.message or "The bank is in maintenance; changes are paused. Please try again later.",
                    {"until": state.until.isoformat() if state.until else None, "retry_after": retry_after},
                )
                response["Retry-After"] = str(retry_after)
                # Planned and expected: one INFO line, not Django's ERROR for every 5xx (which
                # would page whoever is on call for each refused write of a planned upgrade).
                logger.info("maintenance: refused %s %s", request.method, request.path)
                response._has_been_logged = True  # type: ignore[attr-defined]
                return response
        return self.get_response(request)
