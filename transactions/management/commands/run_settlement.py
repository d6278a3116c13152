"""manage.py run_settlement: the cut-off now, synchronously, with progress (operators, demos)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bankcore.money import format_amount
from integrations.gateway.errors import GatewayError
from transactions.models import SettlementBatch
from transactions.services.settlement import (
    NO_GATEWAY,
    PAUSED,
    ReportOutcome,
    settlement_apply_report,
    settlement_form_batches,
    settlement_held_back,
    settlement_submit,
)


class Command(BaseCommand):
    help = (
        "Form the settlement batch(es) of every due pending payment now (as the beat cut-off does), "
        "submit them to the payment gateway, then poll for the status reports (at most --wait seconds) "
        "and settle or reject each payment. Batches formed earlier and not yet sent go too. "
        "Exit 1 when a batch could not be sent or its report did not arrive in time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wait", type=float, default=120.0, help="Seconds to wait for the status reports.")
        parser.add_argument("--poll-interval", type=float, default=1.0, help="Seconds between report polls.")

    def handle(self, *args: Any, **options: Any) -> None:
        held_back = settlement_held_back(fresh=True)
        if held_back == PAUSED:
            raise CommandError("Maintenance mode is on: settlement is paused (`manage.py maintenance off` first).")
        if held_back == NO_GATEWAY:
            raise CommandError("PAYMENT_GATEWAY_URL is not set: there is no gateway to settle with.")
        formed = settlement_form_batches()
        earlier = SettlementBatch.objects.filter(status=SettlementBatch.Status.FORMED).exclude(
            pk__in=[batch.pk for batch in formed]
        )
        batches = [*formed, *earlier.order_by("created_at")]
        if not batches and not SettlementBatch.objects.filter(status=SettlementBatch.Status.SUBMITTED).exists():
            self.stdout.write("No due payments: nothing to settle.")
            return
        failures: list[str] = []
        for batch in batches:
            self.stdout.write(
                f"batch {batch.pk} message {batch.message_id}: {batch.payment_count} payments,"
                f" control sum {format_amount(batch.control_sum, batch.currency)} {batch.currency}"
            )
            self._submit(batch, failures)
        waiting = list(
            SettlementBatch.objects.filter(status=SettlementBatch.Status.SUBMITTED)
            .order_by("created_at")
            .values_list("pk", "message_id")
        )
        deadline = time.monotonic() + options["wait"]
        while waiting:
            still = []
            for pk, message_id in waiting:
                try:
                    result = settlement_apply_report(batch_id=pk)
                except GatewayError as exc:
                    self.stderr.write(f"  {message_id}: report not fetched: {exc}")
                    still.append((pk, message_id))
                    continue
                if result.outcome == ReportOutcome.COMPLETED:
                    self.stdout.write(
                        f"  {message_id}: completed ({result.settled} settled, {result.rejected} rejected now)"
                    )
                elif result.outcome == ReportOutcome.RESUBMIT:
                    self.stdout.write(f"  {message_id}: the gateway does not know it; resubmitting")
                    self._submit(SettlementBatch.objects.get(pk=pk), failures)
                    still.append((pk, message_id))
                else:
                    still.append((pk, message_id))
            waiting = still
            if waiting and time.monotonic() >= deadline:
                failures += [
                    f"{message_id}: no final status report within {options['wait']:g}s" for _, message_id in waiting
                ]
                break
            if waiting:
                time.sleep(options["poll_interval"])
        if failures:
            for failure in failures:
                self.stderr.write(self.style.ERROR(failure))
            raise CommandError(f"settlement incomplete: {len(failures)} problem(s); the sweep will re-drive them")
        self.stdout.write(self.style.SUCCESS("settlement done"))

    def _submit(self, batch: SettlementBatch, failures: list[str]) -> None:
        try:
            result = settlement_submit(batch_id=batch.pk)
        except GatewayError as exc:
            failures.append(f"{batch.message_id}: not submitted: {exc}")
            self.stderr.write(f"  {batch.message_id}: not submitted: {exc}")
            return
        receipt = result.receipt
        if receipt is None:
            self.stdout.write(f"  {batch.message_id}: already {result.batch.status}")
        else:
            self.stdout.write(
                f"  {batch.message_id}: receipt accepted={receipt.accepted} duplicate={receipt.duplicate}"
            )
