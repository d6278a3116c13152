"""Incidents: fan-out to every customer exactly once per channel, through a real worker,
also when the worker is killed half way; the operator commands; the all-clear."""

from __future__ import annotations

import io
import time
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from notifications import services
from notifications.models import Delivery, Incident, IncidentUpdate
from notifications.tests.conftest import QUEUE, wait_for
from notifications.tests.servers import Answer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery]


def make_customers(n: int, prefix: str = "c") -> list:
    User = get_user_model()
    users = [
        User(email=f"{prefix}{i:05d}@example.com", phone=f"+49151{i:08d}", full_name=f"Customer {i}", password="!")
        for i in range(n)
    ]
    User.objects.bulk_create(users, batch_size=1000)
    # Staff and inactive customers are not told.
    User.objects.create(email="staff@bank.example", full_name="Staff", is_staff=True, phone="+4930000", password="!")
    User.objects.create(email="gone@example.com", full_name="Gone", is_active=False, phone="+4930001", password="!")
    return users


def _finished(update_id) -> bool:
    update = IncidentUpdate.objects.get(pk=update_id)
    return (
        update.fanout_status == "done"
        and not Delivery.objects.filter(incident_update=update, status__in=["queued", "failed", "sending"]).exists()
    )


def test_incident_for_2000_customers_delivers_exactly_2000_messages_per_channel(providers, notifications_worker):
    make_customers(2000)

    incident = services.incident_declare(
        title="Payments down",
        message="Card payments are failing. Transfers work.",
        severity="major",
        services=["payments"],
    )
    update = incident.updates.get()
    assert update.recipients_total == 2000

    wait_for(lambda: _finished(update.pk), timeout=240, interval=0.5)

    update.refresh_from_db()
    assert update.recipients_done == 2000
    assert Counter(Delivery.objects.filter(incident_update=update).values_list("status", flat=True)) == {"sent": 4000}
    emails = Counter(m["To"] for m in providers.smtp.messages)
    texts = Counter(r.json["to"] for r in providers.sms.received())
    assert len(emails) == 2000 and set(emails.values()) == {1}
    assert len(texts) == 2000 and set(texts.values()) == {1}
    assert "staff@bank.example" not in emails and "gone@example.com" not in emails
    sample = providers.smtp.messages[0]
    assert sample["Subject"] == "Service disruption: Payments down"
    assert "Card payments are failing" in sample.get_body(("plain",)).get_content()


def test_fanout_killed_half_way_completes_exactly_2000_sms_and_no_duplicate_email(providers, make_worker, settings):
    queue = f"{QUEUE}-crash"
    settings.NOTIFICATIONS_QUEUE = queue
    make_customers(2000)
    # 400 messages a second: ten batches, one a second, so the kill lands inside the fan-out.
    # Long client timeouts: the sends in flight are still waiting when the kill comes.
    first = make_worker(queue, NOTIFICATIONS_FANOUT_RATE="400", NOTIFICATIONS_HTTP_TIMEOUT="30", EMAIL_TIMEOUT="30")
    first.start()
    try:
        incident = services.incident_declare(
            title="Login down", message="Logins fail.", severity="critical", services=["login"]
        )
        update = incident.updates.get()
        wait_for(lambda: IncidentUpdate.objects.get(pk=update.pk).recipients_done >= 600, timeout=60)
        wait_for(lambda: len(providers.sms.received()) >= 100, timeout=60)
        # The next SMS and the next e-mail are accepted but answered late: kill the worker
        # while both wait, the cases whose outcome the worker never learns.
        providers.sms.script.append(Answer(201, {"id": "sms-accepted-at-kill"}, delay=30))
        providers.smtp.delay_next_reply = 30
        wait_for(lambda: providers.sms.in_flight and providers.smtp.in_flight, timeout=20, interval=0.005)
    finally:
        first.kill()
    at_kill = IncidentUpdate.objects.get(pk=update.pk)
    assert at_kill.fanout_status == "running" and 0 < at_kill.recipients_done < 2000
    accepted_at_kill = len(providers.sms.received())

    time.sleep(3.5)  # the in-flight sends' lease (NOTIFICATIONS_SEND_LEASE_SECONDS) runs out
    second = make_worker(queue).start()
    try:
        sweep = services.notifications_sweep(stuck_after=0)
        assert sweep.fanouts_resumed == 1 and (sweep.resent, sweep.given_up) == (1, 1)
        wait_for(lambda: _finished(update.pk), timeout=240, interval=0.5)
    finally:
        second.stop()

    rows = Delivery.objects.filter(incident_update=update)
    assert rows.count() == 4000  # one row per customer per channel, never a second
    customers = set(get_user_model().objects.filter(is_staff=False, is_active=True).values_list("phone", "email"))
    phones, addresses = {p for p, _ in customers}, {e for _, e in customers}

    # SMS (the gateway dedupes on Idempotency-Key): exactly one to each of the 2,000.
    texts = Counter(r.json["to"] for r in providers.sms.received())
    assert set(texts) == phones and set(texts.values()) == {1}
    sms_rows = rows.filter(channel="sms")
    assert Counter(sms_rows.values_list("status", flat=True)) == {"sent": 2000}
    # ...including the one accepted at the kill: re-sent with its key, answered from the first.
    [resent] = sms_rows.filter(unknown_outcome_resends__gt=0)
    assert resent.provider_message_id == "sms-accepted-at-kill" and resent.attempts == 2
    assert [r.headers["Idempotency-Key"] for r in providers.sms.replayed] == [resent.delivery_key]
    assert accepted_at_kill < 2000

    # E-mail (SMTP cannot dedupe): nobody got it twice; whoever did not get it has a dead
    # letter "outcome unknown" -- at most one per send the killed worker had in flight.
    emails = Counter(m["To"] for m in providers.smtp.messages)
    assert set(emails.values()) == {1}
    email_rows = rows.filter(channel="email")
    in_doubt = email_rows.filter(status="dead")
    assert 1 <= in_doubt.count() <= first.concurrency
    assert all("outcome unknown" in error for error in in_doubt.values_list("last_error", flat=True))
    assert set(email_rows.exclude(status="dead").values_list("status", flat=True)) == {"sent"}
    sent_to = set(email_rows.filter(status="sent").values_list("recipient", flat=True))
    doubtful = set(in_doubt.values_list("recipient", flat=True))
    assert sent_to <= set(emails) and addresses - set(emails) <= doubtful
    assert sent_to | doubtful == addresses

    # Staff resend the dead letters: now everyone has it, any second copy with the same Message-ID.
    for row_id in in_doubt.values_list("pk", flat=True):
        services.delivery_resend(delivery_id=row_id, actor="staff@example.com")
    with make_worker(queue):
        wait_for(lambda: not email_rows.exclude(status="sent").exists(), timeout=60)
    assert {m["To"] for m in providers.smtp.messages} == addresses
    for address in doubtful:
        copies = providers.smtp.to(address)
        assert len(copies) == 2 and len({m["Message-ID"] for m in copies}) == 1


def test_operator_commands_declare_update_and_resolve_with_progress(providers, notifications_worker, api_client):
    make_customers(30, prefix="op")
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "declare_incident",
        "--service",
        "transfers",
        "--severity",
        "minor",
        "--message",
        "Transfers are delayed.",
        stdout=out,
        stderr=err,
    )

    incident_id = out.getvalue().splitlines()[0]
    incident = Incident.objects.get(pk=incident_id)
    assert "[##############################] customers 30/30, messages sent 30, dead 0, waiting 0" in out.getvalue()
    assert "notifying 30 customers by email" in err.getvalue()
    services.status_cache_clear()
    status = api_client.get("/api/v1/status").json()
    assert status["state"] == "degraded" and status["incidents"][0]["message"] == "Transfers are delayed."

    call_command("update_incident", incident_id, "--message", "Fix deployed, catching up.", stdout=io.StringIO())
    call_command("resolve_incident", incident_id, stdout=io.StringIO())

    incident.refresh_from_db()
    assert incident.resolved_at is not None
    services.status_cache_clear()
    after = api_client.get("/api/v1/status").json()
    assert (after["state"], after["incidents"]) == ("operational", [])
    subjects = Counter(m["Subject"] for m in providers.smtp.messages)
    assert subjects == {
        "Service disruption: Transfers disruption": 30,
        "Update on the service disruption: Transfers disruption": 30,
        "Resolved: Transfers disruption": 30,
    }
    with pytest.raises(CommandError, match="already resolved"):
        call_command("resolve_incident", incident_id, "--no-wait", stdout=io.StringIO())


def test_declare_refuses_unknown_services_and_severities():
    with pytest.raises(CommandError):
        call_command("declare_incident", "--service", "teleportation", "--severity", "major", "--message", "x")
    from notifications.exceptions import InvalidNotificationRequest

    with pytest.raises(InvalidNotificationRequest) as excinfo:
        services.incident_declare(title="", message=" ", severity="apocalyptic", services=[])
    assert set(excinfo.value.details) == {"severity", "services", "message"}
    assert not Incident.objects.exists()


def test_fanout_step_is_exactly_once_even_if_run_again_on_the_same_batch(settings):
    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"  # this test drives the steps itself
    make_customers(50, prefix="again")
    incident = services.incident_declare(title="t", message="m", severity="major", services=["app"])
    update = incident.updates.get()
    steps = []
    while not steps or not steps[-1].done:
        steps.append(services.incident_fanout_step(update_id=update.pk, batch_size=20, enqueue=False))
    # a stale task re-running the whole fan-out changes nothing
    IncidentUpdate.objects.filter(pk=update.pk).update(fanout_status="running", fanout_cursor=None)
    again = services.incident_fanout_step(update_id=update.pk, batch_size=100, enqueue=False)

    assert [s.recipients for s in steps] == [20, 20, 10]
    assert again.messages == 100 and Delivery.objects.filter(incident_update=update).count() == 100


def legacy_customer_ids():
    """Stands in for the integrations' selector of customers with legacy accounts."""
    return get_user_model().objects.filter(email__endswith="@legacy.example").values("pk")


def test_incident_on_a_mapped_service_reaches_only_the_affected_customers(settings):
    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"  # this test drives the steps itself
    settings.NOTIFICATIONS_SERVICE_AUDIENCES = {
        "legacy_accounts": "notifications.tests.test_incidents.legacy_customer_ids"
    }
    make_customers(5, prefix="modern")
    User = get_user_model()
    User.objects.create(email="old1@legacy.example", full_name="Old", phone="+4917000001", password="!")
    User.objects.create(email="old2@legacy.example", full_name="Old", phone="+4917000002", password="!")

    narrow = services.incident_declare(title="", message="m", severity="minor", services=["legacy_accounts"])
    wide = services.incident_declare(title="", message="m", severity="minor", services=["legacy_accounts", "app"])
    for incident in (narrow, wide):
        update = incident.updates.get()
        while not services.incident_fanout_step(update_id=update.pk, enqueue=False).done:
            pass

    narrow_to = set(Delivery.objects.filter(incident_update__incident=narrow).values_list("recipient", flat=True))
    assert narrow_to == {"old1@legacy.example", "old2@legacy.example"}
    assert narrow.updates.get().recipients_total == 2
    assert Delivery.objects.filter(incident_update__incident=wide).count() == 7
