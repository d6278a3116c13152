"""Auth endpoints are rate-limited per IP and per account in Redis: 429 `throttled` with Retry-After."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.redis]


def _rates(**rates):
    return {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"auth_ip": "1000/min", "auth_user": "1000/min", **rates},
    }


def test_login_attempts_from_one_ip_are_throttled_in_redis(redis_flushed):
    with override_settings(REST_FRAMEWORK=_rates(auth_ip="3/min")):
        client = APIClient(REMOTE_ADDR="203.0.113.7")
        statuses = [
            client.post("/api/v1/auth/token", {"email": f"u{i}@example.com", "password": "x"}).status_code
            for i in range(3)
        ]
        assert statuses == [401, 401, 401]
        response = client.post("/api/v1/auth/token", {"email": "u9@example.com", "password": "x"})
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "throttled"
        assert 0 < int(response["Retry-After"]) <= 60
        # Another address is not affected.
        other = APIClient(REMOTE_ADDR="203.0.113.8")
        assert other.post("/api/v1/auth/token", {"email": "u1@example.com", "password": "x"}).status_code == 401
    keys = redis.Redis.from_url(settings.REDIS_URL).keys("*throttle_auth_ip_203.0.113.7*")
    assert keys, "the throttle counter lives in Redis"


def test_attempts_on_one_account_from_many_ips_are_throttled(redis_flushed):
    with override_settings(REST_FRAMEWORK=_rates(auth_user="2/min")):
        for i in range(2):
            client = APIClient(REMOTE_ADDR=f"198.51.100.{i}")
            assert (
                client.post("/api/v1/auth/token", {"email": "Victim@example.com", "password": "x"}).status_code == 401
            )
        spray = APIClient(REMOTE_ADDR="198.51.100.99").post(
            "/api/v1/auth/token", {"email": "victim@example.com", "password": "x"}
        )
        assert spray.status_code == 429
        assert "Retry-After" in spray
