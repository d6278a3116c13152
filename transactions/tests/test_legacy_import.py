"""The legacy import (issue 15): every good record in, every bad one in the reject file, totals
proven by the ledger, a re-run changes nothing, and a file whose trailer disagrees imports nothing."""

from __future__ import annotations

import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from accounts.models import BankAccount, LegacyAccount, LegacyCustomer, User
from bankcore.models import AuditEvent
from integrations.legacy.export import format_record, write_sample_export
from transactions.models import Entry, Transaction
from transactions.services.verify import ledger_verify
from transactions.tests.snapshots import assert_unchanged, ledger_snapshot

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_import(path: Path, rejects: Path, **options) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_legacy_accounts", str(path), rejects=str(rejects), stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def rejected_lines(rejects: Path) -> dict[int, tuple[str, str]]:
    """line number -> (kind, reason), from the reject file."""
    lines = {}
    for row in rejects.read_text(encoding="utf-8").splitlines():
        number, kind, reason, _raw = row.split("\t", 3)
        lines[int(number)] = (kind, reason)
    return lines


def migration_balances() -> dict[str, int]:
    return dict(BankAccount.objects.filter(internal_code__startswith="migration:").values_list("currency", "balance"))


def replace_line(path: Path, line_number: int, record: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line_number - 1] = record
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_import_of_100k_records_with_planted_bad_lines_then_a_rerun_imports_nothing(tmp_path):
    export, rejects = tmp_path / "legacy.txt", tmp_path / "legacy.rejects"
    truth = write_sample_export(export, customers=39_300, bad_lines=240, seed=15)
    assert truth.records >= 100_000
    assert len(truth.bad_lines) == 240

    started = time.monotonic()
    out, _ = run_import(export, rejects, no_progress=True)
    elapsed = time.monotonic() - started
    print(f"imported {truth.records} records in {elapsed:.1f} s")

    # Every good record in.
    assert LegacyCustomer.objects.count() == truth.customers
    assert LegacyAccount.objects.count() == truth.accounts
    assert User.objects.filter(legacy_customer__isnull=False).count() == truth.customers
    assert BankAccount.objects.exclude(kind=BankAccount.Kind.INTERNAL).count() == truth.accounts
    assert BankAccount.objects.filter(status=BankAccount.Status.FROZEN).count() == truth.frozen_accounts
    assert not User.objects.filter(legacy_customer__isnull=False).exclude(password__startswith="!").exists()
    # Every bad one in the reject file, with its line number, and nothing else.
    rejected = rejected_lines(rejects)
    assert set(rejected) == set(truth.bad_lines)
    assert {kind for kind, _ in rejected.values()} == {"malformed"}
    # Totals proven: the openings sum to the file's totals, the migration account holds the other side.
    customer_entries = Entry.objects.filter(account__owner__isnull=False)
    posted = dict(
        customer_entries.values_list("currency").annotate(total=Sum("amount")).values_list("currency", "total")
    )
    assert posted == {currency: total for currency, total in truth.totals.items() if total}
    assert migration_balances() == {currency: -total for currency, total in truth.totals.items()}
    assert sum(truth.totals.values()) == truth.control_total
    assert Transaction.objects.filter(kind=Transaction.Kind.OPENING).count() == truth.funded_accounts
    report = ledger_verify()
    assert report.ok, report.violations
    assert f"customers: {truth.customers} created" in out

    # A re-run imports nothing new.
    before = ledger_snapshot()
    users = User.objects.count()
    out, _ = run_import(export, rejects, no_progress=True)
    assert_unchanged(before, ledger_snapshot(), ignore=("audit_events",))
    assert User.objects.count() == users
    assert f"customers: 0 created, {truth.customers} already imported" in out
    assert f"accounts: 0 created, {truth.accounts} already imported" in out
    assert set(rejected_lines(rejects)) == set(truth.bad_lines)
    assert AuditEvent.objects.filter(action="legacy.import").count() == 2


def test_trailer_disagreeing_exits_1_and_imports_nothing(tmp_path):
    export, rejects = tmp_path / "legacy.txt", tmp_path / "legacy.rejects"
    truth = write_sample_export(export, customers=50, bad_lines=3, seed=2)
    replace_line(
        export,
        truth.lines,
        format_record(
            "T",
            {
                "record_count": truth.records,
                "customer_count": truth.customers,
                "account_count": truth.accounts,
                "control_total_sign": "+",
                "control_total": truth.control_total + 1,  # one cent the file does not hold
                "account_hash_total": truth.account_hash_total,
            },
        ),
    )
    before = ledger_snapshot()
    err = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("import_legacy_accounts", str(export), rejects=str(rejects), stdout=StringIO(), stderr=err)
    assert exited.value.code == 1
    assert "control total of balances (minor units): the trailer says" in err.getvalue()
    assert "nothing was imported" in err.getvalue()
    assert_unchanged(before, ledger_snapshot(), ignore=("audit_events",))
    assert not LegacyCustomer.objects.exists()
    assert AuditEvent.objects.filter(action="legacy.import_refused").count() == 1
    # The planted lines were reported all the same, for the operator to look at.
    assert set(rejected_lines(rejects)) == set(truth.bad_lines)


def test_a_lost_line_is_a_totals_mismatch(tmp_path):
    export, rejects = tmp_path / "legacy.txt", tmp_path / "legacy.rejects"
    truth = write_sample_export(export, customers=30, seed=3)
    lines = export.read_text(encoding="utf-8").splitlines()
    del lines[5]  # lost in transit
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        run_import(export, rejects)
    assert not LegacyAccount.objects.exists()
    assert truth.records == len(lines) - 1  # the trailer still counts the lost line


def test_a_changed_record_on_rerun_is_a_conflict_and_not_applied(tmp_path):
    export, rejects = tmp_path / "legacy.txt", tmp_path / "legacy.rejects"
    truth = write_sample_export(export, customers=20, seed=4)
    run_import(export, rejects)
    lines = export.read_text(encoding="utf-8").splitlines()
    number = next(n for n, line in enumerate(lines, 1) if line.startswith("A") and int(line[62:77]) > 0)
    record = lines[number - 1]
    account = LegacyAccount.objects.select_related("account").get(number=record[1:13])
    old_balance = account.account.balance
    # The legacy core re-exports the account with 1.00 more; the trailer agrees with the new file.
    replace_line(export, number, record[:62] + f"{int(record[62:77]) + 100:015d}" + record[77:])
    replace_line(
        export,
        truth.lines,
        format_record(
            "T",
            {
                "record_count": truth.records,
                "customer_count": truth.customers,
                "account_count": truth.accounts,
                "control_total_sign": "+",
                "control_total": truth.control_total + 100,
                "account_hash_total": truth.account_hash_total,
            },
        ),
    )
    before = ledger_snapshot()
    _, err = run_import(export, rejects)
    assert_unchanged(before, ledger_snapshot(), ignore=("audit_events",))
    account.account.refresh_from_db()
    assert account.account.balance == old_balance
    assert rejected_lines(rejects) == {number: ("conflict", "account changed since it was imported: not applied")}
    assert "conflicts (not applied): 1" in err


def test_a_customer_whose_email_another_user_has_is_a_conflict_with_its_accounts(tmp_path):
    export, rejects = tmp_path / "legacy.txt", tmp_path / "legacy.rejects"
    write_sample_export(export, customers=10, seed=5)
    lines = export.read_text(encoding="utf-8").splitlines()
    email = lines[1][71:151].strip()
    User.objects.create_user(email=email.upper(), password=None, full_name="Already Here")
    run_import(export, rejects)
    rejected = rejected_lines(rejects)
    assert rejected[2] == ("conflict", f"e-mail {email} belongs to another user")
    following = [
        n for n in range(3, len(lines) + 1) if lines[n - 1].startswith("A") and lines[n - 1][13:23] == lines[1][1:11]
    ]
    assert following and all(rejected[n][0] == "conflict" for n in following)
    assert LegacyCustomer.objects.count() == 9
    assert ledger_verify().ok


def test_progress_bar_is_drawn_in_place(tmp_path):
    export, rejects = tmp_path / "legacy.txt", tmp_path / "legacy.rejects"
    write_sample_export(export, customers=200, seed=6)
    _, err = run_import(export, rejects)
    assert "\r  verifying" in err and "\r  importing" in err and "100.0%" in err


def test_unreadable_and_garbage_files_give_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run_import(tmp_path / "missing.txt", tmp_path / "r")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 40)
    err = StringIO()
    with pytest.raises(SystemExit):
        call_command("import_legacy_accounts", str(garbage), stdout=StringIO(), stderr=err, no_progress=True)
    assert "no valid header record on line 1" in err.getvalue()
    assert "no valid trailer record" in err.getvalue()
    assert Path(f"{garbage}.rejects").read_text(encoding="utf-8").count("\tmalformed\t") >= 1
    assert not LegacyCustomer.objects.exists()
