"""The beat sweep that recovers from crashes: lost enqueues, in-doubt sends, stalled fan-outs."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from notifications import metrics
from notifications.models import Delivery, IncidentUpdate
from notifications.services.delivery import CHANNELS
from notifications.services.enqueue import deliveries_enqueue, enqueue_fanout, enqueue_safely

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    requeued: int
    given_up: int
    fanouts_resumed: int
    resent: int = 0  # in-doubt sends handed back for a resend with the same idempotency key


def notifications_sweep(*, stuck_after: float | None = None, batch: int = 10_000) -> SweepResult:
    """Recover from crashes (run by beat every minute; idempotent, safe to run concurrently).

    - queued/failed rows overdue by `stuck_after` seconds are enqueued again (the claim
      in `delivery_send` makes a duplicate task harmless);
    - rows left `sending` past their lease (worker died mid-send, outcome unknown) are
      re-sent with the same idempotency key on channels where the provider dedupes
      (NOTIFICATIONS_RESEND_UNKNOWN_OUTCOME, SMS and push by default), and become dead
      letters on the others (e-mail by default, at most once) or after max attempts;
    - incident fan-outs with no progress for `stuck_after` seconds are resumed.
    """
    stuck_after = settings.NOTIFICATIONS_STUCK_AFTER_SECONDS if stuck_after is None else stuck_after
    now = timezone.now()
    resent = _resend_unknown_outcomes(now=now, batch=batch)
    given_up = 0
    for channel in CHANNELS:
        dead = Delivery.objects.filter(status=Delivery.Status.SENDING, lease_until__lt=now, channel=channel).update(
            status=Delivery.Status.DEAD,
            lease_until=None,
            updated_at=now,
            last_error=UNKNOWN_OUTCOME_DEAD,
        )
        if dead:
            metrics.UNKNOWN_OUTCOME.labels(channel=channel, action="dead").inc(dead)
            metrics.DEAD.labels(channel=channel).inc(dead)
        given_up += dead
    if given_up:
        logger.warning("notifications sweep: %d in-doubt deliveries dead-lettered", given_up)
    # `updated_at` is bumped on each re-enqueue, so a long backlog that is merely waiting
    # in the broker is re-enqueued at most once per `stuck_after`, not on every sweep.
    cutoff = now - timedelta(seconds=stuck_after)
    overdue = (
        Delivery.objects.filter(
            status__in=[Delivery.Status.QUEUED, Delivery.Status.FAILED],
            next_attempt_at__lte=cutoff,
            updated_at__lte=cutoff,
        )
        .exclude(pk__in=resent)
        .order_by("next_attempt_at")
    )
    ids = list(overdue.values_list("pk", flat=True)[:batch])
    if ids:
        Delivery.objects.filter(pk__in=ids, status__in=[Delivery.Status.QUEUED, Delivery.Status.FAILED]).update(
            updated_at=now
        )
        deliveries_enqueue(delivery_ids=ids)
    stalled = list(
        IncidentUpdate.objects.filter(
            fanout_status=IncidentUpdate.FanoutStatus.RUNNING,
            fanout_heartbeat_at__lte=now - timedelta(seconds=stuck_after),
        ).values_list("pk", flat=True)
    )
    for update_id in stalled:
        enqueue_fanout(update_id)
    return SweepResult(requeued=len(ids), given_up=given_up, fanouts_resumed=len(stalled), resent=len(resent))


UNKNOWN_OUTCOME_DEAD = (
    "worker lost while sending; outcome unknown, not resent automatically (this channel has no "
    "idempotency: at most once). Resend from the admin if the customer did not receive it."
)
UNKNOWN_OUTCOME_RESENT = (
    "worker lost while sending; outcome unknown, re-sent with the same idempotency key (the provider dedupes)"
)


def _resend_unknown_outcomes(*, now: datetime, batch: int) -> list[UUID]:
    """Hand in-doubt sends on idempotent channels back to the queue, due now (see the sweep).

    Rows are locked with SKIP LOCKED, so concurrent sweeps split the work; the resend
    reuses the row, hence its delivery key, Idempotency-Key and message key.
    """
    channels = [c for c, on in settings.NOTIFICATIONS_RESEND_UNKNOWN_OUTCOME.items() if on]
    if not channels:
        return []
    with transaction.atomic():
        rows = list(
            Delivery.objects.filter(
                status=Delivery.Status.SENDING,
                lease_until__lt=now,
                channel__in=channels,
                attempts__lt=settings.NOTIFICATIONS_MAX_ATTEMPTS,
            )
            .select_for_update(skip_locked=True)
            .values_list("pk", "channel")[:batch]
        )
        ids = [pk for pk, _ in rows]
        if ids:
            Delivery.objects.filter(pk__in=ids).update(
                status=Delivery.Status.FAILED,
                lease_until=None,
                next_attempt_at=now,
                updated_at=now,
                unknown_outcome_resends=F("unknown_outcome_resends") + 1,
                last_error=UNKNOWN_OUTCOME_RESENT,
            )
    if ids:
        logger.warning("notifications sweep: %d in-doubt deliveries re-sent with their idempotency key", len(ids))
        for channel, count in Counter(channel for _, channel in rows).items():
            metrics.UNKNOWN_OUTCOME.labels(channel=channel, action="resent").inc(count)
        enqueue_safely(ids)
    return ids
