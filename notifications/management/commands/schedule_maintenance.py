"""Schedule a maintenance window: shown on /api/v1/status and announced to customers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from bankcore.api.exceptions import BankError
from notifications import services
from notifications.management.commands._incident_progress import add_follow_arguments, follow_fanout
from notifications.models import Service


def _when(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"Not a date and time: {value!r} (e.g. 2026-12-01T02:00 or 2026-12-01T02:00+01:00).")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = (
        "Schedule planned maintenance: show it on /api/v1/status and announce it to customers by "
        "e-mail and push (their maintenance preferences honoured); prints the window id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--start", required=True, help="Start, ISO 8601 (server time zone if none given).")
        parser.add_argument("--end", required=True, help="End, ISO 8601.")
        parser.add_argument(
            "--service",
            "--services",
            dest="services",
            action="append",
            default=[],
            choices=Service.values,
            help="Affected service (repeatable); none: all customers.",
        )
        parser.add_argument("--title", required=True, help="Short title, e.g. 'Core banking upgrade'.")
        parser.add_argument("--message", required=True, help="What customers are told.")
        parser.add_argument("--no-announce", action="store_true", help="Only show it on /api/v1/status; send nothing.")
        add_follow_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        announce = not options["no_announce"]
        try:
            window = services.maintenance_schedule(
                title=options["title"],
                message=options["message"],
                starts_at=_when(options["start"]),
                ends_at=_when(options["end"]),
                services=options["services"],
                actor="manage.py schedule_maintenance",
                announce=announce,
            )
        except BankError as exc:
            raise CommandError(f"{exc.message} {exc.details}") from exc
        self.stdout.write(str(window.id))
        if not announce:
            self.stderr.write("Maintenance window scheduled (shown on /api/v1/status, nobody notified).")
            return
        update = window.announcements.get()
        self.stderr.write(
            f"Maintenance window scheduled; announcing it to {update.recipients_total} customers by "
            f"{', '.join(update.channels)} (as their preferences allow)."
        )
        if not options["no_wait"] and not follow_fanout(self, update.pk, timeout=options["timeout"]):
            raise CommandError("The fan-out is still running (is a Celery worker consuming 'notifications'?).")
