"""Backups, their restore, retention and the disaster-recovery drill (see the package docstring)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
from django.conf import settings
from django.utils import timezone

from bankcore.backups.crypto import (
    SEGMENT_SIZE,
    BackupCorrupt,
    BackupError,
    backup_keys,
    decrypt_stream,
    encrypt_stream,
    key_id,
    sign_manifest,
    verify_manifest,
)
from bankcore.backups.postgres import (
    Target,
    backup_source,
    database_facts,
    facts_differences,
    live_target,
    pg_tool,
    server_major,
)
from bankcore.backups.storage import BackupStore, StoredBackup, backup_store
from bankcore.maintenance import maintenance_active
from bankcore.models import BackupRecord, DrDrill

logger = logging.getLogger(__name__)

FORMAT = "bankcore-backup/1"
# pg_try_advisory_lock key: one backup at a time per database ("bankback" in ASCII).
BACKUP_LOCK = 0x62616E6B6261636B
READ_SIZE = 1024 * 1024


class BackupRefused(BackupError):
    """The operation was refused before anything was touched (e.g. a restore onto the live database)."""


class BackupNotDue(BackupRefused):
    """A scheduled backup found a good backup newer than its interval: nothing to do."""


# --- backup -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    backup_id: str
    location: str
    size: int
    sha256: str
    created_at: datetime
    seconds: float
    manifest: dict[str, Any]
    facts_seconds: float = 0.0  # of `seconds`: counting and checksumming in the snapshot


def _new_backup_id(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S}Z-{secrets.token_hex(4)}"


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return ""


def backup_create(*, store: BackupStore | None = None, unless_good_since: datetime | None = None) -> BackupResult:
    """Dump the bank's database, encrypted, into the backup store, with its signed manifest.

    Guarantees: the manifest's row counts, checksums, audit heads and migrations are read in the
    very snapshot pg_dump dumps (an exported REPEATABLE READ snapshot), so it describes exactly
    what was dumped; writers are not blocked (pg_dump takes ACCESS SHARE locks only). The dump
    streams from pg_dump through the cipher into the store: memory stays flat. The manifest is
    written last, so a failed run leaves no backup that looks good (its data is deleted, and a
    BackupRecord says why). One backup at a time per database (advisory lock; a second run gets
    BackupRefused). Raises BackupError on any failure; ImproperlyConfigured without keys.

    `unless_good_since`: raise BackupNotDue, under the lock, when a good backup started after it
    (the scheduled run, backup_if_due); a run holds the lock until its record says OK.
    """
    secret = backup_keys()[0]  # no keys: refuse before anything runs
    store = store or backup_store()
    source = backup_source()
    started = time.monotonic()
    try:
        conn = source.connect()
    except psycopg2.Error as exc:
        raise BackupError(f"cannot connect to {source.describe()}: {exc}".strip()) from None
    record: BackupRecord | None = None
    backup_id = ""
    process: subprocess.Popen[bytes] | None = None
    data_written = False
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [BACKUP_LOCK])
            if not cursor.fetchone()[0]:
                raise BackupRefused(f"another backup of {source.describe()} is running.")
            if unless_good_since is not None and _good_backup_since(unless_good_since):
                raise BackupNotDue(f"a good backup started after {unless_good_since.isoformat()}.")
            # The snapshot's transaction sits idle while pg_dump runs, and the checksums take a while:
            # a role's or server's timeouts must not end it under pg_dump.
            cursor.execute("SET idle_in_transaction_session_timeout = 0")
            cursor.execute("SET statement_timeout = 0")
        conn.autocommit = False
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cursor:
            # The first query fixes the snapshot; pg_dump imports it, so both see the same rows.
            cursor.execute("SELECT pg_export_snapshot(), now(), current_database(), current_setting('server_version')")
            snapshot, created_at, database, server_version = cursor.fetchone()
            facts_started = time.monotonic()
            facts = database_facts(cursor, list(settings.BACKUP_CHECKSUM_TABLES))
            facts_seconds = time.monotonic() - facts_started
            major = server_major(cursor)
        created_at = created_at.astimezone(UTC)
        backup_id = _new_backup_id(created_at)
        # Written outside the snapshot: a backup never contains its own "running" row.
        record = BackupRecord.objects.create(
            backup_id=backup_id, location=store.where(backup_id), started_at=created_at
        )
        pg_dump, dump_major = pg_tool("pg_dump", at_least=major)
        with tempfile.TemporaryFile() as errors_file:
            process = subprocess.Popen(  # noqa: S603 - a pg_dump binary, fixed arguments
                [
                    pg_dump,
                    "--format=custom",
                    f"--compress={int(settings.BACKUP_COMPRESSION)}",
                    f"--snapshot={snapshot}",
                    "--no-password",
                ],
                stdout=subprocess.PIPE,
                stderr=errors_file,
                env={**os.environ, **source.libpq_env()},
            )
            assert process.stdout is not None
            digest = hashlib.sha256()

            def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
                for chunk in chunks:
                    digest.update(chunk)
                    yield chunk

            data_written = True
            size = store.write_data(backup_id, hashed(encrypt_stream(process.stdout, segment_size=SEGMENT_SIZE)))
            returncode = process.wait()
            if returncode != 0:
                errors_file.seek(0)
                message = errors_file.read()[-2000:].decode(errors="replace").strip()
                raise BackupError(f"pg_dump failed (exit {returncode}): {message}")
        conn.rollback()
        manifest = {
            "format": FORMAT,
            "id": backup_id,
            "created_at": created_at.isoformat(),
            "database": {"name": database, "server_version": server_version, "server_major": major},
            "pg_dump": {"major": dump_major, "format": "custom", "compression": int(settings.BACKUP_COMPRESSION)},
            "snapshot": "REPEATABLE READ, exported to pg_dump --snapshot",
            "encryption": {"cipher": "AES-256-GCM", "segment_size": SEGMENT_SIZE, "key_id": key_id(secret)},
            "data": {"object": Path(store.where(backup_id)).name, "size": size, "sha256": digest.hexdigest()},
            **facts,
        }
        signed = sign_manifest(manifest)
        store.write_manifest(backup_id, signed)
        manifest = json.loads(signed)
        # Recorded while the lock is held, so a scheduled run waiting for it sees this backup.
        record.status = BackupRecord.Status.OK
        record.finished_at = timezone.now()
        record.size_bytes = size
        record.sha256 = manifest["data"]["sha256"]
        record.save(update_fields=["status", "finished_at", "size_bytes", "sha256"])
    except BaseException as exc:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        if data_written:
            try:
                store.delete(backup_id)
            except Exception:  # the original error matters more; prune removes leftovers
                logger.warning("could not delete the failed backup's data", exc_info=True)
        if isinstance(exc, BackupRefused):  # refused before anything was written: not a failed backup
            raise
        if record is not None:
            record.status = BackupRecord.Status.FAILED
            record.finished_at = timezone.now()
            record.error = str(exc) or type(exc).__name__
            record.save(update_fields=["status", "finished_at", "error"])
        logger.error("backup failed", extra={"backup_id": backup_id, "reason": str(exc)})
        if isinstance(exc, psycopg2.Error):
            raise BackupError(f"reading {source.describe()} failed: {exc}".strip()) from None
        raise
    finally:
        conn.close()
    seconds = time.monotonic() - started
    logger.info("backup written", extra={"backup_id": backup_id, "size": size, "seconds": round(seconds, 2)})
    return BackupResult(
        backup_id=backup_id,
        location=store.where(backup_id),
        size=size,
        sha256=manifest["data"]["sha256"],
        created_at=created_at,
        seconds=seconds,
        manifest=manifest,
        facts_seconds=facts_seconds,
    )


def _good_backup_since(moment: datetime) -> bool:
    return BackupRecord.objects.filter(status=BackupRecord.Status.OK, started_at__gte=moment).exists()


def backup_if_due(*, store: BackupStore | None = None) -> BackupResult | None:
    """The scheduled backup: one when no good backup started within BACKUP_INTERVAL, else None.

    Beat asks every BACKUP_DUE_CHECK_INTERVAL, so the schedule lives in the BackupRecord rows, not
    in the broker: a tick lost in a broker outage, or a failed run, is made good at the next tick,
    and concurrent ticks make one backup (the check runs again under backup_create's lock).
    """
    try:
        return backup_create(store=store, unless_good_since=timezone.now() - settings.BACKUP_INTERVAL)
    except BackupNotDue:
        return None


# --- listing and retention ------------------------------------------------------------------


@dataclass(frozen=True)
class BackupInfo:
    backup_id: str
    created_at: datetime
    size: int
    status: str  # ok | incomplete | invalid
    reason: str = ""
    manifest: dict[str, Any] | None = None


def _time_of_id(backup_id: str) -> datetime:
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _inspect(store: BackupStore, stored: StoredBackup) -> BackupInfo:
    created = _time_of_id(stored.backup_id)
    if not stored.has_manifest:
        return BackupInfo(stored.backup_id, created, stored.size, "incomplete", "no manifest")
    data = store.read_manifest(stored.backup_id)
    if data is None:
        return BackupInfo(stored.backup_id, created, stored.size, "incomplete", "no manifest")
    try:
        manifest = verify_manifest(data, name=stored.backup_id)
    except BackupError as exc:
        return BackupInfo(stored.backup_id, created, stored.size, "invalid", str(exc))
    if manifest.get("id") != stored.backup_id or manifest.get("data", {}).get("size") != stored.size:
        return BackupInfo(stored.backup_id, created, stored.size, "invalid", "the manifest describes another object")
    return BackupInfo(
        stored.backup_id, datetime.fromisoformat(manifest["created_at"]), stored.size, "ok", manifest=manifest
    )


def backups_list(*, store: BackupStore | None = None) -> list[BackupInfo]:
    """Every backup in the store, newest first, each manifest's signature checked (status ok/incomplete/invalid)."""
    store = store or backup_store()
    found = [_inspect(store, stored) for stored in store.list()]
    # By the snapshot's time (microseconds): ids only resolve seconds.
    return sorted(found, key=lambda info: (info.created_at, info.backup_id), reverse=True)


def backup_latest_good(*, store: BackupStore | None = None) -> BackupInfo | None:
    return next((info for info in backups_list(store=store) if info.status == "ok"), None)


@dataclass(frozen=True)
class PruneResult:
    kept: list[BackupInfo]
    deleted: list[BackupInfo]
    left: list[BackupInfo] = field(default_factory=list)  # invalid ones: evidence for an operator


def retained(good: list[BackupInfo], *, hourly: int, daily: int, weekly: int) -> set[str]:
    """Ids to keep of `good` (newest first): the newest of each of the last `hourly` hours,
    `daily` days and `weekly` ISO weeks that have a backup, and always the newest."""
    keep = {good[0].backup_id} if good else set()
    buckets: list[tuple[int, Callable[[datetime], object]]] = [
        (hourly, lambda at: (at.date(), at.hour)),
        (daily, lambda at: at.date()),
        (weekly, lambda at: at.isocalendar()[:2]),
    ]
    for count, bucket_of in buckets:
        seen: set[object] = set()
        for info in good:
            bucket = bucket_of(info.created_at.astimezone(UTC))
            if bucket in seen:
                continue
            if len(seen) >= count:
                break
            seen.add(bucket)
            keep.add(info.backup_id)
    return keep


def backups_prune(*, store: BackupStore | None = None, dry_run: bool = False) -> PruneResult:
    """Delete the good backups the retention (BACKUP_KEEP_HOURLY/DAILY/WEEKLY) does not keep, and
    incomplete ones older than BACKUP_INCOMPLETE_GRACE. Never the newest good backup; never an
    invalid one (an altered manifest is evidence: it is reported, an operator removes it)."""
    store = store or backup_store()
    backups = backups_list(store=store)
    good = [info for info in backups if info.status == "ok"]
    keep = retained(
        good, hourly=settings.BACKUP_KEEP_HOURLY, daily=settings.BACKUP_KEEP_DAILY, weekly=settings.BACKUP_KEEP_WEEKLY
    )
    cutoff = timezone.now() - settings.BACKUP_INCOMPLETE_GRACE
    deleted = [
        info
        for info in backups
        if (info.status == "ok" and info.backup_id not in keep)
        or (info.status == "incomplete" and info.created_at < cutoff)
    ]
    if not dry_run:
        for info in deleted:
            store.delete(info.backup_id)
            logger.info("backup pruned", extra={"backup_id": info.backup_id, "status": info.status})
    return PruneResult(
        kept=[info for info in good if info.backup_id in keep],
        deleted=deleted,
        left=[info for info in backups if info.status == "invalid"],
    )


# --- restore ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreResult:
    backup_id: str
    target: str
    seconds: float
    manifest: dict[str, Any]
    facts: dict[str, Any]


def backup_manifest(backup_id: str, *, store: BackupStore | None = None) -> dict[str, Any]:
    """The backup's manifest, signature verified; BackupError when it is missing, altered or unknown."""
    store = store or backup_store()
    try:
        data = store.read_manifest(backup_id)
    except ValueError as exc:
        raise BackupError(str(exc)) from None
    if data is None:
        known = {stored.backup_id for stored in store.list()}
        if backup_id in known:
            raise BackupError(f"backup {backup_id} has no manifest: it is incomplete and is never restored.")
        raise BackupError(f"no backup {backup_id} in {store.location}.")
    manifest = verify_manifest(data, name=backup_id)
    if manifest.get("format") != FORMAT or manifest.get("id") != backup_id:
        raise BackupCorrupt(f"the manifest of backup {backup_id} is signed but describes another backup.")
    return manifest


def _fetch_and_decrypt(
    store: BackupStore, backup_id: str, manifest: dict[str, Any], workdir: Path, say: Callable[[str], None]
) -> Path:
    """The backup's dump as a file in `workdir`, once its checksum and every segment's tag verified."""
    ciphertext = workdir / "backup.bcbk"
    digest = hashlib.sha256()
    size = 0
    with store.open_data(backup_id) as source, open(ciphertext, "wb") as target:
        while chunk := source.read(READ_SIZE):
            digest.update(chunk)
            size += len(chunk)
            target.write(chunk)
    expected = manifest["data"]
    if size != expected["size"]:
        raise BackupCorrupt(
            f"backup {backup_id} is {size} bytes, its manifest says {expected['size']}: truncated or altered."
        )
    if digest.hexdigest() != expected["sha256"]:
        raise BackupCorrupt(f"backup {backup_id} fails its SHA-256 checksum: it was altered after it was written.")
    say(f"checksum OK ({size} bytes, SHA-256 {expected['sha256'][:16]}...)")
    dump = workdir / "backup.dump"
    with open(ciphertext, "rb") as source, open(dump, "wb") as target:
        for chunk in decrypt_stream(source):
            target.write(chunk)
    ciphertext.unlink()
    say("decrypted and authenticated")
    return dump


def _read_facts(target: Target, tables: list[str]) -> dict[str, Any]:
    conn = target.connect()
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cursor:
            return database_facts(cursor, tables)
    finally:
        conn.close()


def backup_restore(
    *,
    backup_id: str,
    target: Target,
    force: bool = False,
    store: BackupStore | None = None,
    say: Callable[[str], None] | None = None,
) -> RestoreResult:
    """Restore backup `backup_id` into the database `target`, then prove it holds what the manifest says.

    Nothing is touched before the manifest's signature, the dump's SHA-256 and every encrypted
    segment have verified (the dump is decrypted to a temporary file first): a tampered, truncated
    or foreign backup raises BackupCorrupt / BackupKeyUnknown and the target is unchanged. The
    live database (same server, port and name as DATABASES["default"]) is refused (BackupRefused)
    unless maintenance mode is on and `force` is given. pg_restore runs with --clean --if-exists
    in a single transaction with --exit-on-error: the objects of the dump are replaced, all or
    nothing (objects the dump does not hold stay). Then the row counts, checksums, audit heads and
    migrations are read from the target and compared with the manifest: BackupError on a difference.
    """
    say = say or (lambda message: None)
    store = store or backup_store()
    if target.same_database_as(live_target()) or target.same_database_as(backup_source()):
        if not force:
            raise BackupRefused(
                f"{target.describe()} is the live database: restoring over it needs maintenance mode on and --force."
            )
        if not maintenance_active(fresh=True):
            raise BackupRefused(
                f"{target.describe()} is the live database and maintenance mode is off: turn it on first."
            )
    manifest = backup_manifest(backup_id, store=store)
    say(f"manifest of {backup_id} signed by key {manifest['key_id']}: signature OK")
    started = time.monotonic()
    temp_root = settings.BACKUP_TEMP_DIR or None
    with tempfile.TemporaryDirectory(prefix="bankcore-restore-", dir=temp_root) as workdir:
        dump = _fetch_and_decrypt(store, backup_id, manifest, Path(workdir), say)
        try:
            conn = target.connect()
        except psycopg2.Error as exc:
            raise BackupError(f"cannot connect to {target.describe()}: {exc}".strip()) from None
        try:
            with conn.cursor() as cursor:
                major = server_major(cursor)
        finally:
            conn.close()
        pg_restore, _ = pg_tool("pg_restore", at_least=max(major, int(manifest["pg_dump"]["major"])))
        say(f"restoring into {target.describe()} with {pg_restore}")
        result = subprocess.run(  # noqa: S603 - a pg_restore binary, fixed arguments
            [
                pg_restore,
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--exit-on-error",
                "--no-password",
                f"--dbname={target.name}",
                str(dump),
            ],
            env={**os.environ, **target.libpq_env()},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BackupError(
                f"pg_restore failed (exit {result.returncode}); nothing was changed (one transaction): "
                f"{result.stderr.strip()[-2000:]}"
            )
    seconds = time.monotonic() - started
    facts = _read_facts(target, list(manifest["tables"]))
    problems = facts_differences(manifest, facts)
    if problems:
        raise BackupError(f"restored {backup_id}, but the database differs from its manifest: " + "; ".join(problems))
    say(f"restored in {seconds:.1f}s; row counts, ledger checksum, audit heads and migrations match the manifest")
    return RestoreResult(backup_id=backup_id, target=target.describe(), seconds=seconds, manifest=manifest, facts=facts)


# --- the drill ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DrillResult:
    drill: DrDrill
    lines: list[str]

    @property
    def ok(self) -> bool:
        return self.drill.ok


def _verify_in(target: Target, command: str, checkpoint_dir: str) -> tuple[bool, str]:
    """Run `manage.py command` on `target` in a child process (the app's own checks, unimported here)."""
    env = {
        **os.environ,
        "DATABASE_URL": target.url(),
        # A backup is older than the newest audit checkpoint: the chains are checked in themselves,
        # and their heads against the backup's signed manifest instead.
        "AUDIT_CHECKPOINT_DIR": checkpoint_dir,
        "AUDIT_CHECKPOINT_S3_BUCKET": "",
    }
    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), command],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=settings.BACKUP_TASK_TIME_LIMIT,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    summary = (result.stdout.strip().splitlines() or [""])[-1] if result.returncode == 0 else output[-1000:]
    return result.returncode == 0, summary


def _drill_server() -> Target:
    url = getattr(settings, "DR_DRILL_DATABASE_URL", "")
    return Target.from_url(url) if url else live_target()


def dr_drill_run(
    *,
    backup_id: str | None = None,
    keep: bool = False,
    store: BackupStore | None = None,
    say: Callable[[str], None] | None = None,
) -> DrillResult:
    """Restore a backup (default: the newest good one) into a new scratch database, verify it there,
    and record the drill (a DrDrill row, also when it fails).

    Checks: the restore's own (signature, checksum, authenticated decryption, facts equal to the
    manifest), then `verify_ledger` and `verify_audit_log` run on the scratch database as child
    processes. RTO: seconds the restore took (fetch, verify, decrypt, pg_restore); RPO: the
    backup's age when the drill began. The scratch database is created on DR_DRILL_DATABASE_URL's
    server (a role with CREATEDB) and dropped afterwards unless `keep`. Never raises for a failed
    check: the result says ok=False and lists the problems.
    """
    say = say or (lambda message: None)
    store = store or backup_store()
    started_at = timezone.now()
    lines: list[str] = []
    problems: list[str] = []
    rto: float | None = None
    rpo: float | None = None
    chosen = backup_id or ""
    server = _drill_server()
    scratch = f"bankcore_drill_{started_at:%Y%m%d%H%M%S}_{secrets.token_hex(3)}"
    created = False

    def note(line: str) -> None:
        lines.append(line)
        say(line)

    try:
        if not chosen:
            latest = backup_latest_good(store=store)
            if latest is None:
                raise BackupError(f"no good backup in {store.location} to drill with.")
            chosen = latest.backup_id
        note(f"backup {chosen} from {store.location}")
        admin = server.connect()
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{scratch}"')
        finally:
            admin.close()
        created = True
        note(f"scratch database {scratch} created on {server.host or 'localhost'}:{server.port or 5432}")
        restored = backup_restore(backup_id=chosen, target=server.with_name(scratch), store=store, say=note)
        rto = restored.seconds
        rpo = (started_at - datetime.fromisoformat(restored.manifest["created_at"])).total_seconds()
        with tempfile.TemporaryDirectory(prefix="bankcore-drill-") as no_checkpoints:
            for command in ("verify_ledger", "verify_audit_log"):
                passed, summary = _verify_in(server.with_name(scratch), command, no_checkpoints)
                note(f"{command}: {'OK' if passed else 'FAILED'} - {summary.splitlines()[-1] if summary else ''}")
                if not passed:
                    problems.append(f"{command} failed on the restored database: {summary}")
    except BackupError as exc:
        problems.append(str(exc))
        note(f"FAILED: {exc}")
    except (psycopg2.Error, OSError, subprocess.SubprocessError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}".strip())
        note(f"FAILED: {type(exc).__name__}: {exc}".strip())
    finally:
        if created and not keep:
            try:
                admin = server.connect()
                admin.autocommit = True
                with admin.cursor() as cursor:
                    cursor.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
                admin.close()
                note(f"scratch database {scratch} dropped")
            except psycopg2.Error as exc:
                problems.append(f"could not drop the scratch database {scratch}: {exc}".strip())
        elif created:
            note(f"scratch database {scratch} kept (--keep)")
    if rto is not None:
        note(f"RTO (restore): {rto:.1f} s")
    if rpo is not None:
        note(f"RPO (backup age): {rpo:.0f} s ({timedelta(seconds=round(rpo))})")
    drill = DrDrill.objects.create(
        backup_id=chosen,
        started_at=started_at,
        finished_at=timezone.now(),
        ok=not problems,
        rto_seconds=rto,
        rpo_seconds=rpo,
        scratch_database=scratch if created else "",
        problems=problems,
        report="\n".join(lines),
    )
    (logger.info if drill.ok else logger.error)(
        "DR drill finished", extra={"ok": drill.ok, "backup_id": chosen, "rto": rto, "rpo": rpo}
    )
    return DrillResult(drill=drill, lines=lines)


# --- age of the last good backup (metric, /readyz) -------------------------------------------


def backup_freshness() -> dict[str, Any]:
    """{"age_seconds": seconds since the newest good backup's snapshot (None if none), "status": ok|stale|none}."""
    newest = (
        BackupRecord.objects.filter(status=BackupRecord.Status.OK)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    if newest is None:
        return {"age_seconds": None, "status": "none"}
    age = (timezone.now() - newest).total_seconds()
    stale = age > settings.BACKUP_STALE_AFTER.total_seconds()
    return {"age_seconds": round(age), "status": "stale" if stale else "ok"}


class BackupAgeCollector:
    """Prometheus gauge `bankcore_backup_last_success_age_seconds`, read at scrape time from the
    BackupRecord rows (every process reports the same figure); absent before the first good backup."""

    NAME = "bankcore_backup_last_success_age_seconds"
    HELP = "Seconds since the snapshot of the newest good database backup."

    def describe(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(self.NAME, self.HELP)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            freshness = backup_freshness()
        except Exception:  # a scrape must not fail because the database is away; the gauge is absent
            logger.warning("backup age gauge: database not readable", exc_info=True)
            return
        if freshness["age_seconds"] is None:
            return
        yield GaugeMetricFamily(self.NAME, self.HELP, value=freshness["age_seconds"])


_collector = BackupAgeCollector()


def register_backup_age_gauge() -> None:
    """Expose the gauge in this process's default registry (idempotent; AppConfig.ready)."""
    from prometheus_client import REGISTRY

    with contextlib.suppress(ValueError):  # registered already
        REGISTRY.register(_collector)
