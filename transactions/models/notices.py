"""Customer alerts owed by posted money movements: an outbox written with the posting."""

from __future__ import annotations

from django.db import models

from transactions.models.ledger import Transaction


class LedgerNotice(models.Model):
    """The alerts one posting owes (sender, recipient, low balance, ...), sent after COMMIT.

    Written in the posting's transaction, so it exists if and only if the money moved;
    a Celery task (enqueued on commit, re-enqueued by a sweep) turns it into
    notifications. Rendering and delivering them never holds the accounts' row locks.
    """

    id = models.BigAutoField(primary_key=True)
    # Never looked up by transaction (and journal rows are never deleted): no index to write.
    transaction = models.ForeignKey(
        Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # [{"user_id": "...", "event": "transfer_sent", "context": {...}, "key": "..."}]
    notices = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["created_at"], condition=models.Q(sent_at__isnull=True), name="ledger_notice_unsent"),
        ]

    def __str__(self) -> str:
        return f"notices #{self.id} ({'sent' if self.sent_at else 'pending'})"
