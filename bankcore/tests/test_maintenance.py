"""Maintenance mode: writes answer 503 `maintenance` with Retry-After and change nothing, reads
keep working, /api/v1/status says so, customers are told, settlement pauses; off undoes it all.
Switched by `manage.py maintenance` and the admin."""

from __future__ import annotations

import io
import time
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from accounts.models import Device, User
from accounts.tests.factories import PASSWORD, DeviceFactory, UserFactory, authenticated_client
from bankcore.maintenance import (
    MaintenanceInvalid,
    maintenance_active,
    maintenance_cache_clear,
    maintenance_off,
    maintenance_on,
)
from bankcore.models import AuditEvent, MaintenanceMode
from bankcore.testing import staff_client
from notifications import services as notifications
from notifications.models import Delivery, IncidentUpdate, MaintenanceWindow
from transactions.models import IncomingCredit, SettlementBatch
from transactions.services.payments import Creditor, payment_create
from transactions.tests.factories import open_account
from transactions.tests.snapshots import assert_refusal_moved_nothing, ledger_snapshot

pytestmark = [pytest.mark.postgres]


@pytest.fixture(autouse=True)
def fresh_switch():
    """Every test starts and ends with this process's memo of the switch and the status banner's
    cache forgotten (the banner lives in Redis, which the database rollback does not undo)."""
    maintenance_cache_clear()
    notifications.status_cache_clear()
    yield
    maintenance_cache_clear()
    notifications.status_cache_clear()


@pytest.fixture
def bank(db):
    customer = UserFactory()
    source = open_account(customer, balance=100_000)
    destination = open_account(UserFactory(), balance=0)
    return customer, source, destination


def transfer(client, source, destination, amount="10.00", key=None):
    body = {"source_account": str(source.pk), "destination": destination.iban, "amount": amount, "currency": "EUR"}
    return client.post("/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex)


def assert_maintenance_503(response, *, retry_after: int | None = None) -> None:
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "maintenance"
    seconds = int(response["Retry-After"])
    assert seconds > 0
    if retry_after is not None:
        assert abs(seconds - retry_after) <= 2
    assert response.json()["error"]["details"]["retry_after"] == seconds


@pytest.mark.django_db
def test_maintenance_refuses_writes_with_503_and_changes_nothing_while_reads_work(bank):
    customer, source, destination = bank
    client = authenticated_client(customer)
    device = DeviceFactory(user=customer)
    maintenance_on(message="Planned database upgrade", until=timezone.now() + timedelta(minutes=30))

    key = uuid.uuid4().hex
    before = ledger_snapshot()
    response = transfer(client, source, destination, key=key)
    assert_maintenance_503(response, retry_after=30 * 60)
    assert response.json()["error"]["message"] == "Planned database upgrade"
    assert_refusal_moved_nothing(before, response, key=key)

    assert_maintenance_503(client.patch("/api/v1/me", {"full_name": "Someone Else"}, format="json"))
    assert_maintenance_503(client.delete(f"/api/v1/devices/{device.pk}"))
    assert_maintenance_503(client.put("/api/v1/notification-preferences", {}, format="json"))
    customer.refresh_from_db()
    assert customer.full_name != "Someone Else" and Device.objects.filter(pk=device.pk).exists()
    # Incoming credits too: the gateway redelivers until a 2xx, so nothing is lost by waiting.
    credit = Client().post("/api/v1/integrations/gateway/webhook", b"{}", content_type="application/json")
    assert_maintenance_503(credit)
    assert not IncomingCredit.objects.exists()

    assert client.get("/api/v1/accounts").status_code == 200
    assert client.get(f"/api/v1/accounts/{source.pk}/transactions").status_code == 200
    assert client.get("/api/v1/transfers").status_code == 200
    assert client.get("/api/v1/me").status_code == 200


@pytest.mark.django_db
def test_customers_can_still_sign_in_refresh_and_sign_out_to_read(bank):
    customer, _, _ = bank
    maintenance_on(message="Upgrade")
    api = Client()
    login = api.post("/api/v1/auth/token", {"email": customer.email, "password": PASSWORD}, "application/json")
    assert login.status_code == 200, login.content
    refreshed = api.post("/api/v1/auth/token/refresh", {"refresh": login.json()["refresh"]}, "application/json")
    assert refreshed.status_code == 200, refreshed.content
    reader = Client(headers={"Authorization": f"Bearer {refreshed.json()['access']}"})
    assert reader.get("/api/v1/accounts").status_code == 200
    logout = reader.post("/api/v1/auth/logout", {"refresh": refreshed.json()["refresh"]}, "application/json")
    assert logout.status_code == 204, logout.content
    # Registering is a write like any other.
    register = api.post("/api/v1/auth/register", {"email": "new@example.com"}, "application/json")
    assert_maintenance_503(register)


@pytest.mark.django_db
def test_without_an_expected_end_retry_after_is_the_default(bank, settings):
    customer, source, destination = bank
    settings.MAINTENANCE_RETRY_AFTER_SECONDS = 120
    maintenance_on(message="Upgrade")
    assert_maintenance_503(transfer(authenticated_client(customer), source, destination), retry_after=120)


@pytest.mark.django_db
def test_status_says_maintenance_and_customers_are_told(bank, django_capture_on_commit_callbacks):
    customer, _, _ = bank
    staff = UserFactory(is_staff=True)
    assert Client().get("/api/v1/status").json()["state"] == "operational"  # and cached
    with django_capture_on_commit_callbacks(execute=True):  # as at commit: the status cache is cleared
        maintenance_on(message="Planned upgrade until 06:00", until=timezone.now() + timedelta(hours=2))

    status = Client().get("/api/v1/status").json()
    assert status["state"] == "maintenance"
    [window] = status["maintenance"]
    assert window["message"] == "Planned upgrade until 06:00" and window["in_progress"] and window["writes_paused"]
    assert window["end_unknown"] is False

    # The announcement goes through the incident fan-out: one delivery row per customer and channel.
    announcement = IncidentUpdate.objects.get(maintenance__read_only=True)
    notifications.incident_fanout_step(update_id=announcement.pk, enqueue=False)
    told = Delivery.objects.filter(event="maintenance_scheduled", incident_update=announcement)
    assert set(told.values_list("user_id", flat=True)) == {customer.pk} | {
        u.pk for u in User.objects.filter(is_staff=False, is_active=True)
    }
    assert not told.filter(user=staff).exists()
    assert set(told.values_list("channel", flat=True)) == {"email"}  # push only to customers with a device
    assert "Planned upgrade until 06:00" in told.get(user=customer).body

    # Switching on again updates the banner, without telling everyone a second time.
    with django_capture_on_commit_callbacks(execute=True):
        maintenance_on(message="Running late", until=timezone.now() + timedelta(hours=3))
    assert IncidentUpdate.objects.filter(maintenance__read_only=True).count() == 1
    assert Client().get("/api/v1/status").json()["maintenance"][0]["message"] == "Running late"

    with django_capture_on_commit_callbacks(execute=True):
        maintenance_off()
    status = Client().get("/api/v1/status").json()
    assert (status["state"], status["maintenance"]) == ("operational", [])
    assert MaintenanceWindow.objects.get().ends_at <= timezone.now()


@pytest.mark.django_db
def test_an_open_ended_maintenance_tells_customers_no_end(bank, django_capture_on_commit_callbacks):
    customer, _, _ = bank
    with django_capture_on_commit_callbacks(execute=True):
        maintenance_on(message="Emergency fix")
    [window] = Client().get("/api/v1/status").json()["maintenance"]
    assert window["end_unknown"] is True
    announcement = IncidentUpdate.objects.get()
    notifications.incident_fanout_step(update_id=announcement.pk, enqueue=False)
    body = Delivery.objects.get(user=customer, incident_update=announcement).body
    assert "Emergency fix" in body and "until" not in body


@pytest.mark.django_db
def test_off_accepts_writes_again_and_both_switches_are_audited(bank):
    customer, source, destination = bank
    client = authenticated_client(customer)
    maintenance_on(message="Upgrade", actor=customer)
    assert transfer(client, source, destination).status_code == 503
    maintenance_off(actor="ops@bank.example")
    assert not maintenance_active()
    assert transfer(client, source, destination).status_code == 201
    switches = AuditEvent.objects.filter(action__in=["maintenance.on", "maintenance.off"])
    actions = list(switches.values_list("action", "actor_label"))
    assert actions == [("maintenance.on", customer.email), ("maintenance.off", "ops@bank.example")]
    maintenance_off()  # already off: nothing happens, nothing is recorded
    assert AuditEvent.objects.filter(action__in=["maintenance.on", "maintenance.off"]).count() == 2


@pytest.mark.django_db
def test_invalid_switch_on_is_refused():
    with pytest.raises(MaintenanceInvalid):
        maintenance_on(message="  ")
    with pytest.raises(MaintenanceInvalid):
        maintenance_on(message="Upgrade", until=timezone.now() - timedelta(minutes=1))
    assert not maintenance_active() and not MaintenanceMode.objects.filter(active=True).exists()


@pytest.mark.django_db
def test_the_command_switches_it_on_and_off(bank):
    customer, source, destination = bank
    out = io.StringIO()
    call_command("maintenance", "on", "--message", "Planned upgrade", "--until", "90m", stdout=out)
    assert "ON" in out.getvalue()
    assert maintenance_active()
    assert_maintenance_503(transfer(authenticated_client(customer), source, destination), retry_after=90 * 60)
    out = io.StringIO()
    call_command("maintenance", "status", stdout=out)
    assert "Planned upgrade" in out.getvalue()
    call_command("maintenance", "on", "--message", "Later", "--until", "2099-01-01T06:00", stdout=io.StringIO())
    assert MaintenanceMode.objects.get().until.year == 2099
    with pytest.raises(CommandError):
        call_command("maintenance", "on", "--message", "x", "--until", "soon", stdout=io.StringIO())
    call_command("maintenance", "off", stdout=io.StringIO())
    assert not maintenance_active()
    assert transfer(authenticated_client(customer), source, destination).status_code == 201


@pytest.mark.django_db
def test_the_admin_switches_it_with_the_permission_only(db):
    url = "/admin/bankcore/maintenancemode/"
    superuser = UserFactory(email="root@bank.example", is_staff=True, is_superuser=True)
    admin = staff_client(superuser)
    assert admin.get(url).status_code == 200
    response = admin.post(url, {"switch_on": "1", "message": "Upgrade from the admin", "until": ""})
    assert response.status_code == 302, response.content
    assert maintenance_active()
    assert "Upgrade from the admin" in admin.get(url).content.decode()

    viewer = UserFactory(email="viewer@bank.example", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_maintenancemode"))
    viewer_client = staff_client(User.objects.get(pk=viewer.pk))
    assert viewer_client.get(url).status_code == 200
    assert viewer_client.post(url, {"switch_off": "1"}).status_code == 403
    assert maintenance_active()

    operator = UserFactory(email="ops@bank.example", is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="change_maintenancemode"))
    assert staff_client(User.objects.get(pk=operator.pk)).post(url, {"switch_off": "1"}).status_code == 302
    assert not maintenance_active()
    assert AuditEvent.objects.filter(action="maintenance.off", actor_label="ops@bank.example").exists()


def _due_payment(customer):
    account = open_account(customer, balance=50_000)
    creditor = Creditor(name="Jeanne Martin", iban="FR1420041010050500013M02606")
    return payment_create(user=customer, source_account_id=account.pk, amount=2_500, currency="EUR", creditor=creditor)


@pytest.mark.django_db
def test_settlement_tasks_do_nothing_while_on(gateway, bank):
    from transactions.services.settlement import PAUSED
    from transactions.tasks import (
        apply_settlement_report,
        run_settlement,
        submit_settlement_batch,
        sweep_settlement,
    )

    customer, _, _ = bank
    payment = _due_payment(customer)
    maintenance_on(message="Upgrade")
    assert run_settlement() == PAUSED
    assert sweep_settlement() == PAUSED
    assert submit_settlement_batch(str(uuid.uuid4())) == PAUSED
    assert apply_settlement_report(str(uuid.uuid4())) == PAUSED
    with pytest.raises(CommandError, match="Maintenance mode is on"):
        call_command("run_settlement", stdout=io.StringIO())
    payment.refresh_from_db()
    assert payment.status == "pending" and not SettlementBatch.objects.exists()


def test_a_real_settlement_worker_pauses_and_resumes(gateway, settlement_worker, settings):
    """The worker is another process: it sees the switch through the database, both ways."""
    from transactions.services.settlement import PAUSED
    from transactions.tasks import run_settlement

    customer = UserFactory()
    payment = _due_payment(customer)
    maintenance_on(message="Upgrade")
    settlement_worker()
    assert run_settlement.delay().get(timeout=30) == PAUSED
    payment.refresh_from_db()
    assert payment.status == "pending" and not SettlementBatch.objects.exists()

    maintenance_off()
    time.sleep(settings.MAINTENANCE_CACHE_SECONDS + 0.5)  # the worker's memo of the switch expires
    batches = run_settlement.delay().get(timeout=30)
    assert isinstance(batches, list) and len(batches) == 1
    payment.refresh_from_db()
    assert payment.status != "pending"
