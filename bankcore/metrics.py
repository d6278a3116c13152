"""/metrics for Prometheus, only for configured networks or a bearer token."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView

from bankcore.api.errors import error_response


def _client_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    auth = request.headers.get("Authorization", "")
    if token and auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), token):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETWORKS)


def metrics(request: HttpRequest) -> HttpResponse:
    if not _client_allowed(request):
        return error_response(403, "permission_denied", "Metrics are not available from this address.")
    return ExportToDjangoView(request)
