"""Operations surface: docs, health, readiness, metrics, deploy checks, a real Celery worker."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from django.test import override_settings

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_openapi_schema_validates_and_documents_errors_and_auth(client):
    from openapi_spec_validator import validate

    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    validate(schema)
    assert schema["openapi"].startswith("3.")
    assert "Error" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["jwtAuth"]["scheme"] == "bearer"


def test_swagger_ui_is_served_from_our_own_static_files_without_inline_script(client):
    import re

    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="swagger-ui"' in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in sources
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css" in sources
    # Everything from this host: no CDN, no absolute URL to anywhere else.
    assert all(source.startswith("/") and not source.startswith("//") for source in sources), sources
    # The start-up script is a URL of its own (works under a CSP without 'unsafe-inline').
    assert re.search(r"<script>\s*\S", page) is None
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle(" in script.content
    for source in sources:
        if source.startswith("/static/"):
            assert client.get(source).status_code == 200, source


def test_healthz_needs_no_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_reports_every_dependency_with_latency(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    checks = response.json()["checks"]
    assert set(checks) == {"database", "cache", "broker"}
    for check in checks.values():
        assert check["status"] == "ok" and check["latency_ms"] >= 0


@pytest.mark.postgres
@pytest.mark.django_db
def test_readyz_answers_503_naming_the_database_when_it_is_unreachable():
    from bankcore.testing import GunicornServer, process_env

    env = process_env(DATABASE_URL="postgres://secret_dba@127.0.0.1:1/nowhere_db")
    with GunicornServer(env=env, workers=1) as server:
        response = requests.get(f"{server.url}/readyz", timeout=20)
        log = server.log_path.read_text(errors="replace")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["database"]
    assert body["checks"]["database"] == {"status": "down", "latency_ms": body["checks"]["database"]["latency_ms"]}
    # The public answer names no host, port, user or database; the cause goes to the log.
    for secret in ("127.0.0.1", "secret_dba", "nowhere_db", "5432", "Error", "connection"):
        assert secret not in response.text
    assert set(body) == {"status", "checks", "down", "circuits", "backup"}
    assert body["backup"] == {"age_seconds": None, "status": "unknown"}  # the database was not asked again
    assert "readiness check database failed" in log


@pytest.mark.django_db
def test_metrics_are_prometheus_text_for_allowed_networks(client):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert b"django_http_requests_total_by_method_total" in response.content


@pytest.mark.django_db
@override_settings(METRICS_ALLOWED_NETWORKS=["10.0.0.0/8"], METRICS_TOKEN="s3cret-token")
def test_metrics_refuse_other_networks_unless_bearer_token(client):
    refused = client.get("/metrics", REMOTE_ADDR="203.0.113.5")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403
    allowed = client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert allowed.status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


def _manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def _production_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "SECRET_KEY", "DEBUG"))}
    env.update(
        DJANGO_SETTINGS_MODULE="bankcore.settings",
        BANKCORE_ENV="production",
        SECRET_KEY="k" * 20 + "-production-secret-for-the-deploy-check-0123456789",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/bankcore",
        ALLOWED_HOSTS="api.bank.example",
        FIELD_ENCRYPTION_KEYS="Xe5FZ0dRYT4c9lAYhWx0RkAv6Vm8Xy3p1Kq2Lr7sT0U=",
        AUDIT_HMAC_KEY="audit-hmac-key-for-the-deploy-check-0123456789",
        BACKUP_ENCRYPTION_KEYS="backup-key-for-the-deploy-check-0123456789abcdef",
    )
    env.update(extra)
    return env


def test_check_deploy_is_clean_under_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_secret_key():
    env = _production_env()
    env.pop("SECRET_KEY")
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_a_strong_audit_hmac_key():
    env = _production_env()
    env.pop("AUDIT_HMAC_KEY")
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "AUDIT_HMAC_KEY must be set in production" in result.stderr
    result = _manage("check", env=_production_env(AUDIT_HMAC_KEY="short"))
    assert result.returncode != 0
    assert "AUDIT_HMAC_KEY must be set in production" in result.stderr


def test_production_with_a_gateway_must_name_the_banks_own_settlement_account():
    gateway = {"PAYMENT_GATEWAY_URL": "https://gateway.bank.example"}
    result = _manage("check", env=_production_env(**gateway))
    assert result.returncode != 0
    assert "SETTLEMENT_DEBTOR_IBAN and SETTLEMENT_DEBTOR_BIC" in result.stderr
    named = _production_env(
        **gateway, SETTLEMENT_DEBTOR_IBAN="DE02120300000000202051", SETTLEMENT_DEBTOR_BIC="BYLADEM1001"
    )
    result = _manage("check", env=named)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_has_no_browsable_api_and_debug_off():
    code = (
        "from django.conf import settings as s;"
        "print(s.DEBUG, s.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES'], s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS)"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=BASE_DIR,
        env=_production_env(DEBUG="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "BrowsableAPIRenderer" not in result.stdout
    assert "True 31536000" in result.stdout


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_real_celery_worker_runs_a_task_through_redis(celery_worker_process):
    from bankcore.tasks import add, heartbeat

    assert add.delay(2, 3).get(timeout=30) == 5
    result = heartbeat.apply_async()
    assert result.get(timeout=30)
    assert result.status == "SUCCESS"


def test_tasks_are_routed_to_their_queues():
    from bankcore.celery import app

    router = app.amqp.router
    assert router.route({}, "transactions.tasks.settle")["queue"].name == "settlement"
    assert router.route({}, "notifications.tasks.deliver")["queue"].name == "notifications"
    assert router.route({}, "bankcore.tasks.heartbeat")["queue"].name == "maintenance"
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost


def test_dockerfile_and_compose_describe_web_worker_and_beat():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") >= 2, "multi-stage build"
    assert "\nUSER " in dockerfile and "USER root" not in dockerfile.split("FROM ")[-1]
    assert "gunicorn" in dockerfile
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
    for name in ("web", "worker", "beat"):
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgres://")
    assert ".venv" in (BASE_DIR / ".dockerignore").read_text()


def test_check_deploy_fails_without_backup_encryption_keys():
    env = _production_env()
    env.pop("BACKUP_ENCRYPTION_KEYS")
    result = _manage("check", "--deploy", env=env)
    assert result.returncode != 0
    assert "BACKUP_ENCRYPTION_KEYS must be set" in result.stderr + result.stdout
