"""Print where the running bank can be reached (used by `make run`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Print the URLs of the local bank."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, base: str, **options: Any) -> None:
        lines = [
            "",
            f"  {settings.BANK_NAME} is starting",
            f"  API docs (Swagger UI):  {base}/api/docs/",
            f"  OpenAPI schema:         {base}/api/schema/",
            f"  Admin (staff, TOTP):    {base}/{settings.ADMIN_URL}",
            f"  Health / readiness:     {base}/healthz  {base}/readyz",
            f"  Payment gateway (simulator): {settings.PAYMENT_GATEWAY_URL}  (docs/payments.md)",
            "  Demo logins: printed by seed_demo above; Ctrl-C stops web, worker, beat and the gateway.",
            "",
        ]
        self.stdout.write("\n".join(lines))
