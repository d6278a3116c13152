"""`manage.py run_legacy_core --port P`: the legacy core banking simulator (see
integrations/legacy/simulator.py for its rules, control port and fault switches, and
integrations/legacy/PROTOCOL.md for the wire)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.legacy.simulator import serve


class Command(BaseCommand):
    help = "Run the legacy core banking simulator (ISO 8583 over TCP, its own journal, fault switches)."
    requires_system_checks: list[str] = []  # it touches no database

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, required=True, help="the ISO 8583 port")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--control-port", type=int, default=None, help="the HTTP control port (default: --port + 1)"
        )
        parser.add_argument(
            "--data-dir",
            default=str(Path(settings.VAR_DIR) / "legacy-core"),
            help="the simulator's own journal (default var/legacy-core/); kept across restarts",
        )
        parser.add_argument(
            "--seed-accounts",
            type=int,
            default=0,
            help="make sure accounts 4000000001..N exist (deterministic holders and balances)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"]
        control_port = options["control_port"] if options["control_port"] is not None else port + 1
        try:
            serve(
                host=options["host"],
                port=port,
                control_port=control_port,
                data_dir=Path(options["data_dir"]),
                seed_accounts=options["seed_accounts"],
            )
        except (RuntimeError, OSError) as exc:
            raise CommandError(str(exc)) from exc
