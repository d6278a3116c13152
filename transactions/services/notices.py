"""Customer alerts for posted money movements, delivered after COMMIT through an outbox.

`notices_queue` runs inside the posting's transaction: it only writes one LedgerNotice
row (cheap, no rendering) and asks for a Celery task once the transaction commits.
`notices_send` (the task, and the sweep for anything the broker lost) turns the row
into notifications with `notifications.services.notify`, exactly once per row.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from notifications.events import Event
from notifications.services import notify
from transactions.models import LedgerNotice, Transaction

logger = logging.getLogger(__name__)
SWEEP_AFTER = timedelta(seconds=30)


def notice(*, user_id: Any, event: Event, context: dict[str, Any], key: str) -> dict[str, Any]:
    """One alert to queue. Context must be customer-safe already (mask account numbers)."""
    return {"user_id": str(user_id), "event": str(event), "context": context, "key": key}


def notices_queue(*, journal: Transaction | None, notices: list[dict[str, Any]]) -> LedgerNotice | None:
    """Record alerts owed by the current transaction; sent after it commits. Call inside it."""
    if not notices:
        return None
    row = LedgerNotice.objects.create(transaction=journal, notices=notices)
    transaction.on_commit(lambda: _enqueue(row.pk))
    return row


def _enqueue(notice_id: int) -> None:
    from transactions.tasks import send_ledger_notices

    try:
        send_ledger_notices.delay(notice_id)
    except Exception:  # a broker hiccup must not fail a committed transfer; the sweep resends
        logger.exception("could not enqueue ledger notice %s; the sweep will send it", notice_id)


def notices_send(*, notice_id: int) -> bool:
    """Turn one outbox row into notifications, once. Returns False if already sent (or gone).

    Atomic: the row is locked (SKIP LOCKED, so a concurrent run just moves on), the
    notifications are recorded and the row marked sent in one transaction.
    """
    with transaction.atomic():
        row = LedgerNotice.objects.select_for_update(skip_locked=True).filter(pk=notice_id, sent_at=None).first()
        if row is None:
            return False
        wanted = {item["user_id"] for item in row.notices}
        users = {str(user.pk): user for user in get_user_model().objects.filter(pk__in=wanted)}
        for item in row.notices:
            user = users.get(item["user_id"])
            if user is not None:
                notify(user=user, event=Event(item["event"]), context=item["context"], key=item["key"])
        row.sent_at = timezone.now()
        row.save(update_fields=["sent_at"])
    return True


def notices_sweep(*, older_than: timedelta = SWEEP_AFTER) -> int:
    """Send every outbox row still unsent after `older_than` (the task was lost). Returns rows sent."""
    stale = LedgerNotice.objects.filter(sent_at=None, created_at__lte=timezone.now() - older_than)
    return sum(notices_send(notice_id=pk) for pk in stale.order_by("created_at").values_list("pk", flat=True)[:1000])
