"""`manage.py run_payment_gateway --port P`: the payment gateway simulator (see
integrations/gateway/simulator.py for its endpoints and fault switches)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.gateway.simulator import serve


class Command(BaseCommand):
    help = "Run the payment gateway simulator (ISO 20022 over HTTP, its own journal, fault switches)."
    requires_system_checks: list[str] = []  # it touches no database

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--data-dir",
            default=str(Path(settings.VAR_DIR) / "gateway"),
            help="the simulator's own journal (default var/gateway/); kept across restarts",
        )
        parser.add_argument("--webhook-url", default="", help="where incoming-credit webhooks are delivered")
        parser.add_argument(
            "--webhook-secret",
            default=None,
            help="HMAC secret of the webhooks' X-Signature (default GATEWAY_WEBHOOK_SECRET)",
        )
        parser.add_argument(
            "--account-iban",
            default=settings.SETTLEMENT_DEBTOR_IBAN,
            help="the bank's account at the gateway, named in camt.053 (default SETTLEMENT_DEBTOR_IBAN)",
        )
        parser.add_argument(
            "--webhook-backoff", type=float, default=0.2, help="first redelivery delay in seconds (doubles, max 10)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        secret = options["webhook_secret"]
        try:
            serve(
                host=options["host"],
                port=options["port"],
                data_dir=Path(options["data_dir"]),
                account_iban=options["account_iban"],
                webhook_url=options["webhook_url"],
                webhook_secret=settings.GATEWAY_WEBHOOK_SECRET if secret is None else secret,
                webhook_backoff=options["webhook_backoff"],
            )
        except (RuntimeError, OSError) as exc:
            raise CommandError(str(exc)) from exc
