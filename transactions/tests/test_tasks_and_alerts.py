"""Beat tasks on a real Celery worker; the daily ledger check alerts staff; customer alerts."""

from __future__ import annotations

import pytest
from django.core import mail
from django.db import connection

from notifications.models import Notification
from transactions.models import StandingOrder, Transaction
from transactions.services.transfers import transfer_create
from transactions.tasks import verify_ledger
from transactions.tests.conftest import send_pending_notices
from transactions.tests.factories import CustomerFactory, open_account


@pytest.mark.postgres
@pytest.mark.django_db
def test_daily_ledger_check_emails_staff_when_the_ledger_is_broken(customer):
    staff = CustomerFactory(is_staff=True, email="ops@bank.test")
    account = open_account(customer, balance=500)
    assert verify_ledger.apply().get()["ok"] is True
    assert mail.outbox == []
    with connection.cursor() as cur:
        cur.execute("UPDATE accounts_bankaccount SET balance = 0 WHERE id = %s", [account.pk])
    result = verify_ledger.apply().get()
    assert result["ok"] is False and result["violations"] >= 1
    assert [message.to for message in mail.outbox] == [[staff.email]]
    assert "LEDGER VERIFICATION FAILED" in mail.outbox[0].subject
    assert account.iban in mail.outbox[0].body


@pytest.mark.postgres
@pytest.mark.django_db
def test_low_balance_and_large_transfer_alerts_mask_account_numbers(customer):
    from accounts.tests.factories import step_up_token_for

    source, destination = open_account(customer, balance=152_000), open_account(CustomerFactory())
    token = step_up_token_for(customer, amount="1500.00", currency="EUR", payee=destination.iban)
    transfer_create(
        user=customer,
        source_account_id=source.pk,
        destination_iban=destination.iban,
        amount=150_000,
        currency="EUR",
        step_up_token=token,
    )
    send_pending_notices()
    events = set(Notification.objects.filter(user=customer).values_list("event", flat=True))
    assert {"transfer_sent", "large_transaction", "low_balance"} <= events
    for notice in Notification.objects.all():
        assert source.iban not in notice.body and destination.iban not in notice.body


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_standing_orders_beat_task_runs_on_a_real_worker(celery_worker_process):
    from datetime import timedelta

    from django.utils import timezone

    from transactions.services.payees import standing_order_create
    from transactions.tasks import run_standing_orders

    owner = CustomerFactory()
    source, destination = open_account(owner, balance=10_000), open_account(CustomerFactory())
    # Due yesterday and missed (the beat was down): every date below is fixed from that one,
    # so the test holds when it straddles midnight.
    yesterday = timezone.localdate() - timedelta(days=1)
    order = standing_order_create(
        owner=owner,
        source_account_id=source.pk,
        destination_iban=destination.iban,
        amount=1_000,
        currency="EUR",
        frequency="weekly",
        day=yesterday.isoweekday(),
        start_date=yesterday,
    )
    StandingOrder.objects.filter(pk=order.pk).update(next_due=yesterday)
    assert run_standing_orders.delay().get(timeout=60) == 1
    assert run_standing_orders.delay().get(timeout=60) == 0  # the same due date never pays twice
    assert Transaction.objects.filter(kind="standing_order").count() == 1
    assert StandingOrder.objects.get(pk=order.pk).next_due == yesterday + timedelta(days=7)
