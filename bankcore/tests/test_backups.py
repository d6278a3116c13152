"""Encrypted backups: the round trip on PostgreSQL, refusal of anything tampered with, S3, retention.

Every test is transactional: pg_dump reads committed rows from its own connection.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone
from prometheus_client import REGISTRY

from bankcore.backups.crypto import (
    BackupCorrupt,
    BackupKeyUnknown,
    decrypt_stream,
    encrypt_stream,
    key_id,
    sign_manifest,
)
from bankcore.backups.postgres import Target, database_facts, live_target
from bankcore.backups.services import (
    BackupInfo,
    backup_create,
    backup_freshness,
    backups_list,
    backups_prune,
    retained,
)
from bankcore.backups.storage import DirectoryBackupStore
from bankcore.models import AuditChainHead, AuditEvent, BackupRecord
from bankcore.testing import database_url_of_current_connection
from bankcore.tests.conftest import KEY, OTHER_KEY, public_tables

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def facts_of(target: Target, tables: list[str]) -> dict:
    conn = target.connect()
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cursor:
            return database_facts(cursor, tables)
    finally:
        conn.close()


def data_file(settings, backup_id: str) -> Path:
    return Path(settings.BACKUP_DIR) / f"{backup_id}.bcbk"


def manifest_file(settings, backup_id: str) -> Path:
    return Path(settings.BACKUP_DIR) / f"{backup_id}.manifest.json"


def writable(path: Path) -> Path:
    path.chmod(0o640)
    return path


# --- the round trip -----------------------------------------------------------------------


def test_backup_then_restore_reproduces_the_ledger_checksum_and_the_audit_heads(backups, bank, empty_database):
    result = backup_create()
    manifest = result.manifest
    tables = list(manifest["tables"])

    # The manifest describes the source as it is (nothing was written since).
    source = facts_of(live_target(), tables)
    assert manifest["ledger_checksum"] == source["ledger_checksum"]
    assert manifest["tables"] == source["tables"]
    assert manifest["tables"]["transactions_entry"]["rows"] > 0
    heads = [
        (head.id, head.last_event_id, head.last_hash, AuditEvent.objects.filter(chain=head.id).count())
        for head in AuditChainHead.objects.order_by("id")
    ]
    assert (
        heads
        and [(h["chain"], h["last_event_id"], h["last_hash"], h["row_count"]) for h in manifest["audit_heads"]] == heads
    )

    # What is stored is ciphertext: not pg_dump's archive.
    stored = data_file(backups, result.backup_id).read_bytes()
    assert stored.startswith(b"BCBACKUP") and b"PGDMP" not in stored

    out = StringIO()
    call_command(
        "restore_backup", result.backup_id, "--database-url", empty_database.url(), stdout=out, stderr=StringIO()
    )
    assert "signature OK" in out.getvalue() and "checksum OK" in out.getvalue()
    restored = facts_of(empty_database, tables)
    assert restored["ledger_checksum"] == manifest["ledger_checksum"] == source["ledger_checksum"]
    assert restored["audit_heads"] == manifest["audit_heads"]
    assert restored["migrations"] == manifest["migrations"]
    assert BackupRecord.objects.get(backup_id=result.backup_id).status == BackupRecord.Status.OK


def test_the_backup_command_and_list_backups_report_the_backup(backups, bank):
    out = StringIO()
    call_command("backup", stdout=out)
    assert "OK" in out.getvalue() and "ledger checksum" in out.getvalue()
    (info,) = backups_list()
    listing = StringIO()
    call_command("list_backups", stdout=listing)
    assert info.backup_id in listing.getvalue() and listing.getvalue().rstrip().endswith("ok")


def test_the_beat_task_backs_up_and_readyz_and_the_metric_show_its_age(backups, bank, client):
    from bankcore.tasks import backup

    assert backup_freshness() == {"age_seconds": None, "status": "none"}
    assert client.get("/readyz").json()["backup"]["status"] == "none"
    result = backup.apply().get()
    assert result["ok"], result
    body = client.get("/readyz").json()
    assert body["backup"]["status"] == "ok" and 0 <= body["backup"]["age_seconds"] < 60
    assert 0 <= REGISTRY.get_sample_value("bankcore_backup_last_success_age_seconds") < 60
    with override_settings(BACKUP_STALE_AFTER=timedelta(seconds=-1)):
        response = client.get("/readyz")
        assert response.json()["backup"]["status"] == "stale"
        assert response.status_code == 200  # information, never a reason to take the pod out


def test_the_scheduled_tick_backs_up_only_when_the_newest_good_backup_is_older_than_the_interval(
    backups, bank, settings
):
    """The schedule lives in BackupRecord, not in the broker: a tick lost in an outage (or a failed
    run) is made good by the next tick, and ticks in between make nothing."""
    from bankcore.tasks import backup_if_due

    settings.BACKUP_INTERVAL = timedelta(hours=1)
    first = backup_if_due.apply().get()
    assert first["ok"] and first["backup_id"], first
    again = backup_if_due.apply().get()
    assert again["ok"] and "skipped" in again, again
    assert BackupRecord.objects.filter(status=BackupRecord.Status.OK).count() == 1
    # The newest good backup is older than the interval (e.g. the last tick was lost): the next one backs up.
    BackupRecord.objects.update(started_at=timezone.now() - timedelta(hours=2))
    late = backup_if_due.apply().get()
    assert late["ok"] and late["backup_id"] != first["backup_id"], late
    # A failed run does not count as the interval's backup.
    BackupRecord.objects.update(started_at=timezone.now() - timedelta(hours=2))
    BackupRecord.objects.create(backup_id="failed", status=BackupRecord.Status.FAILED, started_at=timezone.now())
    assert backup_if_due.apply().get().get("backup_id")
    assert BackupRecord.objects.filter(status=BackupRecord.Status.OK).count() == 3


def test_a_tick_while_a_backup_runs_is_skipped_not_failed(backups, bank, settings):
    from bankcore.backups.services import BACKUP_LOCK
    from bankcore.tasks import backup_if_due

    holder = live_target().connect()
    try:
        holder.autocommit = True
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [BACKUP_LOCK])
        result = backup_if_due.apply().get()
    finally:
        holder.close()
    assert result["ok"] and "running" in result["skipped"], result
    assert not BackupRecord.objects.exists()


def test_a_failed_pg_dump_leaves_no_backup_and_records_why(backups, bank):
    """pg_dump fails on a table the backup's role may not read: no backup, a failed BackupRecord."""
    from bankcore.testing import database_app_role, owner_cursor

    with owner_cursor() as cursor:
        cursor.execute("CREATE TABLE backup_test_unreadable (id int)")
        cursor.execute(f"REVOKE ALL ON backup_test_unreadable FROM PUBLIC, {database_app_role()}")
    try:
        with pytest.raises(CommandError, match=r"pg_dump failed .*permission denied for table backup_test_unreadable"):
            call_command("backup", stdout=StringIO())
    finally:
        with owner_cursor() as cursor:
            cursor.execute("DROP TABLE backup_test_unreadable")
    assert backups_list() == []
    assert list(Path(backups.BACKUP_DIR).iterdir()) == []  # no temporary file left either
    (record,) = BackupRecord.objects.all()
    assert record.status == BackupRecord.Status.FAILED and "permission denied" in record.error


def test_an_unreachable_database_is_a_clear_error(backups, settings):
    settings.BACKUP_DATABASE_URL = database_url_of_current_connection().rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(CommandError, match=r'cannot connect to no_such_database.*"no_such_database" does not exist'):
        call_command("backup", stdout=StringIO())
    assert backups_list() == []


# --- refusals: nothing is touched -----------------------------------------------------------


def _restore(backup_id: str, target: Target, *extra: str) -> None:
    call_command("restore_backup", backup_id, "--database-url", target.url(), *extra, stdout=StringIO())


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    writable(path).write_bytes(bytes(data))


def test_a_flipped_byte_is_refused_and_the_target_is_untouched(backups, bank, empty_database):
    backup_id = backup_create().backup_id
    path = data_file(backups, backup_id)
    _flip_byte(path, path.stat().st_size // 2)
    with pytest.raises(CommandError, match="fails its SHA-256 checksum"):
        _restore(backup_id, empty_database)
    assert public_tables(empty_database) == 0


def test_a_truncated_backup_is_refused_and_the_target_is_untouched(backups, bank, empty_database):
    backup_id = backup_create().backup_id
    path = data_file(backups, backup_id)
    data = path.read_bytes()
    writable(path).write_bytes(data[: len(data) - 100])
    with pytest.raises(CommandError, match="truncated or altered"):
        _restore(backup_id, empty_database)
    assert public_tables(empty_database) == 0


def test_an_altered_manifest_fails_its_signature(backups, bank, empty_database):
    backup_id = backup_create().backup_id
    path = manifest_file(backups, backup_id)
    document = json.loads(path.read_bytes())
    document["tables"]["transactions_entry"]["rows"] += 1
    writable(path).write_text(json.dumps(document))
    with pytest.raises(CommandError, match="invalid signature"):
        _restore(backup_id, empty_database)
    assert public_tables(empty_database) == 0
    assert [info.status for info in backups_list()] == ["invalid"]


def test_altered_ciphertext_with_a_matching_resigned_manifest_fails_authentication(backups, bank, empty_database):
    """Even past the checksum (a manifest re-signed for the altered bytes), GCM refuses the segment."""
    import hashlib

    backup_id = backup_create().backup_id
    path = data_file(backups, backup_id)
    _flip_byte(path, 100)
    manifest_path = manifest_file(backups, backup_id)
    document = json.loads(manifest_path.read_bytes())
    document["data"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    writable(manifest_path).write_bytes(sign_manifest(document))
    with pytest.raises(CommandError, match=r"fails authentication at .*altered or truncated"):
        _restore(backup_id, empty_database)
    assert public_tables(empty_database) == 0


def test_a_backup_under_a_key_no_longer_configured_is_refused_and_rotation_keeps_old_ones(
    backups, bank, empty_database, settings
):
    old_backup = backup_create()
    settings.BACKUP_ENCRYPTION_KEYS = [OTHER_KEY]
    with pytest.raises(
        CommandError, match=f"names key {key_id(KEY.encode())}, which BACKUP_ENCRYPTION_KEYS does not hold"
    ):
        _restore(old_backup.backup_id, empty_database)
    assert public_tables(empty_database) == 0

    settings.BACKUP_ENCRYPTION_KEYS = [OTHER_KEY, KEY]  # rotated: the new key first, the old one kept
    new_backup = backup_create()
    assert new_backup.manifest["key_id"] == key_id(OTHER_KEY.encode())
    _restore(old_backup.backup_id, empty_database)
    assert public_tables(empty_database) > 0


def test_restoring_over_the_live_database_needs_maintenance_mode_and_force(backups, bank):
    backup_id = backup_create().backup_id
    live = Target.from_url(database_url_of_current_connection())
    with pytest.raises(
        CommandError, match="is the live database: restoring over it needs maintenance mode on and --force"
    ):
        _restore(backup_id, live)
    with pytest.raises(CommandError, match="maintenance mode is off"):
        _restore(backup_id, live, "--force")


def test_with_maintenance_on_and_force_the_live_database_is_restored(backups, bank):
    from bankcore.maintenance import maintenance_off, maintenance_on
    from bankcore.tests.conftest import owner_target

    maintenance_on(message="Restoring last night's backup")
    try:
        result = backup_create()
        out = StringIO()
        call_command("restore_backup", result.backup_id, "--database-url", owner_target().url(), "--force", stdout=out)
        assert f"restored into {owner_target().name}" in out.getvalue()
        assert (
            facts_of(live_target(), list(result.manifest["tables"]))["ledger_checksum"]
            == result.manifest["ledger_checksum"]
        )
    finally:
        maintenance_off()


def test_an_unknown_backup_id_is_refused(backups, empty_database):
    with pytest.raises(CommandError, match="no backup 20200101T000000Z-00000000"):
        _restore("20200101T000000Z-00000000", empty_database)
    with pytest.raises(CommandError, match="is not a backup id"):
        _restore("../../etc/passwd", empty_database)


# --- the stream format ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 64, 65, 64 * 3, 64 * 3 + 17])
def test_the_stream_round_trips_any_length(backups, size):
    plaintext = bytes(range(256)) * (size // 256 + 1)
    plaintext = plaintext[:size]
    sealed = b"".join(encrypt_stream(io.BytesIO(plaintext), segment_size=64))
    assert b"".join(decrypt_stream(io.BytesIO(sealed))) == plaintext


def test_a_stream_cut_at_a_segment_boundary_or_reordered_is_refused(backups):
    plaintext = b"x" * 64 * 3 + b"tail"
    header, *segments = list(encrypt_stream(io.BytesIO(plaintext), segment_size=64))
    assert len(segments) == 4
    with pytest.raises(BackupCorrupt, match="altered or truncated"):
        b"".join(decrypt_stream(io.BytesIO(header + b"".join(segments[:3]))))
    with pytest.raises(BackupCorrupt, match="altered or truncated"):
        b"".join(decrypt_stream(io.BytesIO(header + segments[1] + segments[0] + segments[2] + segments[3])))
    with pytest.raises(BackupCorrupt, match="ends after its header"):
        b"".join(decrypt_stream(io.BytesIO(header)))
    with pytest.raises(BackupCorrupt, match=r"not a bankcore backup|bankcore backup header"):
        b"".join(decrypt_stream(io.BytesIO(b"PGDMP" + b"\0" * 64)))


def test_a_stream_under_an_unknown_key_is_named(backups, settings):
    sealed = b"".join(encrypt_stream(io.BytesIO(b"data")))
    settings.BACKUP_ENCRYPTION_KEYS = [OTHER_KEY]
    with pytest.raises(BackupKeyUnknown, match=key_id(KEY.encode())):
        b"".join(decrypt_stream(io.BytesIO(sealed)))


# --- S3 ---------------------------------------------------------------------------------------


def test_backup_list_and_restore_through_s3(backups, bank, s3_backups, empty_database):
    result = backup_create()
    assert result.location == f"s3://bank-backups/db/{result.backup_id}.bcbk"
    keys = sorted(item["Key"] for item in s3_backups.list_objects_v2(Bucket="bank-backups")["Contents"])
    assert keys == [f"db/{result.backup_id}.bcbk", f"db/{result.backup_id}.manifest.json"]
    assert not Path(backups.BACKUP_DIR).exists()  # S3 configured: nothing local
    assert [(info.backup_id, info.status) for info in backups_list()] == [(result.backup_id, "ok")]
    _restore(result.backup_id, empty_database)
    assert (
        facts_of(empty_database, list(result.manifest["tables"]))["ledger_checksum"]
        == result.manifest["ledger_checksum"]
    )

    # Altered in the bucket (its owner can replace objects): refused.
    body = bytearray(s3_backups.get_object(Bucket="bank-backups", Key=keys[0])["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3_backups.put_object(Bucket="bank-backups", Key=keys[0], Body=bytes(body))
    with pytest.raises(CommandError, match="SHA-256 checksum"):
        _restore(result.backup_id, empty_database)


def test_a_large_stream_goes_to_s3_as_a_multipart_upload(backups, s3_backups):
    from bankcore.backups.storage import S3BackupStore

    store = S3BackupStore(bucket="bank-backups", prefix="db/", client=s3_backups)
    chunk = bytes(range(256)) * 4096  # 1 MiB
    size = store.write_data("20250101T000000Z-0000abcd", iter([chunk] * 20))
    assert size == 20 * len(chunk)
    head = s3_backups.head_object(Bucket="bank-backups", Key="db/20250101T000000Z-0000abcd.bcbk")
    assert head["ContentLength"] == size and "-" in head["ETag"]  # a multipart ETag: "<md5>-<parts>"


# --- retention --------------------------------------------------------------------------------


def _info(at: datetime, status: str = "ok") -> BackupInfo:
    return BackupInfo(f"{at:%Y%m%dT%H%M%S}Z-{at.minute:08x}", at, 10, status)


def test_retention_keeps_the_newest_of_each_hour_day_and_week():
    now = datetime(2025, 3, 12, 15, 30, tzinfo=UTC)  # a Wednesday
    times = [
        now,
        now - timedelta(minutes=20),  # same hour as `now`: not the newest of its hour
        now - timedelta(hours=1),
        now - timedelta(hours=2),
        now - timedelta(days=1),
        now - timedelta(days=1, hours=3),
        now - timedelta(days=2),
        now - timedelta(days=9),
        now - timedelta(days=30),
    ]
    good = [_info(at) for at in times]
    keep = retained(good, hourly=2, daily=3, weekly=2)
    assert keep == {
        good[0].backup_id,  # newest; hour 15; day 12; week 11
        good[2].backup_id,  # hour 14
        good[4].backup_id,  # day 11
        good[6].backup_id,  # day 10
        good[7].backup_id,  # week 10
    }
    assert retained(good, hourly=0, daily=0, weekly=0) == {good[0].backup_id}  # never the newest
    assert retained([], hourly=1, daily=1, weekly=1) == set()


def _fake_backup(store: DirectoryBackupStore, at: datetime, *, manifest: bool = True, tamper: bool = False) -> str:
    backup_id = f"{at:%Y%m%dT%H%M%S}Z-{at.day:02x}{at.hour:02x}{at.minute:02x}00"
    store.write_data(backup_id, iter([b"x" * 10]))
    if manifest:
        document = {
            "format": "bankcore-backup/1",
            "id": backup_id,
            "created_at": at.isoformat(),
            "data": {"size": 10, "sha256": ""},
        }
        data = sign_manifest(document)
        if tamper:
            data = data.replace(b'"size": 10', b'"size": 10 ')
            data = data.replace(b"bankcore-backup/1", b"bankcore-backup/2")
        store.write_manifest(backup_id, data)
    return backup_id


def test_prune_backups_deletes_what_retention_does_not_keep(backups, settings):
    from django.utils import timezone

    settings.BACKUP_KEEP_HOURLY, settings.BACKUP_KEEP_DAILY, settings.BACKUP_KEEP_WEEKLY = 1, 2, 0
    store = DirectoryBackupStore(settings.BACKUP_DIR)
    now = timezone.now().replace(microsecond=0)
    newest = _fake_backup(store, now - timedelta(minutes=1))
    same_day = _fake_backup(
        store, now - timedelta(minutes=2) - timedelta(hours=1) if now.hour else now - timedelta(minutes=2)
    )
    yesterday = _fake_backup(store, now - timedelta(days=1))
    old = _fake_backup(store, now - timedelta(days=5))
    stale_incomplete = _fake_backup(store, now - timedelta(days=2), manifest=False)
    fresh_incomplete = _fake_backup(store, now - timedelta(minutes=3), manifest=False)
    invalid = _fake_backup(store, now - timedelta(days=6), tamper=True)

    out, err = StringIO(), StringIO()
    call_command("prune_backups", stdout=out, stderr=err)
    remaining = {info.backup_id for info in backups_list()}
    assert remaining == {newest, yesterday, fresh_incomplete, invalid}
    for deleted in (same_day, old, stale_incomplete):
        assert f"deleted {deleted}" in out.getvalue()
    assert f"left {invalid}: invalid" in err.getvalue()

    result = backups_prune()  # nothing more to do
    assert result.deleted == []
