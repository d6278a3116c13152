"""Resolve an incident: it leaves /api/v1/status and customers get a short all-clear."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bankcore.api.exceptions import BankError
from notifications import services
from notifications.management.commands._incident_progress import add_follow_arguments, follow_fanout


class Command(BaseCommand):
    help = "Resolve an incident and send the all-clear."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("incident_id")
        parser.add_argument("--message", default="", help="All-clear text (default: a standard one).")
        add_follow_arguments(parser)

    def handle(self, *args: Any, incident_id: str, message: str, **options: Any) -> None:
        try:
            update = services.incident_resolve(
                incident_id=incident_id, message=message, actor="manage.py resolve_incident"
            )
        except BankError as exc:
            raise CommandError(f"{exc.message} {exc.details}") from exc
        self.stdout.write(str(update.id))
        if not options["no_wait"] and not follow_fanout(self, update.pk, timeout=options["timeout"]):
            raise CommandError("The fan-out is still running (is a Celery worker consuming 'notifications'?).")
