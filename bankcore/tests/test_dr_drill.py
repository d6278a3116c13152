"""The disaster-recovery drill, end to end on PostgreSQL: restore into a scratch database, verify, record."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from bankcore.backups.services import backup_create
from bankcore.models import DrDrill
from bankcore.tests.conftest import database_exists

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def drill(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("dr_drill", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_the_drill_restores_the_newest_backup_verifies_it_and_records_rto_and_rpo(backups, bank):
    backup_create()
    newest = backup_create()
    code, out, err = drill()
    assert code == 0, out + err
    assert f"backup {newest.backup_id}" in out
    assert "verify_ledger: OK" in out and "verify_audit_log: OK" in out
    assert "match the manifest" in out
    assert re.search(r"RTO \(restore\): \d+\.\d s", out) and re.search(r"RPO \(backup age\): \d+ s", out)
    record = DrDrill.objects.get()
    assert record.ok and record.backup_id == newest.backup_id and record.problems == []
    assert record.rto_seconds > 0 and record.rpo_seconds >= 0
    assert not database_exists(record.scratch_database)  # dropped afterwards


def test_the_drill_keeps_its_scratch_database_when_asked(backups, bank):
    from bankcore.tests.conftest import drop_database

    backup_create()
    code, out, err = drill("--keep")
    record = DrDrill.objects.get()
    try:
        assert code == 0, out + err
        assert database_exists(record.scratch_database)
    finally:
        drop_database(record.scratch_database)


def test_a_drill_on_a_broken_backup_exits_1_and_is_recorded_as_failed(backups, bank):
    broken = backup_create()
    path = Path(backups.BACKUP_DIR) / f"{broken.backup_id}.bcbk"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.chmod(0o640)
    path.write_bytes(bytes(data))
    code, _out, err = drill()
    assert code == 1
    assert "SHA-256 checksum" in err and "DR drill FAILED" in err
    record = DrDrill.objects.get()
    assert not record.ok and record.rto_seconds is None
    assert "SHA-256 checksum" in record.problems[0]
    assert not database_exists(record.scratch_database)


def test_a_drill_on_a_ledger_broken_before_the_backup_fails_verify_ledger(backups, bank):
    """A backup can be intact and still hold a broken ledger: the drill's verification says so."""
    from bankcore.testing import owner_cursor

    with owner_cursor() as cursor:
        # As the owner with triggers off: a balance that no longer equals its entries.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE accounts_bankaccount SET balance = balance + 1 WHERE id = %s", [bank["source"].pk])
    backup_create()
    code, out, _err = drill()
    assert code == 1
    assert "verify_ledger: FAILED" in out
    record = DrDrill.objects.get()
    assert not record.ok and record.rto_seconds is not None  # the restore itself worked
    assert any("verify_ledger failed" in problem for problem in record.problems)


def test_a_drill_without_any_backup_exits_1(backups, transactional_db):
    code, _out, err = drill()
    assert code == 1 and "no good backup" in err
    assert not DrDrill.objects.get().ok


def test_the_weekly_beat_task_runs_the_drill(backups, bank):
    from bankcore.tasks import dr_drill

    backup_create()
    result = dr_drill.apply().get()
    assert result["ok"] and result["rto"] > 0, result


def test_drills_are_listed_read_only_in_the_admin(backups, bank, admin_user):
    from bankcore.testing import staff_client

    backup_create()
    drill()
    client = staff_client(admin_user)
    response = client.get("/admin/bankcore/drdrill/")
    assert response.status_code == 200 and b"DR drill" in response.content
    assert client.get("/admin/bankcore/drdrill/add/").status_code == 403
