"""What a refused money movement must leave exactly as it was.

    before = ledger_snapshot()
    response = send(...)                       # refused
    assert_refusal_moved_nothing(before, response, key=key)

The snapshot covers every row a posting writes or a refusal might leave behind: balances
(customer and internal accounts), journal rows, entries, the rolling-limit usage, the
alerts outbox, audit events, step-up tokens (a refused transfer must not spend one) and
idempotency keys.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from accounts.models import BankAccount, StepUpToken
from bankcore.models import AuditEvent, IdempotencyKey
from transactions.models import Entry, LedgerNotice, LimitUsage, Transaction


@dataclass(frozen=True)
class LedgerSnapshot:
    balances: dict[str, int]
    journal: list[str]
    entries: list[int]
    limit_usage: list[tuple[Any, ...]]
    notices: list[int]
    audit_events: list[int]
    step_up_tokens: dict[str, Any]
    idempotency_keys: dict[tuple[str, str], tuple[Any, ...]]


def ledger_snapshot() -> LedgerSnapshot:
    return LedgerSnapshot(
        balances={str(pk): balance for pk, balance in BankAccount.objects.values_list("pk", "balance")},
        journal=[str(pk) for pk in Transaction.objects.order_by("pk").values_list("pk", flat=True)],
        entries=list(Entry.objects.order_by("pk").values_list("pk", flat=True)),
        limit_usage=list(LimitUsage.objects.order_by("pk").values_list("user_id", "currency", "minute", "amount")),
        notices=list(LedgerNotice.objects.order_by("pk").values_list("pk", flat=True)),
        audit_events=list(AuditEvent.objects.order_by("pk").values_list("pk", flat=True)),
        step_up_tokens={str(pk): used_at for pk, used_at in StepUpToken.objects.values_list("pk", "used_at")},
        idempotency_keys={
            (str(user_id), key): rest
            for user_id, key, *rest in IdempotencyKey.objects.values_list(
                "user_id", "key", "state", "claim_token", "response_status", "response_body"
            )
        },
    )


def assert_unchanged(before: LedgerSnapshot, after: LedgerSnapshot, *, ignore: tuple[str, ...] = ()) -> None:
    """Every part of the snapshot is as it was (parts named in `ignore` aside); the first
    difference is named in the failure."""
    for part in fields(LedgerSnapshot):
        if part.name not in ignore:
            assert getattr(after, part.name) == getattr(before, part.name), f"{part.name} changed"


def assert_refusal_moved_nothing(before: LedgerSnapshot, response: Any, *, key: str) -> None:
    """A refused request under Idempotency-Key `key` changed nothing but, for a business-rule
    refusal (422), the key's stored answer - exactly the response given, so a retry replays it.
    Any other refusal (400, 403, 404, 503) leaves no key row: the client may retry with it."""
    after = ledger_snapshot()
    assert_unchanged(before, after, ignore=("idempotency_keys",))
    new = {name: row for name, row in after.idempotency_keys.items() if name not in before.idempotency_keys}
    assert {name: row for name, row in after.idempotency_keys.items() if name in before.idempotency_keys} == (
        before.idempotency_keys
    ), "an earlier idempotency key changed"
    if response.status_code == 422:
        assert len(new) == 1, f"expected one stored answer, found {len(new)}"
        [((_, stored_key), (state, _, status, body))] = new.items()
        assert stored_key == key
        assert (state, status, body) == (IdempotencyKey.State.COMPLETED, 422, response.json())
    else:
        assert new == {}, f"a {response.status_code} answer must not keep the key"
