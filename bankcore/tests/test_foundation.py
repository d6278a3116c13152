"""Foundation behaviour: money parsing, keyset pages, admin behind TOTP, demo seed, service policy."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.request import Request

from bankcore.api.pagination import KeysetPagination
from bankcore.money import InvalidAmount, format_amount, parse_amount

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("12.50", "EUR", 1250), ("12.5", "EUR", 1250), ("1000", "JPY", 1000), ("0.001", "BHD", 1), ("7", "USD", 700)],
)
def test_parse_amount_gives_minor_units(text, currency, minor):
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("0", "EUR"),
        ("-1.00", "EUR"),
        ("1.001", "EUR"),
        ("1.5", "JPY"),
        ("abc", "EUR"),
        ("1e3", "EUR"),
        ("NaN", "EUR"),
        ("99999999999999999", "EUR"),
        (12.5, "EUR"),
        ("1.00", "XXX"),
        (" 1.00", "EUR"),
    ],
)
def test_parse_amount_refuses_what_is_not_a_positive_amount(text, currency):
    with pytest.raises(InvalidAmount):
        parse_amount(text, currency)


def test_uuid7_ids_increase_within_a_process():
    from bankcore.ids import uuid7

    ids = [uuid7() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == 5000
    assert all(i.version == 7 for i in ids[:10])


def test_format_amount_uses_the_currency_exponent():
    assert format_amount(1250, "EUR") == "12.50"
    assert format_amount(-5, "EUR") == "-0.05"
    assert format_amount(1000, "JPY") == "1000"
    assert format_amount(1, "BHD") == "0.001"


@pytest.mark.django_db
def test_keyset_pages_walk_newest_first_without_gaps_or_repeats(django_user_model):
    from notifications.models import Notification

    user = django_user_model.objects.create_user(email="p@example.com", password="x" * 12, full_name="P")
    created = [Notification.objects.create(user=user, event="e", title=str(i), body="") for i in range(45)]
    paginator, seen, cursor = KeysetPagination(), [], None
    while True:
        query = {"limit": "20", **({"cursor": cursor} if cursor else {})}
        request = Request(RequestFactory().get("/", query))
        page = paginator.paginate_queryset(Notification.objects.filter(user=user), request)
        seen.extend(page)
        cursor = paginator.get_paginated_response([]).data["next"]
        if cursor is None:
            break
    assert [n.pk for n in seen] == [n.pk for n in reversed(created)]


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"cursor": "!!notbase64"}])
def test_bad_limit_or_cursor_is_invalid_request(query):
    from rest_framework.exceptions import ValidationError

    from notifications.models import Notification

    with pytest.raises(ValidationError):
        KeysetPagination().paginate_queryset(Notification.objects.none(), Request(RequestFactory().get("/", query)))


@pytest.mark.django_db
def test_admin_needs_a_totp_code_after_the_password(client, django_user_model):
    staff = django_user_model.objects.create_superuser(
        email="ops@example.com", password="pw-123456789", full_name="Ops"
    )
    device = TOTPDevice.objects.create(user=staff, name="admin", confirmed=True)
    login = {"username": "ops@example.com", "password": "pw-123456789"}

    client.post("/admin/login/", {**login, "otp_device": device.persistent_id, "otp_token": "000000"})
    assert client.get("/admin/").status_code == 302, "wrong code must not open the admin"

    device.refresh_from_db()
    device.throttle_reset()  # django-otp slows down guesses after a failure
    code = f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"
    client.post("/admin/login/", {**login, "otp_device": device.persistent_id, "otp_token": code})
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_enrol_staff_totp_prints_an_otpauth_uri(capsys, django_user_model):
    django_user_model.objects.create_superuser(email="sec@example.com", password="pw-123456789", full_name="Sec")
    call_command("enrol_staff_totp", "sec@example.com")
    assert "otpauth://totp/" in capsys.readouterr().out
    assert TOTPDevice.objects.filter(user__email="sec@example.com", confirmed=True).count() == 1


@pytest.mark.django_db
def test_seed_demo_is_idempotent(django_user_model, capsys):
    call_command("seed_demo")
    users_after_first = django_user_model.objects.count()
    call_command("seed_demo")
    assert django_user_model.objects.count() == users_after_first >= 4
    assert "alice@demo.bankcore.dev" in capsys.readouterr().out


def test_cors_is_closed_by_default(client):
    response = client.options(
        "/api/v1/me", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )
    assert "Access-Control-Allow-Origin" not in response


def test_admin_path_comes_from_the_environment():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bankcore.settings", "ADMIN_URL": "staff-7f3a/"}
    code = "import django; django.setup(); from django.urls import reverse; print(reverse('admin:index'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "/staff-7f3a/", result.stderr


def _nested_pytest(**env_overrides):
    """The README's test run (pytest on this suite) with PostgreSQL unreachable."""
    env = {**os.environ, "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere", **env_overrides}
    for name in ("ALLOW_MISSING_SERVICES", "REQUIRE_SERVICES"):
        if name not in env_overrides:
            env.pop(name, None)
    test = "bankcore/tests/test_operations.py::test_readyz_reports_every_dependency_with_latency"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--create-db", test],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_service_stops_the_run_and_names_it():
    result = _nested_pytest()
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-2000:]
    assert "PostgreSQL not reachable at postgres://postgres@127.0.0.1:1/nowhere" in output
    assert "passed" not in output and "skipped" not in output


def test_skipping_the_tests_of_a_missing_service_is_an_explicit_opt_in_and_said_loudly():
    result = _nested_pytest(ALLOW_MISSING_SERVICES="1")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "SKIPPED 1 tests: PostgreSQL not reachable" in result.stdout


@pytest.mark.django_db
def test_createsuperuser_works_with_the_custom_user(monkeypatch, django_user_model):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-staff-password-1")
    call_command("createsuperuser", interactive=False, email="Root@Example.com", full_name="Root Staff")
    user = django_user_model.objects.get(email="root@example.com")
    assert user.is_staff and user.is_superuser and user.check_password("a-long-staff-password-1")
