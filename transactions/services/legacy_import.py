"""Importing the legacy core's customers and accounts from its fixed-width export (docs/legacy.md).

Two streaming passes over the file, memory flat whatever its size:

1. Totals: read every line, write each malformed one to the reject file (line number, reason,
   the raw record), and compare what the file holds with its trailer (record count, customer
   and account counts, control total, account-number hash total). Any disagreement, or no
   header or trailer: nothing is imported and the report says why (the command exits 1).
2. Import: per chunk of whole customer blocks, one database transaction creates the new
   customers (users with no usable password until they activate), their bank accounts (the
   legacy IBAN stays the account number) and one opening-balance journal transaction per funded
   account, from the bank's `migration` internal account, and maps each legacy number to what
   was created (accounts.LegacyCustomer / LegacyAccount).

Idempotent: a legacy number that is already mapped is skipped when its record is unchanged;
a changed record (same number, other data) is never applied: it goes to the reject file as a
conflict. So a re-run changes nothing, and a run cut short resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import BankAccount, LegacyAccount, LegacyCustomer, User
from accounts.services.bank_accounts import internal_account
from bankcore.audit import audit_record
from integrations.legacy.export import (
    HASH_MODULUS,
    ExportHeader,
    ExportReader,
    ExportTrailer,
    RejectedLine,
)
from integrations.legacy.export import (
    LegacyAccount as AccountRecord,
)
from integrations.legacy.export import (
    LegacyCustomer as CustomerRecord,
)
from transactions.lock_objects import bank_accounts_for_update
from transactions.models import Transaction
from transactions.services.ledger import Leg, Posting, posting_prepare

# phase ("verifying" | "importing"), bytes read, bytes in the file
ProgressCallback = Callable[[str, int, int], None]
DEFAULT_CHUNK_SIZE = 2000
# Advisory-lock namespace of "a legacy import is running" (any fixed number unused elsewhere).
_IMPORT_LOCK = (0x4C47, 1)


class LegacyImportBusy(RuntimeError):
    """Another legacy import is running against this database."""


@dataclass
class ImportReport:
    path: str
    header: ExportHeader | None = None
    trailer: ExportTrailer | None = None
    lines: int = 0
    # What the file holds (pass 1)
    records: int = 0  # lines between header and trailer
    valid_customers: int = 0
    valid_accounts: int = 0
    control_total: int = 0
    account_hash_total: int = 0
    rejected: int = 0  # malformed lines, in the reject file
    totals_errors: list[str] = field(default_factory=list)
    # What the import did (pass 2)
    customers_created: int = 0
    accounts_created: int = 0
    customers_skipped: int = 0  # already imported, unchanged
    accounts_skipped: int = 0
    conflicts: int = 0  # refused by the bank's data (changed since imported, e-mail or IBAN taken), in the reject file
    opening_postings: int = 0
    openings: dict[str, int] = field(default_factory=dict)  # currency -> minor units posted
    seconds: float = 0.0

    @property
    def totals_ok(self) -> bool:
        return not self.totals_errors


class _Rejects:
    """The reject file: one tab-separated line per refused record: line number, kind
    (malformed | conflict), reason, the raw record (last, so a tab in it cannot shift columns)."""

    def __init__(self, path: str | Path | None, *, append: bool = False) -> None:
        self.stream: IO[str] | None = (
            open(path, "a" if append else "w", encoding="utf-8", newline="\n") if path else None  # noqa: SIM115
        )

    def write(self, line_number: int, kind: str, reason: str, raw: str) -> None:
        if self.stream is not None:
            self.stream.write(f"{line_number}\t{kind}\t{reason}\t{raw}\n")

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def legacy_import(
    *,
    path: str | Path,
    rejects_path: str | Path | None = None,
    progress: ProgressCallback | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    actor: Any = None,
) -> ImportReport:
    """Import a legacy export (see the module docstring). Returns the report; imports nothing
    when `report.totals_ok` is False. Streams; one database transaction per chunk of about
    `chunk_size` records, so a failure loses at most the chunk it was in (a re-run resumes).

    Serialised: one import at a time per database (LegacyImportBusy otherwise). Raises OSError
    when the file cannot be read. Audited: one event per run (`legacy.import` or
    `legacy.import_refused`).
    """
    started = time.monotonic()
    report = ImportReport(path=str(path))
    with _import_lock():
        rejects = _Rejects(rejects_path)
        try:
            _verify_totals(ExportReader(path), report, rejects, progress)
        finally:
            rejects.close()
        if report.totals_ok:
            rejects = _Rejects(rejects_path, append=True)
            try:
                _import_records(ExportReader(path), report, rejects, progress, chunk_size)
            finally:
                rejects.close()
        report.seconds = time.monotonic() - started
        with transaction.atomic():
            audit_record(
                action="legacy.import" if report.totals_ok else "legacy.import_refused",
                actor=actor,
                target_type="legacy_export",
                target_id=Path(path).name,
                details=_audit_details(report),
            )
    return report


def _audit_details(report: ImportReport) -> dict[str, Any]:
    details: dict[str, Any] = {
        "lines": report.lines,
        "rejected": report.rejected,
        "customers_created": report.customers_created,
        "accounts_created": report.accounts_created,
        "customers_skipped": report.customers_skipped,
        "accounts_skipped": report.accounts_skipped,
        "conflicts": report.conflicts,
        "openings": report.openings,
    }
    if report.header is not None:
        details["source_system"] = report.header.source_system
        details["file_sequence"] = report.header.file_sequence
        details["exported_at"] = report.header.exported_at.isoformat()
    if report.totals_errors:
        details["totals_errors"] = report.totals_errors
    return details


class _import_lock:
    def __enter__(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", list(_IMPORT_LOCK))
            if not cursor.fetchone()[0]:
                raise LegacyImportBusy("Another legacy import is running.")

    def __exit__(self, *exc: object) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", list(_IMPORT_LOCK))


def _tick(progress: ProgressCallback | None, phase: str, reader: ExportReader) -> None:
    if progress is not None:
        progress(phase, reader.bytes_read, reader.total_bytes or reader.bytes_read)


# --- pass 1: what the file holds against what its trailer says ---------------------------------


def _verify_totals(
    reader: ExportReader, report: ImportReport, rejects: _Rejects, progress: ProgressCallback | None
) -> None:
    for item in reader:
        report.lines += 1
        if isinstance(item, ExportHeader):
            report.header = item
            continue
        if isinstance(item, ExportTrailer):
            report.trailer = item
            continue
        if report.trailer is None:
            report.records += 1
        if isinstance(item, RejectedLine):
            report.rejected += 1
            rejects.write(item.line_number, "malformed", item.reason, item.raw)
        elif isinstance(item, CustomerRecord):
            report.valid_customers += 1
        else:
            report.valid_accounts += 1
            report.control_total += item.balance
            report.account_hash_total = (report.account_hash_total + int(item.number)) % HASH_MODULUS
        if report.lines % 5000 == 0:
            _tick(progress, "verifying", reader)
    _tick(progress, "verifying", reader)
    report.totals_errors = _totals_errors(report)


def _totals_errors(report: ImportReport) -> list[str]:
    errors = []
    if report.header is None:
        errors.append("no valid header record on line 1")
    elif report.header.bank_code != settings.BANK_CODE:
        errors.append(f"the header's bank code {report.header.bank_code} is not this bank's ({settings.BANK_CODE})")
    trailer = report.trailer
    if trailer is None:
        errors.append("no valid trailer record: the file may be truncated")
        return errors
    if trailer.line_number != report.lines:
        errors.append(f"the trailer is on line {trailer.line_number}, not the last line ({report.lines})")
    checks = (
        ("records between header and trailer", trailer.record_count, report.records),
        ("valid customer records", trailer.customer_count, report.valid_customers),
        ("valid account records", trailer.account_count, report.valid_accounts),
        ("control total of balances (minor units)", trailer.control_total, report.control_total),
        ("hash total of account numbers", trailer.account_hash_total, report.account_hash_total),
    )
    for what, claimed, found in checks:
        if claimed != found:
            errors.append(f"{what}: the trailer says {claimed}, the file holds {found}")
    return errors


# --- pass 2: the import, one transaction per chunk ---------------------------------------------

Block = tuple[CustomerRecord, list[AccountRecord]]


def _blocks(reader: ExportReader) -> Iterator[Block]:
    """Each valid customer with its valid accounts (the reader only lets through accounts that
    follow their customer's record)."""
    block: Block | None = None
    for item in reader:
        if isinstance(item, CustomerRecord):
            if block is not None:
                yield block
            block = (item, [])
        elif isinstance(item, AccountRecord):
            assert block is not None and block[0].number == item.customer_number  # the reader's rule
            block[1].append(item)
    if block is not None:
        yield block


def _import_records(
    reader: ExportReader,
    report: ImportReport,
    rejects: _Rejects,
    progress: ProgressCallback | None,
    chunk_size: int,
) -> None:
    chunk: list[Block] = []
    records = 0
    for block in _blocks(reader):
        chunk.append(block)
        records += 1 + len(block[1])
        if records >= chunk_size:
            _import_chunk(chunk, report, rejects)
            _tick(progress, "importing", reader)
            chunk, records = [], 0
    if chunk:
        _import_chunk(chunk, report, rejects)
    _tick(progress, "importing", reader)


def _import_chunk(chunk: list[Block], report: ImportReport, rejects: _Rejects) -> None:
    """One database transaction: the chunk's new customers, accounts, opening postings and
    mappings commit together. Conflicts are written to the reject file after the commit."""
    conflicts: list[tuple[int, str, str]] = []
    with transaction.atomic():
        created = _chunk_write(chunk, report, conflicts)
    for line_number, reason, raw in conflicts:
        rejects.write(line_number, "conflict", reason, raw)
    report.conflicts += len(conflicts)
    report.customers_created += created[0]
    report.accounts_created += created[1]


def _chunk_write(chunk: list[Block], report: ImportReport, conflicts: list[tuple[int, str, str]]) -> tuple[int, int]:
    now = timezone.now()
    customer_numbers = [customer.number for customer, _ in chunk]
    known_customers = dict(
        LegacyCustomer.objects.filter(number__in=customer_numbers).values_list("number", "fingerprint")
    )
    known_owners = dict(LegacyCustomer.objects.filter(number__in=customer_numbers).values_list("number", "user_id"))
    account_numbers = [account.number for _, accounts in chunk for account in accounts]
    known_accounts = dict(LegacyAccount.objects.filter(number__in=account_numbers).values_list("number", "fingerprint"))

    # Customers: skip the unchanged, refuse the changed and those whose e-mail another user has.
    new_customers = [customer for customer, _ in chunk if customer.number not in known_customers]
    taken_emails = set(
        User.objects.annotate(email_lower=Lower("email"))
        .filter(email_lower__in=[c.email for c in new_customers])
        .values_list("email_lower", flat=True)
    )
    users: list[User] = []
    customer_maps: list[LegacyCustomer] = []
    owners: dict[str, UUID] = dict(known_owners)
    refused: dict[str, int] = {}  # customer number -> its line, for its accounts' conflict reason
    for customer, _ in chunk:
        fingerprint = known_customers.get(customer.number)
        if fingerprint is not None:
            if fingerprint == customer.fingerprint:
                report.customers_skipped += 1
            else:
                conflicts.append((customer.line_number, "customer changed since it was imported: not applied",
                                  customer.record))  # fmt: skip
            continue
        if customer.email in taken_emails:
            conflicts.append(
                (customer.line_number, f"e-mail {customer.email} belongs to another user", customer.record)
            )
            refused[customer.number] = customer.line_number
            continue
        taken_emails.add(customer.email)
        user = User(
            email=customer.email,
            phone=customer.phone,
            full_name=customer.full_name,
            password=make_password(None),  # no usable password until the customer activates
            date_joined=now,
        )
        users.append(user)
        owners[customer.number] = user.pk
        customer_maps.append(
            LegacyCustomer(
                number=customer.number,
                user_id=user.pk,
                fingerprint=customer.fingerprint,
                line_number=customer.line_number,
                imported_at=now,
            )
        )
    User.objects.bulk_create(users)
    LegacyCustomer.objects.bulk_create(customer_maps)

    # Accounts: the same for accounts; an IBAN another account has already is a conflict.
    new_accounts = [
        (customer, account)
        for customer, accounts in chunk
        for account in accounts
        if account.number not in known_accounts
    ]
    taken_ibans = set(
        BankAccount.objects.filter(iban__in=[a.iban for _, a in new_accounts]).values_list("iban", flat=True)
    )
    bank_accounts: list[BankAccount] = []
    account_maps: list[LegacyAccount] = []
    funded: list[tuple[AccountRecord, BankAccount]] = []
    for _, accounts in chunk:
        for account in accounts:
            fingerprint = known_accounts.get(account.number)
            if fingerprint is not None:
                if fingerprint == account.fingerprint:
                    report.accounts_skipped += 1
                else:
                    conflicts.append((account.line_number, "account changed since it was imported: not applied",
                                      account.record))  # fmt: skip
                continue
            if account.customer_number in refused:
                reason = f"its customer (line {refused[account.customer_number]}) was not imported"
                conflicts.append((account.line_number, reason, account.record))
                continue
            if account.iban in taken_ibans:
                conflicts.append(
                    (account.line_number, f"IBAN {account.iban} belongs to another account", account.record)
                )
                continue
            taken_ibans.add(account.iban)
            kind = BankAccount.Kind(account.kind)
            owner_id = owners[account.customer_number]
            bank_account = BankAccount(
                owner_id=owner_id,
                kind=kind,
                currency=account.currency,
                status=BankAccount.Status(account.status),
                iban=account.iban,
                name=f"{kind.label} account {account.currency}",
                created_at=now,
            )
            bank_accounts.append(bank_account)
            account_maps.append(
                LegacyAccount(
                    number=account.number,
                    account_id=bank_account.pk,
                    owner_id=owner_id,
                    customer_id=account.customer_number,
                    opening_balance=account.balance,
                    fingerprint=account.fingerprint,
                    line_number=account.line_number,
                    imported_at=now,
                )
            )
            if account.balance > 0:
                funded.append((account, bank_account))
    BankAccount.objects.bulk_create(bank_accounts)
    LegacyAccount.objects.bulk_create(account_maps)
    _post_openings(funded, report)
    return len(users), len(bank_accounts)


def _post_openings(funded: list[tuple[AccountRecord, BankAccount]], report: ImportReport) -> None:
    """One OPENING journal transaction per funded account: migration account -> the account.

    Call inside the chunk's transaction. Each posting is validated by the ledger's own
    `posting_prepare` under the row locks of the chunk's accounts and the migration accounts
    (taken once, in pk order, so the hot migration row is locked once per chunk); the chunk's
    postings are then written as ledger_post() would write them, in three set statements
    (journal rows, entries, balances) instead of one call per posting. The database checks
    them as it checks every posting: the entries' currency trigger at insert, the deferred
    balanced-transaction trigger and the balance constraints at COMMIT.
    """
    if not funded:
        return
    migration = {
        currency: internal_account(purpose="migration", currency=currency)
        for currency in sorted({account.currency for account, _ in funded})
    }
    locked = bank_accounts_for_update([*(a.pk for _, a in funded), *(m.pk for m in migration.values())])
    # Never dated before the migration accounts' latest entry (the ledger's posting order).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT max(created_at) FROM transactions_entry WHERE account_id = ANY(%s::uuid[])",
            [[str(m.pk) for m in migration.values()]],
        )
        latest: datetime | None = cursor.fetchone()[0]
    now = max(timezone.now(), latest) if latest else timezone.now()
    postings: list[Posting] = []
    for account, bank_account in funded:
        source = migration[account.currency]
        postings.append(
            posting_prepare(
                kind=Transaction.Kind.OPENING,
                legs=[Leg(source.pk, -account.balance), Leg(bank_account.pk, account.balance)],
                currency=account.currency,
                reference=f"legacy account {account.number}",
                description="Opening balance from the legacy core",
                source_account_id=source.pk,
                destination_account_id=bank_account.pk,
                amount=account.balance,
                require_active=False,  # frozen accounts keep their money too
                locked=locked,
                at=now,
            )
        )
        report.openings[account.currency] = report.openings.get(account.currency, 0) + account.balance
    _postings_write(postings, now)
    report.opening_postings += len(postings)


def _postings_write(postings: list[Posting], now: datetime) -> None:
    """Journal rows, entries (in posting order, so each account's balance_after follows its
    (created_at, id) order) and the accounts' final balances."""
    journals = [posting.journal for posting in postings]
    entries = [(posting.journal, line) for posting in postings for line in posting.entries]
    with connection.cursor() as cursor:
        # Column arrays through unnest(): one statement per table, no per-row SQL to build.
        cursor.execute(
            "INSERT INTO transactions_transaction (id, kind, status, reference, description, source_account_id,"
            " destination_account_id, amount, currency, created_at, posted_at)"
            " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::uuid[],"
            " %s::uuid[], %s::bigint[], %s::text[], %s::timestamptz[], %s::timestamptz[])",
            [
                [str(j.pk) for j in journals],
                [j.kind for j in journals],
                [j.status for j in journals],
                [j.reference for j in journals],
                [j.description for j in journals],
                [str(j.source_account_id) for j in journals],
                [str(j.destination_account_id) for j in journals],
                [j.amount for j in journals],
                [j.currency for j in journals],
                [j.created_at for j in journals],
                [j.posted_at for j in journals],
            ],
        )
        # WITH ORDINALITY + ORDER BY: ids follow posting order, so balance_after follows (created_at, id).
        cursor.execute(
            "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)"
            " SELECT e.transaction_id, e.account_id, e.amount, e.currency, e.balance_after, %s"
            " FROM unnest(%s::uuid[], %s::uuid[], %s::bigint[], %s::text[], %s::bigint[])"
            " WITH ORDINALITY AS e(transaction_id, account_id, amount, currency, balance_after, n) ORDER BY e.n",
            [
                now,
                [str(journal.pk) for journal, _ in entries],
                [str(line.account_id) for _, line in entries],
                [line.amount for _, line in entries],
                [journal.currency for journal, _ in entries],
                [line.balance_after for _, line in entries],
            ],
        )
    balances: dict[UUID, int] = {}
    for posting in postings:
        balances.update(posting.balances)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts_bankaccount AS a SET balance = v.balance"
            " FROM unnest(%s::uuid[], %s::bigint[]) AS v(id, balance) WHERE a.id = v.id",
            [[str(pk) for pk in balances], list(balances.values())],
        )
