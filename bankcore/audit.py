"""Writing and verifying the audit log. The only way rows enter AuditEvent."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.utils import timezone

from bankcore.api.logging import current_request_meta
from bankcore.models import MAX_AUDIT_CHAINS, AuditChainHead, AuditEvent


def canonical_content(event: AuditEvent) -> bytes:
    """The bytes the hash covers: every field but the hashes, in a fixed order."""
    # The id is left out: it is not known before the insert, and rows are never
    # updated. Order is proven by each row naming its predecessor's hash instead.
    content = {
        "chain": event.chain,
        "created_at": event.created_at.isoformat(),
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_content(event)).hexdigest()


GENESIS_HASH = "0" * 64  # what the first row of every chain names as its predecessor


def configured_chains() -> int:
    """How many chains appends are spread over (AUDIT_CHAINS, within 1..MAX_AUDIT_CHAINS)."""
    return min(max(int(getattr(settings, "AUDIT_CHAINS", 1)), 1), MAX_AUDIT_CHAINS)


def _connection_chain() -> int:
    """The chain this database connection appends to.

    Fixed per connection (PostgreSQL backend pid), so one transaction only ever locks one
    chain head (no lock-order deadlocks between heads), and concurrent connections
    mostly land on different chains.
    """
    chains = configured_chains()
    db = connections[DEFAULT_DB_ALIAS]
    if chains == 1:
        return 1
    db.ensure_connection()
    return db.connection.get_backend_pid() % chains + 1


_JSON_SCALARS = (str, int, bool, type(None))


def _json_safe(details: dict[str, Any] | None) -> dict[str, Any]:
    """`details` as it reads back from the JSON column (keys and values made JSON types).
    A flat dict of strings and numbers already is; anything else takes a round trip."""
    if not details:
        return {}
    if all(type(key) is str and type(value) in _JSON_SCALARS for key, value in details.items()):
        return dict(details)
    return json.loads(json.dumps(details, default=str))


def audit_append_call(event: AuditEvent) -> tuple[str, list[Any]]:
    """The `audit_append()` call (migration 0003) that stores `event`, and its parameters, for
    a caller that folds it into a statement of its own (the ledger posting); pass the row
    that call returns to `audit_appended`."""
    return "audit_append(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)", [
        event.chain,
        canonical_content(event),
        event.created_at,
        event.actor_id,
        event.actor_label,
        event.action,
        event.target_type,
        event.target_id,
        event.ip,
        event.user_agent,
        event.request_id,
        json.dumps(event.details),
    ]


def audit_appended(event: AuditEvent, row: tuple[int, str, str]) -> None:
    """Record what `audit_append()` returned (id, prev_hash, hash) on the event."""
    event.id, event.prev_hash, event.hash = row
    event._state.adding = False
    event._state.db = connection.alias


def audit_write(event: AuditEvent) -> None:
    """Chain `event` (from `audit_event`) to its chain's head and store it, in the caller's
    transaction. One round trip with a cached plan: lock the chain head, chain, insert, move
    the head."""
    # Joins the caller's transaction (no savepoint: nothing in here is caught and retried);
    # outside one it is its own transaction.
    with transaction.atomic(savepoint=False):
        call, params = audit_append_call(event)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {call}", params)  # noqa: S608 - a fixed call; values are bound
            audit_appended(event, cursor.fetchone())


def audit_event(
    *,
    action: str,
    actor: Any = None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """An event to append (not yet stored or chained), on this connection's chain.

    Client IP, user agent and request id come from the current request, if any.
    """
    meta = current_request_meta()
    if target is not None:
        target_type = target_type or target._meta.label
        target_id = target_id or str(target.pk)
    actor_user = actor if getattr(actor, "is_authenticated", False) else None
    event = AuditEvent(
        chain=_connection_chain(),
        created_at=timezone.now(),
        actor_id=actor_user.pk if actor_user is not None else None,
        actor_label=str(getattr(actor_user, "email", "") or (actor if isinstance(actor, str) else "")),
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        ip=meta.ip,
        user_agent=meta.user_agent,
        request_id=meta.request_id if meta.request_id != "-" else "",
        details=_json_safe(details),
    )
    if actor_user is not None:  # the instance at hand, without the relation descriptor's checks
        AuditEvent.actor.field.set_cached_value(event, actor_user)
    return event


def audit_record(
    *,
    action: str,
    actor: Any = None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction.

    Atomic with the caller's change (same transaction) and serialised by a row lock on
    the head of this connection's chain; call it last in a transaction to hold that lock
    briefly. Client IP, user agent and request id come from the current request, if any.
    """
    event = audit_event(
        action=action, actor=actor, target=target, target_type=target_type, target_id=target_id, details=details
    )
    audit_write(event)
    return event


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


@dataclass(frozen=True)
class ChainMark:
    """Where one chain stood: its newest event, that event's hash, and how many events it held.

    What a checkpoint (bankcore/audit_checkpoint.py) anchors outside the database.
    """

    chain: int
    last_event_id: int
    last_hash: str
    row_count: int


def link_break(prev_hash: str, event: AuditEvent) -> ChainBreak | None:
    """Why `event` does not follow a row whose hash is `prev_hash`, or None when it does."""
    if event.prev_hash != prev_hash:
        return ChainBreak(event.id, "prev_hash does not match the previous row's hash (row missing or edited)")
    if chain_hash(prev_hash, event) != event.hash:
        return ChainBreak(event.id, "content does not match its hash (row edited)")
    return None


def _mark_break(mark: ChainMark, event: AuditEvent, row_count: int) -> ChainBreak | None:
    """Why the chain's row at the checkpointed event differs from what the checkpoint anchored."""
    if event.hash != mark.last_hash:
        return ChainBreak(
            event.id,
            f"differs from the last checkpoint: chain {mark.chain} was rewritten at or before this row "
            f"(hash {event.hash[:12]}..., checkpoint {mark.last_hash[:12]}...)",
        )
    if row_count != mark.row_count:
        return ChainBreak(
            event.id,
            f"chain {mark.chain} holds {row_count} rows up to this row, its last checkpoint {mark.row_count} "
            "(rows removed or inserted)",
        )
    return None


def verify_chain(batch_size: int = 5000, *, checkpoint: Iterable[ChainMark] = ()) -> Iterator[int | ChainBreak]:
    """Walk every chain in id order; yield the number of rows checked so far, or the first break.

    Every chain 1..AUDIT_CHAINS is walked, and any other that a head, a row or the checkpoint
    names. Each row must name its predecessor's hash and match its own; each chain's head must
    point at its newest row. Against `checkpoint` (the heads last anchored outside the database)
    each chain must still hold the checkpointed event, with the checkpointed hash, as its
    row_count-th row: a chain that is gone, shorter (tail deleted, head rewound) or re-chained
    from an edited row breaks, though it may be consistent in itself. Takes no locks: rows
    appended while it runs are walked too, or left for the next run.
    """
    marks = {mark.chain: mark for mark in checkpoint}
    chains = set(range(1, configured_chains() + 1)) | set(marks)
    chains |= set(AuditChainHead.objects.values_list("id", flat=True))
    chains |= set(AuditEvent.objects.values_list("chain", flat=True).distinct())
    checked = 0
    for chain in sorted(chains):
        mark = marks.get(chain)
        prev_hash = GENESIS_HASH
        last_id = 0
        row_count = 0
        while True:
            batch = list(AuditEvent.objects.filter(chain=chain, id__gt=last_id).order_by("id")[:batch_size])
            if not batch:
                # Rows appended after the query moved the head on: walk them too. A head behind
                # the newest row, or no head, means rows were deleted and the head rewound.
                head = AuditChainHead.objects.filter(id=chain).first()
                if head is not None and head.last_event_id > last_id:
                    if AuditEvent.objects.filter(chain=chain, id__gt=last_id).exists():
                        continue
                    yield ChainBreak(head.last_event_id, f"the newest rows of chain {chain} are missing")
                    return
                break
            for event in batch:
                if mark is not None and last_id < mark.last_event_id < event.id:
                    yield ChainBreak(
                        mark.last_event_id,
                        f"chain {chain} no longer holds this row, the newest its last checkpoint anchored "
                        "(rows deleted)",
                    )
                    return
                broken = link_break(prev_hash, event)
                row_count += 1
                if broken is None and mark is not None and event.id == mark.last_event_id:
                    broken = _mark_break(mark, event, row_count)
                if broken is not None:
                    yield broken
                    return
                prev_hash = event.hash
                last_id = event.id
                checked += 1
            yield checked
        if mark is not None and last_id < mark.last_event_id:
            if last_id == 0:
                reason = f"chain {chain} is missing; its last checkpoint anchored {mark.row_count} rows up to this row"
            else:
                reason = (
                    f"chain {chain} is shorter than its last checkpoint: it ends at #{last_id}, the checkpoint "
                    f"anchored {mark.row_count} rows up to this row (tail deleted, head rewound)"
                )
            yield ChainBreak(mark.last_event_id, reason)
            return
        if last_id and (head is None or head.last_event_id != last_id or head.last_hash != prev_hash):
            yield ChainBreak(last_id, f"the head of chain {chain} does not point at its newest row")
            return
