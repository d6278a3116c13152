"""manage.py legacy_sample_export FILE --customers N [--bad-lines K] (docs/legacy.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.legacy.export import write_sample_export


class Command(BaseCommand):
    help = (
        "Write a legacy core export in the documented fixed-width layout: N customers with 1-3 "
        "accounts each and K planted malformed records, for tests and demos."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--customers", type=int, required=True)
        parser.add_argument("--bad-lines", type=int, default=0)
        parser.add_argument("--seed", type=int, default=0, help="Same seed, same file.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["customers"] < 1 or options["bad_lines"] < 0:
            raise CommandError("--customers must be at least 1 and --bad-lines not negative.")
        try:
            sample = write_sample_export(
                options["file"], customers=options["customers"], bad_lines=options["bad_lines"], seed=options["seed"]
            )
        except OSError as exc:
            raise CommandError(f"Cannot write {options['file']}: {exc.strerror or exc}") from None
        self.stdout.write(
            f"{sample.path}: {sample.lines} lines, {sample.customers} customers, {sample.accounts} accounts, "
            f"{len(sample.bad_lines)} planted bad lines"
        )
        for currency, total in sorted(sample.totals.items()):
            self.stdout.write(f"  total {currency}: {total} (minor units)")
