"""The only place ledger rows are locked for update.

Global lock order, so concurrent writers never deadlock:
  1. the initiating customer's user row (serialises that customer's rolling limits),
  2. bank accounts, in primary-key order,
  3. the audit chain head (taken last by bankcore.audit.audit_record).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import BankAccount
from transactions.models import Hold


def customer_lock(user_id: Any) -> None:
    """FOR NO KEY UPDATE on the customer's row: rows referencing it can still be inserted."""
    list(get_user_model().objects.filter(pk=user_id).select_for_update(no_key=True).values_list("pk", flat=True))


def bank_accounts_for_update(account_ids: Iterable[UUID], *, ibans: Iterable[str] = ()) -> dict[UUID, BankAccount]:
    """Lock the accounts (by id and/or IBAN) in pk order; each carries `held` = its active, unexpired holds."""
    held = (
        Hold.objects.filter(account=OuterRef("pk"), status=Hold.Status.ACTIVE, expires_at__gt=timezone.now())
        .order_by()
        .values("account")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    rows = (
        BankAccount.objects.filter(Q(pk__in=set(account_ids)) | Q(iban__in=set(ibans)))
        .annotate(held=Coalesce(Subquery(held), Value(0)))
        .select_related("owner")
        .order_by("pk")
        .select_for_update(of=("self",))
    )
    return {row.pk: row for row in rows}
