"""App config: supported versions per platform (426 below the minimum), feature flags with a stable
per-user rollout, and staff changes through the audited admin."""

from __future__ import annotations

import os
import uuid

import pytest
from django.contrib.auth.models import Permission
from packaging.version import Version

from accounts.models import User
from accounts.tests.factories import UserFactory, authenticated_client, tokens_for
from bankcore.app_config import (
    FlagSnapshot,
    app_config_cache_clear,
    feature_flag_set,
    flag_is_on,
    rollout_bucket,
    version_policy,
    version_policy_set,
)
from bankcore.models import AppVersionPolicy, AuditEvent, FeatureFlag
from bankcore.testing import staff_client

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

STORE = "https://apps.apple.com/app/bankcore/id123"


@pytest.fixture(autouse=True)
def fresh_config(settings):
    """Every read loads the policies and flags (inside a test's transaction, on_commit never clears)."""
    settings.APP_CONFIG_CACHE_SECONDS = 0
    app_config_cache_clear()
    yield
    app_config_cache_clear()


@pytest.fixture
def ops() -> User:
    staff = UserFactory(email="ops@bank.example", is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="bankcore",
            codename__in=[
                "add_featureflag",
                "change_featureflag",
                "view_featureflag",
                "add_appversionpolicy",
                "change_appversionpolicy",
                "view_appversionpolicy",
            ],
        )
    )
    return User.objects.get(pk=staff.pk)


@pytest.fixture
def ios_policy(ops) -> AppVersionPolicy:
    return version_policy_set(
        platform="ios", min_supported_version="1.9.0", latest_version="2.1.0", store_url=STORE, actor=ops
    )


def _app(client, path, version, platform="ios", **extra):
    return client.get(path, HTTP_X_APP_PLATFORM=platform, HTTP_X_APP_VERSION=version, **extra)


# --- 426 -------------------------------------------------------------------------------------


def test_an_app_below_the_minimum_gets_426_with_the_store_url(client, ios_policy):
    response = _app(client, "/api/v1/accounts", "1.8.9")
    assert response.status_code == 426
    error = response.json()["error"]
    assert error["code"] == "upgrade_required"
    assert error["details"]["store_url"] == STORE
    assert error["details"]["min_supported_version"] == "1.9.0"


def test_426_comes_before_authentication_and_applies_to_writes(client, ios_policy):
    response = client.post(
        "/api/v1/transfers", {}, content_type="application/json", HTTP_X_APP_PLATFORM="ios", HTTP_X_APP_VERSION="1.0"
    )
    assert response.status_code == 426


def test_versions_compare_semantically_not_as_strings(client, ios_policy):
    # As strings "1.10.0" < "1.9.0"; as versions it is newer and served.
    user = UserFactory()
    api = authenticated_client(user)
    assert _app(api, "/api/v1/accounts", "1.10.0").status_code == 200
    assert _app(api, "/api/v1/accounts", "1.9.0").status_code == 200
    assert _app(api, "/api/v1/accounts", "1.9").status_code == 200  # 1.9 == 1.9.0
    assert _app(api, "/api/v1/accounts", "1.9.0rc1").status_code == 426  # a pre-release is older
    assert _app(api, "/api/v1/accounts", "1.8.10").status_code == 426


@pytest.mark.parametrize("path", ["/api/v1/app-config?platform=ios", "/api/v1/status"])
def test_app_config_and_status_are_served_to_an_old_app(client, ios_policy, path):
    assert _app(client, path, "0.1.0").status_code == 200


def test_an_old_app_may_refresh_its_token(client, ios_policy):
    refresh = tokens_for(UserFactory())["refresh"]
    response = client.post(
        "/api/v1/auth/token/refresh",
        {"refresh": refresh},
        content_type="application/json",
        HTTP_X_APP_PLATFORM="ios",
        HTTP_X_APP_VERSION="0.1.0",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["access"]
    # ...but not log in anew, for instance.
    response = client.post(
        "/api/v1/auth/token",
        {"email": "x@example.com", "password": "nope"},
        content_type="application/json",
        HTTP_X_APP_PLATFORM="ios",
        HTTP_X_APP_VERSION="0.1.0",
    )
    assert response.status_code == 426


def test_requests_without_app_headers_or_from_other_platforms_pass(client, ios_policy):
    # Scripts, partners and the admin send no app headers: the check is for old apps, not access control.
    assert client.get("/api/v1/status").status_code == 200
    assert client.get("/api/v1/status", HTTP_X_APP_VERSION="0.1").status_code == 200
    assert client.get("/api/v1/accounts", HTTP_X_APP_PLATFORM="ios").status_code == 401
    # Android has no policy yet: nothing is refused.
    assert _app(client, "/api/v1/accounts", "0.0.1", platform="android").status_code == 401
    assert _app(client, "/api/v1/accounts", "0.0.1", platform="web").status_code == 401
    # Outside /api/ nothing is checked.
    assert _app(client, "/healthz", "0.0.1").status_code == 200


def test_a_version_that_is_no_version_answers_400(client, ios_policy):
    response = _app(client, "/api/v1/accounts", "latest")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert "X-App-Version" in response.json()["error"]["details"]


def test_the_policy_is_cached_per_process_and_a_committed_change_clears_it(
    settings, ops, django_capture_on_commit_callbacks
):
    settings.APP_CONFIG_CACHE_SECONDS = 3600
    with django_capture_on_commit_callbacks(execute=True):
        version_policy_set(
            platform="ios", min_supported_version="1.0", latest_version="1.0", store_url=STORE, actor=ops
        )
    assert version_policy("ios").min_supported == Version("1.0")
    # A change behind this process's back (another process) is not seen until the copy expires...
    AppVersionPolicy.objects.filter(platform="ios").update(min_supported_version="3.0", latest_version="3.0")
    assert version_policy("ios").min_supported == Version("1.0")
    # ...while a change through the service clears it when it commits.
    with django_capture_on_commit_callbacks(execute=True):
        version_policy_set(
            platform="ios", min_supported_version="2.0", latest_version="2.0", store_url=STORE, actor=ops
        )
    assert version_policy("ios").min_supported == Version("2.0")


# --- GET /app-config ----------------------------------------------------------------------------


def test_app_config_tells_versions_store_and_force_update(client, ios_policy):
    body = client.get("/api/v1/app-config?platform=ios&version=1.8.0").json()
    assert body == {
        "min_supported_version": "1.9.0",
        "latest_version": "2.1.0",
        "force_update": True,
        "store_url": STORE,
        "flags": {},
    }
    assert client.get("/api/v1/app-config?platform=ios&version=1.10.0").json()["force_update"] is False
    assert client.get("/api/v1/app-config?platform=ios").json()["force_update"] is False


def test_app_config_without_a_policy_answers_nulls(client):
    body = client.get("/api/v1/app-config?platform=android&version=1.0.0").json()
    assert body["min_supported_version"] is None and body["store_url"] is None and body["force_update"] is False


@pytest.mark.parametrize("query", ["", "?platform=web", "?platform=ios&version=soon"])
def test_app_config_refuses_a_missing_platform_or_bad_version(client, query):
    response = client.get(f"/api/v1/app-config{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_app_config_with_an_expired_or_bad_token_is_answered_as_anonymous(client, ops):
    feature_flag_set(name="everyone", enabled=True, rollout_percent=100, actor=ops)
    response = client.get("/api/v1/app-config?platform=ios", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert response.status_code == 200
    assert response.json()["flags"] == {"everyone": True}


def test_flags_are_the_signed_in_users_own(client, ops):
    feature_flag_set(name="everyone", enabled=True, rollout_percent=100, actor=ops)
    feature_flag_set(name="nobody", enabled=True, rollout_percent=0, actor=ops)
    feature_flag_set(name="switched_off", enabled=False, rollout_percent=100, actor=ops)
    feature_flag_set(name="half", enabled=True, rollout_percent=50, actor=ops)
    users = [UserFactory() for _ in range(12)]
    in_half = {u.pk for u in users if rollout_bucket(flag="half", user_id=u.pk) < 5000}
    assert 0 < len(in_half) < len(users)  # 12 users: both sides are practically certain to be there
    for user in users:
        flags = authenticated_client(user).get("/api/v1/app-config?platform=ios&version=2.0").json()["flags"]
        assert flags == {"everyone": True, "nobody": False, "switched_off": False, "half": user.pk in in_half}
    # Without a token there is no one to keep a stable answer for: only flags rolled out to everyone.
    anonymous = client.get("/api/v1/app-config?platform=ios&version=2.0").json()["flags"]
    assert anonymous == {"everyone": True, "nobody": False, "switched_off": False, "half": False}


def test_flag_platform_and_minimum_version_filters(client, ops):
    feature_flag_set(name="android_only", enabled=True, rollout_percent=100, platform="android", actor=ops)
    feature_flag_set(name="new_cards", enabled=True, rollout_percent=100, min_app_version="2.10.0", actor=ops)
    flags = client.get("/api/v1/app-config?platform=ios&version=2.9.0").json()["flags"]
    assert flags == {"android_only": False, "new_cards": False}
    flags = client.get("/api/v1/app-config?platform=android&version=2.10.0").json()["flags"]
    assert flags == {"android_only": True, "new_cards": True}
    # Without a version the minimum cannot be shown to hold: off.
    assert client.get("/api/v1/app-config?platform=android").json()["flags"]["new_cards"] is False


# --- the rollout --------------------------------------------------------------------------------


def _flag(percent: int, name: str = "new_onboarding") -> FlagSnapshot:
    return FlagSnapshot(name=name, enabled=True, rollout_percent=percent, platform="", min_app_version=None)


USERS = [uuid.UUID(int=n * 7919 + 12345, version=4) for n in range(10_000)]


@pytest.mark.parametrize("percent", [1, 10, 25, 50, 75, 90])
def test_rollout_is_within_two_points_of_the_percentage_over_10000_users(percent):
    on = sum(flag_is_on(_flag(percent), user_id=u, platform="ios", version=None) for u in USERS)
    assert abs(on / len(USERS) - percent / 100) <= 0.02, on


def test_rollout_is_stable_per_user_and_only_grows_with_the_percentage():
    previous: set[uuid.UUID] = set()
    for percent in (0, 5, 10, 25, 50, 75, 100):
        on = {u for u in USERS if flag_is_on(_flag(percent), user_id=u, platform="ios", version=None)}
        again = {u for u in USERS if flag_is_on(_flag(percent), user_id=u, platform="ios", version=None)}
        assert on == again  # the same answer every time
        assert previous <= on  # nobody who had the feature loses it as the rollout grows
        previous = on
    assert len(previous) == len(USERS)


def test_rollouts_of_different_flags_pick_different_users():
    a = {u for u in USERS if flag_is_on(_flag(50, "a"), user_id=u, platform="ios", version=None)}
    b = {u for u in USERS if flag_is_on(_flag(50, "b"), user_id=u, platform="ios", version=None)}
    assert 0.4 < len(a & b) / len(a) < 0.6  # independent, not the same half every time


# --- staff changes in the admin ------------------------------------------------------------------


def test_admin_changes_to_flags_are_audited_with_before_and_after(ops):
    admin = staff_client(ops)
    response = admin.post(
        "/admin/bankcore/featureflag/add/",
        {"name": "instant_payments", "description": "", "enabled": "on", "rollout_percent": "10", "platform": ""},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    flag = FeatureFlag.objects.get(name="instant_payments")
    response = admin.post(
        f"/admin/bankcore/featureflag/{flag.pk}/change/",
        {"description": "", "enabled": "on", "rollout_percent": "50", "platform": "", "min_app_version": "2.0.0"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    flag.refresh_from_db()
    assert (flag.rollout_percent, flag.min_app_version) == (50, "2.0.0")
    events = list(AuditEvent.objects.filter(action="app_config.feature_flag_set").order_by("id"))
    assert [e.actor_id for e in events] == [ops.pk, ops.pk]
    assert events[0].details["before"] is None
    assert events[1].details["before"]["rollout_percent"] == 10
    assert events[1].details["after"]["rollout_percent"] == 50


def test_admin_changes_to_version_policies_are_audited_and_checked_as_versions(ops):
    admin = staff_client(ops)
    add = "/admin/bankcore/appversionpolicy/add/"
    bad = {"platform": "ios", "min_supported_version": "one", "latest_version": "2.0", "store_url": STORE}
    assert admin.post(add, bad).status_code == 200  # the form again, with the error
    above = {**bad, "min_supported_version": "2.10", "latest_version": "2.9"}
    assert admin.post(add, above).status_code == 200
    assert not AppVersionPolicy.objects.exists()
    good = {**bad, "min_supported_version": "2.9", "latest_version": "2.10"}
    assert admin.post(add, good).status_code == 302
    event = AuditEvent.objects.get(action="app_config.version_policy_set")
    assert event.actor_id == ops.pk
    assert event.details["after"] == {"min_supported_version": "2.9", "latest_version": "2.10", "store_url": STORE}


def test_staff_without_the_permission_cannot_change_flags():
    viewer = UserFactory(email="viewer@bank.example", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_featureflag"))
    response = staff_client(User.objects.get(pk=viewer.pk)).post(
        "/admin/bankcore/featureflag/add/", {"name": "x", "enabled": "on", "rollout_percent": "100"}
    )
    assert response.status_code == 403
    assert not FeatureFlag.objects.exists()


# --- seed_demo -----------------------------------------------------------------------------------


def test_seed_demo_sets_versions_flags_at_50_percent_and_an_open_ticket_once():
    from django.core.management import call_command

    from transactions.models import SupportTicket

    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115 - closed at exit
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115 - idempotent
    assert set(AppVersionPolicy.objects.values_list("platform", flat=True)) == {"ios", "android"}
    assert FeatureFlag.objects.filter(enabled=True, rollout_percent=50).count() == 1
    assert AuditEvent.objects.filter(action="app_config.feature_flag_set").count() == FeatureFlag.objects.count()
    (ticket,) = SupportTicket.objects.all()
    assert ticket.status == SupportTicket.Status.OPEN and ticket.transfer_id is not None
