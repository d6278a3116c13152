"""The audit chains are anchored outside the database by signed checkpoints of their heads.

Tampering here is done as the tables' owner: the append-only trigger disabled with ALTER TABLE,
rows deleted or rewritten, the chain head rewound to match, so the chain is consistent in itself
and only the checkpoint can tell.
"""

import json
import os
import threading
from io import StringIO
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from bankcore.audit import ChainBreak, audit_event, audit_write, chain_hash, verify_chain
from bankcore.audit_checkpoint import (
    DirectoryCheckpointStore,
    S3CheckpointStore,
    key_id,
    latest_checkpoint,
)
from bankcore.models import AuditChainHead, AuditEvent
from bankcore.testing import owner_cursor

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

OLD_KEY = "old-audit-hmac-key-0123456789abcdef0123456789"
NEW_KEY = "new-audit-hmac-key-fedcba9876543210fedcba9876"


def record(chain: int, action: str) -> AuditEvent:
    """Append an event to a chosen chain (a connection otherwise always writes to its own)."""
    event = audit_event(action=action, details={"n": action})
    event.chain = chain
    audit_write(event)
    return event


def history(chain: int, count: int) -> list[AuditEvent]:
    return [record(chain, f"c{chain}.e{i}") for i in range(count)]


def as_owner(*statements: tuple[str, list]) -> None:
    """Run statements with the audit table's append-only trigger disabled, as its owner could
    (the app's runtime role can do none of this)."""
    with owner_cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'bankcore_auditevent'::regclass "
            "AND tgname LIKE 'pgtrigger_audit_event_append_only%%'"
        )
        (trigger,) = cursor.fetchone()
        cursor.execute(f'ALTER TABLE bankcore_auditevent DISABLE TRIGGER "{trigger}"')
        try:
            for sql, params in statements:
                cursor.execute(sql, params)
        finally:
            cursor.execute(f'ALTER TABLE bankcore_auditevent ENABLE TRIGGER "{trigger}"')


def delete_tail_and_rewind(chain: int, keep_through: AuditEvent) -> None:
    as_owner(
        ("DELETE FROM bankcore_auditevent WHERE chain = %s AND id > %s", [chain, keep_through.pk]),
        (
            "UPDATE bankcore_auditchainhead SET last_event_id = %s, last_hash = %s WHERE id = %s",
            [keep_through.pk, keep_through.hash, chain],
        ),
    )


def chain_is_consistent_in_itself() -> bool:
    return not [step for step in verify_chain() if isinstance(step, ChainBreak)]


def checkpoint_files(settings) -> list[Path]:
    directory = Path(settings.AUDIT_CHECKPOINT_DIR)
    return sorted(path for path in directory.iterdir() if not path.name.startswith("."))


def verify(**kwargs) -> str:
    out = StringIO()
    call_command("verify_audit_log", stdout=out, stderr=out, **kwargs)
    return out.getvalue()


def test_deleting_a_chains_tail_and_rewinding_its_head_after_a_checkpoint_fails_verification():
    events = history(3, 5)
    history(7, 2)
    call_command("audit_checkpoint", stdout=StringIO())
    delete_tail_and_rewind(3, keep_through=events[2])
    assert chain_is_consistent_in_itself()  # what verification alone saw: "intact"
    with pytest.raises(CommandError, match=rf"#{events[4].pk}: chain 3 is shorter than its last checkpoint"):
        verify()
    from bankcore.tasks import verify_audit_log  # the daily beat task checks the same

    assert verify_audit_log.apply().get() == {
        "ok": False,
        "event_id": events[4].pk,
        "reason": "chain 3 is shorter than its last checkpoint: it ends at "
        f"#{events[2].pk}, the checkpoint anchored 5 rows up to this row (tail deleted, head rewound)",
    }


def test_a_new_checkpoint_is_refused_when_a_chain_no_longer_extends_the_last_one(settings):
    events = history(3, 4)
    call_command("audit_checkpoint", stdout=StringIO())
    delete_tail_and_rewind(3, keep_through=events[1])
    record(3, "after the rewind")  # the chain moves on from the rewound head
    assert chain_is_consistent_in_itself()
    with pytest.raises(CommandError, match=rf"No checkpoint written: chain 3 no longer holds event #{events[3].pk}"):
        call_command("audit_checkpoint", stdout=StringIO())
    assert len(checkpoint_files(settings)) == 1  # the tampered state is never anchored
    with pytest.raises(CommandError, match=rf"#{events[3].pk}"):
        verify()


def test_rewriting_the_row_a_checkpoint_names_fails_verification():
    history(5, 2)
    named = record(5, "transfer.posted")
    call_command("audit_checkpoint", stdout=StringIO())
    # Rewrite the row and give it a matching hash; move the head along: consistent in itself.
    rewritten = AuditEvent.objects.get(pk=named.pk)
    rewritten.details = {"amount": "99999.00"}
    new_hash = chain_hash(rewritten.prev_hash, rewritten)
    as_owner(
        (
            "UPDATE bankcore_auditevent SET details = %s, hash = %s WHERE id = %s",
            [json.dumps(rewritten.details), new_hash, named.pk],
        ),
        ("UPDATE bankcore_auditchainhead SET last_hash = %s WHERE id = 5", [new_hash]),
    )
    assert chain_is_consistent_in_itself()
    with pytest.raises(CommandError, match=rf"#{named.pk}: differs from the last checkpoint"):
        verify()


def test_a_chain_deleted_entirely_after_a_checkpoint_fails_verification():
    history(2, 2)
    gone = history(9, 3)
    call_command("audit_checkpoint", stdout=StringIO())
    as_owner(
        ("DELETE FROM bankcore_auditevent WHERE chain = 9", []),
        ("DELETE FROM bankcore_auditchainhead WHERE id = 9", []),
    )
    assert chain_is_consistent_in_itself()
    with pytest.raises(CommandError, match=rf"#{gone[-1].pk}: chain 9 is missing"):
        verify()


def test_a_tampered_checkpoint_file_fails_verification(settings):
    events = history(4, 3)
    call_command("audit_checkpoint", stdout=StringIO())
    (path,) = checkpoint_files(settings)
    document = json.loads(path.read_text())
    assert document["chains"] == [
        {"chain": 4, "last_event_id": events[-1].pk, "last_hash": events[-1].hash, "row_count": 3}
    ]
    # Someone who can write the directory but lacks the key "agrees" with a shortened chain.
    document["chains"][0].update(last_event_id=events[0].pk, last_hash=events[0].hash, row_count=1)
    os.chmod(path, 0o644)
    path.write_text(json.dumps(document))
    with pytest.raises(CommandError, match=f"{path.name} has an invalid signature: it was altered after signing"):
        verify()


def test_a_forged_newer_checkpoint_fails_verification_instead_of_being_skipped(settings):
    history(4, 2)
    call_command("audit_checkpoint", stdout=StringIO())
    (path,) = checkpoint_files(settings)
    forged = path.with_name("29991231T235959000000Z-00000000.json")
    document = json.loads(path.read_text())
    document.update(name=forged.name, key_id="0" * 16)
    forged.write_text(json.dumps(document))
    with pytest.raises(CommandError, match="names key 0000000000000000, which AUDIT_HMAC_KEY does not hold"):
        verify()


def test_a_checkpoint_signed_with_an_old_key_still_verifies_after_rotation(settings):
    settings.AUDIT_HMAC_KEY = [OLD_KEY]
    history(6, 2)
    call_command("audit_checkpoint", stdout=StringIO())
    assert latest_checkpoint().key_id == key_id(OLD_KEY.encode())

    settings.AUDIT_HMAC_KEY = [NEW_KEY, OLD_KEY]  # the new key in front; the old one kept to verify
    record(6, "after rotation")
    assert "signature valid, key " + key_id(OLD_KEY.encode()) in verify()
    call_command("audit_checkpoint", stdout=StringIO())
    assert latest_checkpoint().key_id == key_id(NEW_KEY.encode())  # the newest key signs

    settings.AUDIT_HMAC_KEY = [NEW_KEY]  # once only new-key checkpoints matter, the old key can go
    verify()
    settings.AUDIT_HMAC_KEY = [OLD_KEY]  # but a key that never signed it does not verify it
    with pytest.raises(CommandError, match="invalid signature"):
        verify()


def test_verification_is_clean_when_rows_were_added_after_the_checkpoint(settings):
    history(1, 3)
    history(2, 1)
    call_command("audit_checkpoint", stdout=StringIO())
    history(1, 2)
    history(2, 2)
    history(11, 2)  # a chain first used after the checkpoint
    output = verify()
    assert "Audit chain intact: 10 events verified; every chain extends checkpoint" in output
    call_command("audit_checkpoint", stdout=StringIO())
    latest = latest_checkpoint()
    assert {mark.chain: mark.row_count for mark in latest.chains} == {1: 5, 2: 3, 11: 2}
    for mark in latest.chains:
        assert AuditChainHead.objects.get(id=mark.chain).last_event_id == mark.last_event_id
    assert len(checkpoint_files(settings)) == 2
    verify()


def test_verify_warns_without_a_checkpoint_and_checks_only_the_chains():
    history(1, 2)
    output = verify()
    assert "WARNING: no audit checkpoint" in output
    assert "Audit chain intact: 2 events verified." in output


def test_a_stored_checkpoint_is_never_overwritten(tmp_path):
    store = DirectoryCheckpointStore(tmp_path / "checkpoints")
    name = "20260101T000000000000Z-0123abcd.json"
    store.put_new(name, b"first")
    with pytest.raises(FileExistsError):
        store.put_new(name, b"second")
    assert (tmp_path / "checkpoints" / name).read_bytes() == b"first"
    assert [path.name for path in (tmp_path / "checkpoints").iterdir()] == [name]  # no temp file left behind
    assert store.latest() == (name, b"first")


def test_checkpoints_taken_while_writers_append_are_true_prefixes_of_the_chains(settings):
    stop = threading.Event()
    errors = []

    def write(chain):
        try:
            while not stop.is_set():
                record(chain, "busy")
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    writers = [threading.Thread(target=write, args=(chain,)) for chain in (1, 2, 3)]
    for writer in writers:
        writer.start()
    try:
        written = []
        for _ in range(5):
            call_command("audit_checkpoint", stdout=StringIO())
            written.append(latest_checkpoint())
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert not errors
    for checkpoint in written:
        for mark in checkpoint.chains:
            assert AuditEvent.objects.get(pk=mark.last_event_id).hash == mark.last_hash
            assert AuditEvent.objects.filter(chain=mark.chain, id__lte=mark.last_event_id).count() == mark.row_count
    assert written[-1].row_count > written[0].row_count
    verify()


@pytest.mark.celery
def test_the_beat_task_writes_a_checkpoint_to_the_local_directory(settings, celery_worker_process):
    from bankcore.celery import app
    from bankcore.tasks import audit_checkpoint

    entry = settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]
    assert entry["task"] == "bankcore.tasks.audit_checkpoint"
    assert app.amqp.router.route({}, entry["task"])["queue"].name == "maintenance"
    events = history(8, 3)
    result = audit_checkpoint.delay().get(timeout=60)
    assert result["ok"], result
    (path,) = checkpoint_files(settings)
    assert result["location"] == str(path)
    checkpoint = latest_checkpoint()
    assert [(m.chain, m.last_event_id, m.last_hash, m.row_count) for m in checkpoint.chains] == [
        (8, events[-1].pk, events[-1].hash, 3)
    ]


@pytest.fixture
def s3_bucket(settings):
    """A real S3 API (moto's server) on a loopback port, with an empty bucket configured for checkpoints."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        # moto keeps its buckets per process, not per server: start from none.
        requests.post(f"http://{host}:{port}/moto-api/reset", timeout=10).raise_for_status()
        settings.AUDIT_CHECKPOINT_S3_BUCKET = "bank-audit"
        settings.AUDIT_CHECKPOINT_S3_PREFIX = "checkpoints/"
        settings.AUDIT_CHECKPOINT_S3_ENDPOINT_URL = f"http://{host}:{port}"
        settings.AUDIT_CHECKPOINT_S3_REGION = "us-east-1"
        settings.AUDIT_CHECKPOINT_S3_ACCESS_KEY_ID = "test-access-key"
        settings.AUDIT_CHECKPOINT_S3_SECRET_ACCESS_KEY = "test-secret-key"
        client = boto3.client(
            "s3",
            endpoint_url=settings.AUDIT_CHECKPOINT_S3_ENDPOINT_URL,
            region_name="us-east-1",
            aws_access_key_id="test-access-key",
            aws_secret_access_key="test-secret-key",
        )
        client.create_bucket(Bucket="bank-audit")
        yield client
    finally:
        server.stop()


def _keys(client) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket="bank-audit").get("Contents", []))


def test_the_command_and_the_beat_task_write_checkpoints_to_s3(settings, s3_bucket):
    from bankcore.tasks import audit_checkpoint

    events = history(12, 2)
    out = StringIO()
    call_command("audit_checkpoint", stdout=out)
    assert "s3://bank-audit/checkpoints/" in out.getvalue()
    record(12, "later")
    result = audit_checkpoint.apply().get()
    assert result["ok"] and result["location"].startswith("s3://bank-audit/checkpoints/"), result
    keys = _keys(s3_bucket)
    assert len(keys) == 2 and all(key.startswith("checkpoints/") for key in keys)
    assert not Path(settings.AUDIT_CHECKPOINT_DIR).exists()  # S3 configured: nothing local

    assert "every chain extends checkpoint" in verify()
    delete_tail_and_rewind(12, keep_through=events[0])
    with pytest.raises(CommandError, match="chain 12 is shorter than its last checkpoint"):
        verify()


def test_an_s3_checkpoint_is_never_overwritten_and_a_tampered_one_fails(settings, s3_bucket):
    from botocore.exceptions import ClientError

    history(12, 2)
    call_command("audit_checkpoint", stdout=StringIO())
    (key,) = _keys(s3_bucket)
    store = S3CheckpointStore(bucket="bank-audit", prefix="checkpoints/", client=s3_bucket)
    with pytest.raises(ClientError, match="PreconditionFailed"):
        store.put_new(key.removeprefix("checkpoints/"), b"{}")
    document = json.loads(s3_bucket.get_object(Bucket="bank-audit", Key=key)["Body"].read())
    document["chains"][0]["row_count"] = 1
    # The bucket's owner (not the app) can still replace an object: the signature catches it.
    s3_bucket.put_object(Bucket="bank-audit", Key=key, Body=json.dumps(document).encode())
    with pytest.raises(CommandError, match="invalid signature"):
        verify()
