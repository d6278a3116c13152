"""/api/ requests skip the browser-only middleware; the admin keeps all of it; metrics still count."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from prometheus_client import REGISTRY

pytestmark = [pytest.mark.django_db]


def test_api_requests_skip_sessions_and_the_session_user(client):
    response = client.get("/api/v1/transfers")
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    request = response.wsgi_request
    assert not hasattr(request, "session") and not hasattr(request, "_messages")
    assert response["X-Frame-Options"] == "DENY" and response["X-Request-ID"]


def test_admin_pages_keep_sessions_csrf_and_the_otp_user(client):
    response = client.get(f"/{settings.ADMIN_URL}login/")
    assert response.status_code == 200
    request = response.wsgi_request
    assert hasattr(request, "session") and hasattr(request, "_messages")
    assert request.user.is_verified() is False  # the OTP middleware's user
    assert settings.CSRF_COOKIE_NAME in response.cookies
    strict = Client(enforce_csrf_checks=True)
    refused = strict.post(f"/{settings.ADMIN_URL}login/", {"username": "x", "password": "y"})
    assert refused.status_code == 403  # no CSRF token


def test_request_metrics_are_still_counted_per_view_and_status(client):
    labels = {"status": "401", "view": "v1:transfers", "method": "GET"}
    name = "django_http_responses_total_by_status_view_method_total"
    before = REGISTRY.get_sample_value(name, labels) or 0
    client.get("/api/v1/transfers")
    client.get("/api/v1/transfers")
    assert REGISTRY.get_sample_value(name, labels) == before + 2
