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


def _login(client, email="u@example.com", **headers):
    return client.post("/api/v1/auth/token", {"email": email, "password": "x"}, **headers)


def test_a_rotating_x_forwarded_for_does_not_escape_the_per_ip_throttle(redis_flushed):
    """With no trusted proxy the header is the client's own say: it must not name the counter."""
    with override_settings(REST_FRAMEWORK=_rates(auth_ip="3/min")):
        client = APIClient(REMOTE_ADDR="203.0.113.7")
        statuses = [
            _login(client, email=f"u{i}@example.com", HTTP_X_FORWARDED_FOR=f"10.0.{i // 250}.{i % 250}").status_code
            for i in range(40)
        ]
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}


def test_behind_trusted_proxies_the_client_is_the_address_the_nearest_trusted_proxy_appended(redis_flushed):
    with override_settings(REST_FRAMEWORK=_rates(auth_ip="2/min"), TRUSTED_PROXY_COUNT=1):
        balancer = APIClient(REMOTE_ADDR="10.0.0.2")
        # The client forges the left part; the balancer appends the address it saw.
        for forged in ("1.1.1.1", "2.2.2.2"):
            assert _login(balancer, HTTP_X_FORWARDED_FOR=f"{forged}, 198.51.100.20").status_code == 401
        assert _login(balancer, HTTP_X_FORWARDED_FOR="3.3.3.3, 198.51.100.20").status_code == 429
        # Another client behind the same balancer has its own counter.
        assert _login(balancer, HTTP_X_FORWARDED_FOR="198.51.100.21").status_code == 401
        # A header shorter than the proxy chain, or garbage, falls back to the socket address.
        assert _login(balancer, HTTP_X_FORWARDED_FOR="not-an-ip").status_code == 401
    keys = {key.decode() for key in redis.Redis.from_url(settings.REDIS_URL).keys("*throttle_auth_ip_*")}
    assert any(key.endswith("198.51.100.20") for key in keys)
    assert not any("1.1.1.1" in key or "3.3.3.3" in key for key in keys)


def test_audit_rows_sessions_and_new_login_alerts_carry_the_one_derived_client_ip(redis_flushed):
    from accounts.models import LoginSession
    from accounts.tests.factories import PASSWORD, UserFactory, tokens_for
    from bankcore.models import AuditEvent
    from notifications.models import Notification

    user = UserFactory()
    tokens_for(user)  # an earlier login from another app, so this one is announced
    with override_settings(TRUSTED_PROXY_COUNT=1):
        response = APIClient(REMOTE_ADDR="10.0.0.2").post(
            "/api/v1/auth/token",
            {"email": user.email, "password": PASSWORD},
            HTTP_X_FORWARDED_FOR="192.0.2.66, 198.51.100.30",
            HTTP_USER_AGENT="BankApp/2.0 (tablet)",
        )
    assert response.status_code == 200, response.content
    session = LoginSession.objects.get(user=user, user_agent__startswith="BankApp")
    assert session.ip == "198.51.100.30"
    assert AuditEvent.objects.get(action="auth.login", details__session=str(session.pk)).ip == "198.51.100.30"
    alert = Notification.objects.get(user=user, event="new_device_login")
    assert "198.51.100.30" in alert.body and "192.0.2.66" not in alert.body


def test_while_redis_is_unreachable_sign_ins_go_uncounted_and_the_database_lockout_still_guards(caplog):
    """Refusing every sign-in (500) while Redis is down would lock every customer out of the app;
    the counters are only a brake, the lockout in the database is the boundary."""
    from accounts.tests.factories import PASSWORD, UserFactory
    from bankcore.testing import free_port

    user = UserFactory()
    nowhere = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    with override_settings(CACHES=nowhere, REST_FRAMEWORK=_rates(auth_ip="1/min", auth_user="1/min")):
        client = APIClient(REMOTE_ADDR="203.0.113.60")
        assert _login(client, user.email).status_code == 401
        statuses = [_login(client, user.email).status_code for _ in range(5)]
        signed_in = client.post("/api/v1/auth/token", {"email": user.email, "password": PASSWORD})
    assert statuses[:4] == [401] * 4  # not 429: nothing could be counted
    assert statuses[4] == 403 and signed_in.status_code == 403  # five wrong in a row: locked, in the database
    assert "not counted: the cache is unreachable" in caplog.text
