"""What the mobile apps are told about themselves: supported versions, the store, feature flags.

Read on every API request (the 426 check), so the version policies and flags are kept in
process memory for APP_CONFIG_CACHE_SECONDS (a few seconds): a change in the admin reaches
every process within that time, and a request costs no query. A change made in this process
clears its own copy at once.

Versions compare semantically with `packaging.version` (1.10.0 > 1.9.0), never as strings.

A flag's answer for a user is stable: sha256("<flag>:<user id>") picks a bucket 0..9999 and
the flag is on below `rollout_percent` x 100 buckets. Raising the percentage only adds users;
nobody who had the feature loses it. Requests without a user (no token) get a flag only when
it is rolled out to everyone (100 %): there is no one to keep a stable answer for.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from packaging.version import InvalidVersion, Version

from bankcore.api.exceptions import BankError
from bankcore.audit import audit_record
from bankcore.models import AppPlatform, AppVersionPolicy, FeatureFlag

ROLLOUT_BUCKETS = 10_000
PLATFORMS = tuple(AppPlatform.values)


class InvalidAppVersion(BankError):
    status_code = 400
    code = "invalid_request"
    default_message = "The app version is not a version number like 1.2.3."


class UpgradeRequired(BankError):
    status_code = 426
    code = "upgrade_required"
    default_message = "This version of the app is no longer supported. Please update it from the store."


def parse_app_version(raw: str, *, field: str = "version") -> Version:
    """`raw` as a comparable version, or InvalidAppVersion (400, naming `field`)."""
    try:
        return Version(raw.strip())
    except InvalidVersion:
        raise InvalidAppVersion(details={field: ["Not a version number like 1.2.3."]}) from None


@dataclass(frozen=True)
class PolicySnapshot:
    platform: str
    min_supported: Version
    min_supported_version: str
    latest_version: str
    store_url: str


@dataclass(frozen=True)
class FlagSnapshot:
    name: str
    enabled: bool
    rollout_percent: int
    platform: str
    min_app_version: Version | None


@dataclass(frozen=True)
class _Snapshot:
    policies: dict[str, PolicySnapshot]
    flags: tuple[FlagSnapshot, ...]
    taken_at: float


_cache_lock = threading.Lock()
_cached: _Snapshot | None = None


def _lenient_version(raw: str) -> Version | None:
    try:
        return Version(raw) if raw else None
    except InvalidVersion:  # the admin validates; a bad stored value filters nobody rather than failing requests
        return None


def _load() -> _Snapshot:
    policies = {}
    for policy in AppVersionPolicy.objects.all():
        minimum = _lenient_version(policy.min_supported_version)
        if minimum is None:
            continue
        policies[policy.platform] = PolicySnapshot(
            platform=policy.platform,
            min_supported=minimum,
            min_supported_version=policy.min_supported_version,
            latest_version=policy.latest_version,
            store_url=policy.store_url,
        )
    flags = tuple(
        FlagSnapshot(
            name=flag.name,
            enabled=flag.enabled,
            rollout_percent=flag.rollout_percent,
            platform=flag.platform,
            min_app_version=_lenient_version(flag.min_app_version),
        )
        for flag in FeatureFlag.objects.order_by("name")
    )
    return _Snapshot(policies=policies, flags=flags, taken_at=time.monotonic())


def _snapshot() -> _Snapshot:
    global _cached
    current = _cached
    ttl = float(getattr(settings, "APP_CONFIG_CACHE_SECONDS", 5))
    if current is not None and time.monotonic() - current.taken_at < ttl:
        return current
    with _cache_lock:
        current = _cached
        if current is None or time.monotonic() - current.taken_at >= ttl:
            current = _cached = _load()
    return current


def app_config_cache_clear() -> None:
    """Forget this process's copy (other processes refresh within APP_CONFIG_CACHE_SECONDS)."""
    global _cached
    _cached = None


def version_policy(platform: str) -> PolicySnapshot | None:
    return _snapshot().policies.get(platform)


def upgrade_check(*, platform: str, version: str) -> None:
    """Raise UpgradeRequired (426, `details.store_url`) if `version` is below `platform`'s minimum.

    An unknown platform, or one without a policy, is never refused. A version that is not a
    version number raises InvalidAppVersion (400).
    """
    policy = version_policy(platform)
    if policy is None:
        return
    if parse_app_version(version, field="X-App-Version") < policy.min_supported:
        raise UpgradeRequired(
            details={
                "store_url": policy.store_url,
                "min_supported_version": policy.min_supported_version,
                "latest_version": policy.latest_version,
            }
        )


def rollout_bucket(*, flag: str, user_id: Any) -> int:
    """The user's place 0..9999 in `flag`'s rollout: the same every time, independent between flags."""
    digest = hashlib.sha256(f"{flag}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % ROLLOUT_BUCKETS


def flag_is_on(flag: FlagSnapshot, *, user_id: Any, platform: str | None, version: Version | None) -> bool:
    """Whether `flag` is on for this user (None: anonymous), platform and app version."""
    if not flag.enabled:
        return False
    if flag.platform and flag.platform != platform:
        return False
    if flag.min_app_version is not None and (version is None or version < flag.min_app_version):
        return False
    if flag.rollout_percent >= 100:
        return True
    if user_id is None:
        return False
    return rollout_bucket(flag=flag.name, user_id=user_id) < flag.rollout_percent * (ROLLOUT_BUCKETS // 100)


def app_config(*, platform: str, version: str | None, user: Any = None) -> dict[str, Any]:
    """The app-config answer for `platform` (one of PLATFORMS) at `version` (optional) and `user`
    (None or anonymous: only flags rolled out to everyone).

    `force_update` is true when `version` is below the platform's minimum. Without a policy for
    the platform the versions and store URL are null and nothing is forced.
    """
    parsed = parse_app_version(version) if version else None
    snapshot = _snapshot()
    policy = snapshot.policies.get(platform)
    user_id = user.pk if getattr(user, "is_authenticated", False) else None
    return {
        "min_supported_version": policy.min_supported_version if policy else None,
        "latest_version": policy.latest_version if policy else None,
        "force_update": bool(policy and parsed is not None and parsed < policy.min_supported),
        "store_url": policy.store_url if policy else None,
        "flags": {
            flag.name: flag_is_on(flag, user_id=user_id, platform=platform, version=parsed) for flag in snapshot.flags
        },
    }


# --- staff changes (the admin calls these) ----------------------------------------------------


def _check_version(raw: str, field: str) -> str:
    parse_app_version(raw, field=field)
    return raw.strip()


def version_policy_set(
    *, platform: str, min_supported_version: str, latest_version: str, store_url: str, actor: Any
) -> AppVersionPolicy:
    """Create or change `platform`'s policy and audit it (`app_config.version_policy_set`, with the
    values before and after). Atomic. Raises InvalidAppVersion for a bad version or a minimum
    above the latest."""
    if platform not in PLATFORMS:
        raise BankError(details={"platform": [f"One of {', '.join(PLATFORMS)}."]})
    minimum = _check_version(min_supported_version, "min_supported_version")
    latest = _check_version(latest_version, "latest_version")
    if Version(minimum) > Version(latest):
        raise InvalidAppVersion(
            "The minimum supported version is above the latest.",
            details={"min_supported_version": ["Must not be above latest_version."]},
        )
    with transaction.atomic():
        policy = AppVersionPolicy.objects.select_for_update().filter(platform=platform).first()
        before = None
        if policy is None:
            policy = AppVersionPolicy(platform=platform)
        else:
            before = {
                "min_supported_version": policy.min_supported_version,
                "latest_version": policy.latest_version,
                "store_url": policy.store_url,
            }
        policy.min_supported_version = minimum
        policy.latest_version = latest
        policy.store_url = store_url
        policy.save()
        after = {"min_supported_version": minimum, "latest_version": latest, "store_url": store_url}
        audit_record(
            action="app_config.version_policy_set",
            actor=actor,
            target=policy,
            details={"platform": platform, "before": before, "after": after},
        )
        transaction.on_commit(app_config_cache_clear)
    return policy


def feature_flag_set(
    *,
    name: str,
    enabled: bool,
    rollout_percent: int,
    actor: Any,
    platform: str = "",
    min_app_version: str = "",
    description: str = "",
) -> FeatureFlag:
    """Create or change the flag `name` and audit it (`app_config.feature_flag_set`, before and after).
    Atomic. Raises BankError (400) for a percentage outside 0-100, an unknown platform or a bad version."""
    if not 0 <= rollout_percent <= 100:
        raise BankError(details={"rollout_percent": ["Between 0 and 100."]})
    if platform and platform not in PLATFORMS:
        raise BankError(details={"platform": [f"Empty or one of {', '.join(PLATFORMS)}."]})
    minimum = _check_version(min_app_version, "min_app_version") if min_app_version.strip() else ""
    fields = ("enabled", "rollout_percent", "platform", "min_app_version", "description")
    with transaction.atomic():
        flag = FeatureFlag.objects.select_for_update().filter(name=name).first()
        before = None
        if flag is None:
            flag = FeatureFlag(name=name)
        else:
            before = {field: getattr(flag, field) for field in fields}
        flag.enabled = enabled
        flag.rollout_percent = rollout_percent
        flag.platform = platform
        flag.min_app_version = minimum
        flag.description = description
        flag.save()
        audit_record(
            action="app_config.feature_flag_set",
            actor=actor,
            target=flag,
            details={"name": name, "before": before, "after": {field: getattr(flag, field) for field in fields}},
        )
        transaction.on_commit(app_config_cache_clear)
    return flag
