"""manage.py import_legacy_accounts FILE [--rejects FILE] (docs/legacy.md)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bankcore.money import format_amount
from transactions.services.legacy_import import (
    DEFAULT_CHUNK_SIZE,
    ImportReport,
    LegacyImportBusy,
    legacy_import,
)


class _ProgressBar:
    """A bar redrawn in place (carriage return) at most every `interval` seconds, by bytes read."""

    def __init__(self, stream: Any, *, width: int = 30, interval: float = 0.2) -> None:
        self.stream, self.width, self.interval = stream, width, interval
        self.phase = ""
        self.drawn_at = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if phase == self.phase and not finished and now - self.drawn_at < self.interval:
            return
        if phase != self.phase and self.phase:
            self.stream.write("\n")
        self.phase, self.drawn_at = phase, now
        share = done / total if total else 1.0
        filled = int(self.width * share)
        self.stream.write(
            f"\r  {phase:<10} [{'#' * filled}{'.' * (self.width - filled)}] {share:6.1%}"
            f"  {done / 1e6:,.1f} of {total / 1e6:,.1f} MB"
        )
        self.stream.flush()

    def end(self) -> None:
        if self.phase:
            self.stream.write("\n")
            self.stream.flush()


class Command(BaseCommand):
    help = (
        "Import customers and accounts from the legacy core's fixed-width export: malformed records "
        "go to the reject file with their line numbers; a re-run imports nothing twice. "
        "Exit 1, importing nothing, when the trailer's counts or control totals disagree with the file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The legacy export (docs/legacy.md).")
        parser.add_argument("--rejects", help="Where refused records go (default: FILE.rejects).")
        parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="Records per transaction.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        rejects = Path(options["rejects"] or f"{path}.rejects")
        if not path.is_file():
            raise CommandError(f"Cannot read {path}: no such file.")
        bar = None if options["no_progress"] else _ProgressBar(self.stderr._out)
        try:
            report = legacy_import(path=path, rejects_path=rejects, progress=bar, chunk_size=options["chunk_size"])
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from None
        except LegacyImportBusy as exc:
            raise CommandError(str(exc)) from None
        finally:
            if bar is not None:
                bar.end()
        self._print(report, rejects)
        if not report.totals_ok:
            for error in report.totals_errors:
                self.stderr.write(self.style.ERROR(f"TOTALS: {error}"))
            self.stderr.write(self.style.ERROR("Control totals disagree: nothing was imported."))
            sys.exit(1)

    def _print(self, report: ImportReport, rejects: Path) -> None:
        write = self.stdout.write
        write(f"file: {report.path} ({report.lines} lines, {report.records} records)")
        write(f"valid records: {report.valid_customers} customers, {report.valid_accounts} accounts")
        write(f"rejected (malformed): {report.rejected}")
        if not report.totals_ok:
            return
        write(f"customers: {report.customers_created} created, {report.customers_skipped} already imported")
        write(f"accounts: {report.accounts_created} created, {report.accounts_skipped} already imported")
        write(f"opening balances: {report.opening_postings} postings from the migration account")
        for currency, total in sorted(report.openings.items()):
            write(f"  opening total {currency}: {format_amount(total, currency)}")
        if report.conflicts:
            self.stderr.write(self.style.WARNING(f"conflicts (not applied): {report.conflicts}; see the reject file"))
        if report.rejected or report.conflicts:
            write(f"reject file: {rejects}")
        rate = (report.valid_customers + report.valid_accounts) / report.seconds if report.seconds else 0.0
        write(self.style.SUCCESS(f"imported in {report.seconds:.1f} s ({rate:,.0f} records/s)"))
