"""Open an incident: it shows on /api/v1/status and every active customer is told."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bankcore.api.exceptions import BankError
from notifications import services
from notifications.management.commands._incident_progress import add_follow_arguments, follow_fanout
from notifications.models import Incident, Service


class Command(BaseCommand):
    help = "Declare an incident, notify customers (SMS/e-mail by severity) and print its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--service", action="append", required=True, choices=Service.values, help="Affected service (repeatable)."
        )
        parser.add_argument("--severity", required=True, choices=Incident.Severity.values)
        parser.add_argument("--message", required=True, help="What customers are told.")
        parser.add_argument("--title", default="", help="Short title (default: from the services).")
        add_follow_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            incident = services.incident_declare(
                title=options["title"],
                message=options["message"],
                severity=options["severity"],
                services=options["service"],
                actor="manage.py declare_incident",
            )
        except BankError as exc:
            raise CommandError(f"{exc.message} {exc.details}") from exc
        update = incident.updates.get()
        self.stdout.write(str(incident.id))
        self.stderr.write(
            f"Incident declared ({incident.severity}); notifying {update.recipients_total} customers by "
            f"{', '.join(update.channels)}."
        )
        if not options["no_wait"] and not follow_fanout(self, update.pk, timeout=options["timeout"]):
            raise CommandError("The fan-out is still running (is a Celery worker consuming 'notifications'?).")
