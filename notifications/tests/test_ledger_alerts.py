"""Transfer alerts drained in batches by a real worker: each customer's alert recorded once and
delivered once on each channel they chose, against providers that deduplicate nothing."""

from __future__ import annotations

from collections import Counter

import pytest

from accounts.tests.factories import DeviceFactory, UserFactory
from notifications import services
from notifications.models import Delivery, Notification
from notifications.tests.conftest import QUEUE, provider_settings, wait_for
from transactions.models import LedgerNotice
from transactions.services.transfers import transfer_create
from transactions.tests.factories import open_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery]

TRANSFERS = 30


def test_a_batch_of_transfers_alerts_each_customer_once_on_each_chosen_channel(providers, settings):
    from bankcore.celery import app
    from bankcore.flags import flag_lower
    from bankcore.testing import CeleryWorker, process_env
    from transactions.services.notices import WAKE_FLAG

    providers.sms.dedupe = providers.push.dedupe = False  # every accepted request reaches the customer
    queue = f"{QUEUE}-ledger-alerts"
    settings.NOTIFICATIONS_QUEUE = queue
    app.control.purge()
    flag_lower(WAKE_FLAG)
    payer = UserFactory(email="payer@example.com", phone="+4915100000201")
    payee = UserFactory(email="payee@example.com", phone="+4915100000202")
    DeviceFactory(user=payer, push_token="tok-payer")
    DeviceFactory(user=payee, push_token="tok-payee")
    # The payee wants money received by SMS and e-mail, not push; the payer keeps the default (push).
    services.preferences_update(user=payee, changes={"transfer_received": {"sms": True, "email": True, "push": False}})
    source, target = open_account(payer, balance=1_000_000), open_account(payee)
    for _ in range(TRANSFERS):
        transfer_create(
            user=payer, source_account_id=source.pk, destination_iban=target.iban, amount=100, currency="EUR"
        )
    assert LedgerNotice.objects.filter(sent_at=None).count() == TRANSFERS

    wiring = provider_settings(providers.smtp, providers.sms, providers.push) | {"NOTIFICATIONS_QUEUE": queue}
    # The drain is on the settlement queue, its deliveries on ours: one worker for both.
    worker = CeleryWorker(queues=[queue, "settlement"], env=process_env(**wiring)).start()
    try:
        rows = Delivery.objects.filter(event__startswith="transfer_")
        wait_for(lambda: rows.filter(status="sent").count() == 3 * TRANSFERS, timeout=90, interval=0.25)
    finally:
        worker.stop()

    assert not LedgerNotice.objects.filter(sent_at=None).exists()
    inbox = Counter(Notification.objects.values_list("user_id", "event"))
    assert inbox == {(payer.pk, "transfer_sent"): TRANSFERS, (payee.pk, "transfer_received"): TRANSFERS}
    assert Counter(rows.values_list("user_id", "channel", "status")) == {
        (payer.pk, "push", "sent"): TRANSFERS,
        (payee.pk, "sms", "sent"): TRANSFERS,
        (payee.pk, "email", "sent"): TRANSFERS,
    }
    # Exactly once each: one push per transfer to the payer's phone, one SMS and one e-mail to the payee.
    pushes = [request.json["message"] for request in providers.push.received()]
    assert [push["token"] for push in pushes] == ["tok-payer"] * TRANSFERS
    assert len({push["data"]["delivery_id"] for push in pushes}) == TRANSFERS
    texts = providers.sms.received()
    assert [text.json["to"] for text in texts] == [payee.phone] * TRANSFERS
    assert len({text.headers["Idempotency-Key"] for text in texts}) == TRANSFERS
    mails = providers.smtp.to("payee@example.com")
    assert len(mails) == TRANSFERS and len({mail["Message-ID"] for mail in mails}) == TRANSFERS
    assert providers.smtp.to("payer@example.com") == []
