"""Switch maintenance (read-only) mode on or off, or show it.

manage.py maintenance on --message "Planned upgrade" [--until 2026-05-01T06:00Z | --until 90m]
manage.py maintenance off
manage.py maintenance status
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from bankcore.api.exceptions import BankError
from bankcore.maintenance import maintenance_off, maintenance_on, maintenance_state

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_until(value: str) -> datetime:
    """An ISO 8601 time (UTC when it names no zone) or a duration from now: 90m, 2h, 1d."""
    duration = _DURATION.match(value.strip())
    if duration:
        return timezone.now() + timedelta(**{_UNIT[duration.group(2)]: int(duration.group(1))})
    parsed = parse_datetime(value.strip())
    if parsed is None:
        raise CommandError(f"--until: {value!r} is neither an ISO 8601 time nor a duration such as 90m or 2h.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


class Command(BaseCommand):
    help = "Maintenance (read-only) mode: API writes answer 503, settlement pauses, customers are told."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="switch", required=True)
        on = sub.add_parser("on", help="Switch read-only mode on (or update its message and end).")
        on.add_argument("--message", required=True, help="What customers are told.")
        on.add_argument("--until", default=None, help="Expected end: ISO 8601 (UTC if no zone) or 90m/2h/1d.")
        sub.add_parser("off", help="Accept writes again; settlement resumes.")
        sub.add_parser("status", help="Show the switch.")

    def handle(self, *args: Any, switch: str, **options: Any) -> None:
        actor = "manage.py maintenance"
        try:
            if switch == "on":
                until = parse_until(options["until"]) if options["until"] else None
                state = maintenance_on(message=options["message"], until=until, actor=actor)
                self.stdout.write(
                    f"Maintenance mode ON since {state.started_at:%Y-%m-%d %H:%M:%S} UTC"
                    + (f", expected until {state.until:%Y-%m-%d %H:%M:%S} UTC" if state.until else "")
                    + ". API writes answer 503; settlement is paused; customers are being told."
                )
            elif switch == "off":
                was = maintenance_state(fresh=True)
                maintenance_off(actor=actor)
                self.stdout.write("Maintenance mode OFF." if was.active else "Maintenance mode was already off.")
            else:
                state = maintenance_state(fresh=True)
                if state.active:
                    self.stdout.write(
                        f"ON since {state.started_at:%Y-%m-%d %H:%M:%S} UTC by {state.actor_label or '?'}: "
                        f"{state.message}" + (f" (until {state.until:%Y-%m-%d %H:%M:%S} UTC)" if state.until else "")
                    )
                else:
                    self.stdout.write("OFF")
        except BankError as exc:
            raise CommandError(f"{exc.message} {exc.details}") from exc
