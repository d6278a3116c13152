"""The one place the push channel reads and retires device push tokens.

Devices belong to accounts (the identity work): `accounts.Device` with a `push_token`
field. Until that model exists these functions find no tokens, so push deliveries end
as dead letters saying "no device" rather than failing silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db.models import Q


@dataclass(frozen=True)
class PushTarget:
    device_id: str
    token: str


def _device_model() -> Any | None:
    try:
        return apps.get_model("accounts", "Device")
    except LookupError:
        return None


def _active_filter(model: Any) -> Q:
    names = {field.name for field in model._meta.get_fields()}
    condition = ~Q(push_token="") & Q(push_token__isnull=False)
    if "revoked_at" in names:
        condition &= Q(revoked_at__isnull=True)
    if "is_active" in names:
        condition &= Q(is_active=True)
    if "push_token_active" in names:
        condition &= Q(push_token_active=True)
    return condition


def active_push_targets(*, user_id: Any) -> list[PushTarget]:
    """The user's devices that can receive push now (not revoked, token present)."""
    model = _device_model()
    if model is None:
        return []
    rows = model.objects.filter(_active_filter(model), user_id=user_id).order_by("pk").values_list("pk", "push_token")
    return [PushTarget(device_id=str(pk), token=token) for pk, token in rows]


def active_push_targets_of(*, user_ids: list[Any]) -> dict[str, list[PushTarget]]:
    """`active_push_targets` of many users (keyed by str(user id)), in one query."""
    model = _device_model()
    targets: dict[str, list[PushTarget]] = {str(user_id): [] for user_id in user_ids}
    if model is None or not user_ids:
        return targets
    rows = (
        model.objects.filter(_active_filter(model), user_id__in=user_ids)
        .order_by("pk")
        .values_list("user_id", "pk", "push_token")
    )
    for user_id, pk, token in rows:
        targets[str(user_id)].append(PushTarget(device_id=str(pk), token=token))
    return targets


def users_with_push(*, user_ids: list[Any]) -> set[Any]:
    """Which of `user_ids` have at least one device that can receive push (one query)."""
    model = _device_model()
    if model is None or not user_ids:
        return set()
    return set(model.objects.filter(_active_filter(model), user_id__in=user_ids).values_list("user_id", flat=True))


def deactivate_push_token(*, device_id: str, token: str) -> bool:
    """Forget `token` on that device after the push service said it is invalid.

    Conditional on the token still being the same, so a token the app re-registered
    meanwhile is kept. Returns whether a row changed.
    """
    model = _device_model()
    if model is None:
        return False
    names = {field.name for field in model._meta.get_fields()}
    changes: dict[str, Any] = {"push_token": ""}
    if "push_token_active" in names:
        changes["push_token_active"] = False
    return bool(model.objects.filter(pk=device_id, push_token=token).update(**changes))
