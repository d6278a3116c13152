"""Anchoring the audit log outside the database: signed checkpoints of the chains' heads.

The hash chains prove that no row was edited or removed *between* rows, but someone who can
write to the database as its owner can delete a chain's newest rows and rewind its head (or
re-chain it from an edited row) and leave a chain that is consistent in itself. A checkpoint
records, for every chain, its newest event id, that event's hash and its row count, with the
time, HMAC-SHA256-signed with ``AUDIT_HMAC_KEY`` (a key the database never holds), and stores
it outside the database: a directory (``AUDIT_CHECKPOINT_DIR``) or an S3-compatible bucket
(``AUDIT_CHECKPOINT_S3_BUCKET``). ``verify_audit_log`` then fails when a chain is shorter than,
or differs from, the latest checkpoint.

A new checkpoint is written only when every chain still extends the previous one, so a
tampered chain is never anchored over the evidence. Checkpoints are never overwritten.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from bankcore.audit import GENESIS_HASH, ChainMark, link_break
from bankcore.models import MAX_AUDIT_CHAINS, AuditChainHead, AuditEvent

logger = logging.getLogger(__name__)

FORMAT = "bankcore-audit-checkpoint/1"
# <UTC time to the microsecond>-<random>.json: names sort by time, and two writers in the same
# microsecond still never pick the same name.
NAME_RE = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}\.json$")


class CheckpointError(Exception):
    """Base of the checkpoint errors an operator must look at."""


class CheckpointInvalid(CheckpointError):
    """A stored checkpoint cannot be read or fails its signature (altered, or signed with a key not configured)."""


class CheckpointRefused(CheckpointError):
    """The chains no longer extend the latest checkpoint, so no new one was written."""


@dataclass(frozen=True)
class AuditCheckpoint:
    """One verified checkpoint: the chains' heads at `created_at`, as signed."""

    name: str
    created_at: datetime
    chains: tuple[ChainMark, ...]
    key_id: str
    location: str

    @property
    def row_count(self) -> int:
        return sum(mark.row_count for mark in self.chains)


# --- keys and signatures ----------------------------------------------------------------


def hmac_keys() -> tuple[bytes, ...]:
    """The configured AUDIT_HMAC_KEY keys, newest first (re-read so settings overrides apply)."""
    configured = settings.AUDIT_HMAC_KEY
    if isinstance(configured, str):
        configured = configured.split(",")
    keys = tuple(key.strip().encode() for key in configured if key.strip())
    if not keys:
        raise ImproperlyConfigured("AUDIT_HMAC_KEY holds no key.")
    return keys


def key_id(key: bytes) -> str:
    """A short public name for a key, so a report can say which key signed (never the key itself)."""
    return hmac.new(key, b"bankcore-audit-checkpoint-key-id", hashlib.sha256).hexdigest()[:16]


def _signed_bytes(document: dict[str, Any]) -> bytes:
    unsigned = {field: value for field, value in document.items() if field != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def _sign(document: dict[str, Any]) -> dict[str, Any]:
    key = hmac_keys()[0]
    document = {**document, "key_id": key_id(key)}
    document["signature"] = hmac.new(key, _signed_bytes(document), hashlib.sha256).hexdigest()
    return document


def parse_checkpoint(name: str, data: bytes, *, location: str = "") -> AuditCheckpoint:
    """The checkpoint stored as `name`, once its signature verifies with one of the configured keys.

    Raises CheckpointInvalid when it cannot be read, is altered, names another file, or was
    signed with a key AUDIT_HMAC_KEY no longer holds.
    """
    try:
        document = json.loads(data)
        signature = str(document["signature"])
        signed = _signed_bytes(document)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointInvalid(f"Audit checkpoint {name} cannot be read: {exc}") from None
    keys = hmac_keys()
    if not any(hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).hexdigest(), signature) for key in keys):
        signer = str(document.get("key_id", ""))
        if signer and signer not in {key_id(key) for key in keys}:
            raise CheckpointInvalid(
                f"Audit checkpoint {name} has an invalid signature: it names key {signer}, which AUDIT_HMAC_KEY "
                "does not hold (keep old keys after the new one when rotating), or it was altered."
            )
        raise CheckpointInvalid(f"Audit checkpoint {name} has an invalid signature: it was altered after signing.")
    try:
        if document["format"] != FORMAT or document["name"] != name:
            raise ValueError(f"format {document['format']!r}, name {document['name']!r}")
        chains = tuple(
            ChainMark(
                chain=int(entry["chain"]),
                last_event_id=int(entry["last_event_id"]),
                last_hash=str(entry["last_hash"]),
                row_count=int(entry["row_count"]),
            )
            for entry in document["chains"]
        )
        created_at = datetime.fromisoformat(document["created_at"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointInvalid(f"Audit checkpoint {name} is signed but not a checkpoint of this log: {exc}") from None
    return AuditCheckpoint(
        name=name, created_at=created_at, chains=chains, key_id=str(document["key_id"]), location=location
    )


# --- storage ----------------------------------------------------------------------------


class CheckpointStore(Protocol):
    """Where checkpoints are kept, outside the database."""

    location: str

    def put_new(self, name: str, data: bytes) -> str:
        """Store `data` as `name`, never replacing an existing checkpoint; returns where it went."""
        ...

    def latest(self) -> tuple[str, bytes] | None:
        """The newest checkpoint's name and content, or None when there is none."""
        ...


class DirectoryCheckpointStore:
    """Checkpoints as files in a directory (a mount the database host cannot write, ideally)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)

    def put_new(self, name: str, data: bytes) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / name
        # Atomic and never overwriting: a complete temp file, synced, then hard-linked to its
        # name (link fails if the name exists; rename would replace it).
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o444)
            os.link(temp, final)
        finally:
            os.unlink(temp)
        directory_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
        return str(final)

    def latest(self) -> tuple[str, bytes] | None:
        if not self.directory.is_dir():
            return None
        names = [entry.name for entry in os.scandir(self.directory) if NAME_RE.match(entry.name)]
        if not names:
            return None
        name = max(names)
        return name, (self.directory / name).read_bytes()


class S3CheckpointStore:
    """Checkpoints as objects in an S3-compatible bucket (best with object lock / versioning on)."""

    def __init__(self, *, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client = client if client is not None else _s3_client()
        self.location = f"s3://{bucket}/{prefix}"

    def put_new(self, name: str, data: bytes) -> str:
        # If-None-Match: the store refuses to replace an object that already has this key.
        self.client.put_object(
            Bucket=self.bucket, Key=self.prefix + name, Body=data, ContentType="application/json", IfNoneMatch="*"
        )
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def latest(self) -> tuple[str, bytes] | None:
        newest = ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"][len(self.prefix) :]
                if NAME_RE.match(name) and name > newest:
                    newest = name
        if not newest:
            return None
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + newest)["Body"].read()
        return newest, body


def _s3_client() -> Any:
    import boto3  # only where S3 is configured
    from botocore.config import Config

    return boto3.client(
        "s3",
        # Bounded waits: a hung endpoint fails the call (and the task) instead of holding it.
        config=Config(
            connect_timeout=settings.S3_CONNECT_TIMEOUT,
            read_timeout=settings.S3_READ_TIMEOUT,
            retries={"mode": "standard", "max_attempts": 3},
        ),
        endpoint_url=settings.AUDIT_CHECKPOINT_S3_ENDPOINT_URL or None,
        region_name=settings.AUDIT_CHECKPOINT_S3_REGION or None,
        aws_access_key_id=settings.AUDIT_CHECKPOINT_S3_ACCESS_KEY_ID or None,
        aws_secret_access_key=settings.AUDIT_CHECKPOINT_S3_SECRET_ACCESS_KEY or None,
    )


def checkpoint_store() -> CheckpointStore:
    """The configured store: the S3 bucket when AUDIT_CHECKPOINT_S3_BUCKET is set, else AUDIT_CHECKPOINT_DIR."""
    if settings.AUDIT_CHECKPOINT_S3_BUCKET:
        return S3CheckpointStore(bucket=settings.AUDIT_CHECKPOINT_S3_BUCKET, prefix=settings.AUDIT_CHECKPOINT_S3_PREFIX)
    return DirectoryCheckpointStore(settings.AUDIT_CHECKPOINT_DIR)


# --- services ---------------------------------------------------------------------------


def latest_checkpoint(*, store: CheckpointStore | None = None) -> AuditCheckpoint | None:
    """The newest stored checkpoint, its signature verified; None when none was written yet.

    Raises CheckpointInvalid when the newest one fails its signature: an altered or forged
    checkpoint is reported, never skipped for an older one.
    """
    store = store or checkpoint_store()
    found = store.latest()
    if found is None:
        return None
    name, data = found
    return parse_checkpoint(name, data, location=store.location)


def _extend(previous: ChainMark, *, batch_size: int, progress: Callable[[int], None] | None) -> ChainMark:
    """The chain's mark now, proving on the way that it still extends `previous` (call in the snapshot)."""
    chain = previous.chain
    head = AuditChainHead.objects.filter(id=chain).first()
    if previous.last_event_id:
        anchored = AuditEvent.objects.filter(chain=chain, id=previous.last_event_id).values_list("hash", flat=True)
        if head is None:
            raise CheckpointRefused(
                f"chain {chain} is missing; the last checkpoint anchored it at #{previous.last_event_id}"
            )
        if list(anchored) != [previous.last_hash]:
            raise CheckpointRefused(
                f"chain {chain} no longer holds event #{previous.last_event_id} as the last checkpoint anchored it "
                "(deleted or rewritten)"
            )
    if head is None:
        if AuditEvent.objects.filter(chain=chain).exists():
            raise CheckpointRefused(f"chain {chain} has rows but no head")
        return previous  # never written to
    last_id, prev_hash, walked = previous.last_event_id, previous.last_hash, 0
    while True:
        batch = list(AuditEvent.objects.filter(chain=chain, id__gt=last_id).order_by("id")[:batch_size])
        if not batch:
            break
        for event in batch:
            broken = link_break(prev_hash, event)
            if broken is not None:
                raise CheckpointRefused(f"chain {chain} is broken at event #{broken.event_id}: {broken.reason}")
            last_id, prev_hash, walked = event.id, event.hash, walked + 1
        if progress is not None:
            progress(len(batch))
    if (head.last_event_id, head.last_hash) != (last_id, prev_hash):
        raise CheckpointRefused(
            f"the head of chain {chain} (#{head.last_event_id}) does not point at its newest row (#{last_id})"
        )
    return ChainMark(chain=chain, last_event_id=last_id, last_hash=prev_hash, row_count=previous.row_count + walked)


def audit_checkpoint_write(
    *,
    store: CheckpointStore | None = None,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> AuditCheckpoint:
    """Anchor every audit chain outside the database: a new signed checkpoint of their heads.

    Guarantees: the heads, their hashes and row counts come from one REPEATABLE READ snapshot,
    so the checkpoint is a true prefix of every chain; no locks are taken (appends go on). Each
    chain is proven to extend the latest checkpoint (the anchored row still there with its hash,
    every row since linked to it) before anything is written: otherwise CheckpointRefused (or
    CheckpointInvalid for a bad latest checkpoint) and nothing is stored. Only the rows since
    the last checkpoint are read. Signed with the newest AUDIT_HMAC_KEY; stored under a new
    time-sortable name, atomically, never over an existing one. Call it outside a transaction.
    `progress` is called with the number of rows checked in each batch.
    """
    store = store or checkpoint_store()
    previous = latest_checkpoint(store=store)
    if connection.in_atomic_block:
        raise TransactionManagementError("audit_checkpoint_write needs its own transaction (its own snapshot).")
    anchored = {mark.chain: mark for mark in previous.chains} if previous else {}
    with transaction.atomic():
        with connection.cursor() as cursor:
            # The first statement of the transaction, so the whole read is one snapshot.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        created_at = timezone.now()
        # Every possible chain (a few index probes for the unused ones), not a DISTINCT over the log.
        chains = set(anchored) | set(range(1, MAX_AUDIT_CHAINS + 1))
        marks = tuple(
            _extend(
                anchored.get(chain) or ChainMark(chain=chain, last_event_id=0, last_hash=GENESIS_HASH, row_count=0),
                batch_size=batch_size,
                progress=progress,
            )
            for chain in sorted(chains)
        )
    created_at = created_at.astimezone(UTC)
    name = f"{created_at:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}.json"
    document = _sign(
        {
            "format": FORMAT,
            "name": name,
            "created_at": created_at.isoformat(),
            "chains": [
                {
                    "chain": mark.chain,
                    "last_event_id": mark.last_event_id,
                    "last_hash": mark.last_hash,
                    "row_count": mark.row_count,
                }
                for mark in marks
                if mark.last_event_id  # a chain never written to has nothing to anchor
            ],
        }
    )
    where = store.put_new(name, json.dumps(document, indent=1, sort_keys=True).encode() + b"\n")
    logger.info("audit checkpoint written", extra={"checkpoint": where, "chains": len(document["chains"])})
    return parse_checkpoint(name, json.dumps(document).encode(), location=where)
