"""The audit log is append-only and its hash chain exposes any edit."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from bankcore.audit import audit_record
from bankcore.models import AuditEvent
from bankcore.testing import owner_cursor


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(email="auditor@example.com", password="x" * 12, full_name="Aud Itor")


@pytest.mark.django_db
def test_events_chain_each_to_the_previous(staff_user):
    first = audit_record(action="login.succeeded", actor=staff_user, target=staff_user)
    second = audit_record(action="device.registered", actor=staff_user, details={"platform": "ios"})
    assert second.prev_hash == first.hash
    assert first.target_type == "accounts.User" and first.target_id == str(staff_user.pk)
    call_command("verify_audit_log")


@pytest.mark.django_db
def test_records_request_context_from_the_middleware(client):
    from bankcore.api.logging import RequestMeta, request_meta_var

    request_meta_var.set(RequestMeta(request_id="req-audit", ip="203.0.113.9", user_agent="BankApp/1.0"))
    event = audit_record(action="login.failed", actor="someone@example.com")
    assert (event.request_id, event.ip, event.user_agent) == ("req-audit", "203.0.113.9", "BankApp/1.0")
    assert event.actor_label == "someone@example.com"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_database_refuses_update_and_delete_of_events(staff_user):
    event = audit_record(action="x", actor=staff_user)
    # The app's role has no such privilege; the owner is stopped by the append-only trigger.
    with pytest.raises(Exception, match="permission denied"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="y")
    with pytest.raises(Exception, match="permission denied"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM bankcore_auditevent WHERE id = %s", [event.pk])
    with owner_cursor() as cursor:
        with pytest.raises(Exception, match="Cannot update or delete"):
            cursor.execute("UPDATE bankcore_auditevent SET action = 'y' WHERE id = %s", [event.pk])
        with pytest.raises(Exception, match="Cannot update or delete"):
            cursor.execute("DELETE FROM bankcore_auditevent WHERE id = %s", [event.pk])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_editing_a_row_behind_the_triggers_back_makes_verify_fail(staff_user):
    audit_record(action="a", actor=staff_user)
    victim = audit_record(action="transfer.posted", actor=staff_user, details={"amount": "10.00"})
    audit_record(action="c", actor=staff_user)
    with owner_cursor() as cursor:
        # What an attacker with the owner's (a superuser's) access would do: bypass the trigger.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "UPDATE bankcore_auditevent SET details = %s WHERE id = %s", ['{"amount": "99999.00"}', victim.pk]
        )
    with pytest.raises(CommandError, match=f"#{victim.pk}"):
        call_command("verify_audit_log")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_deleting_a_row_makes_verify_fail_at_its_successor(staff_user):
    audit_record(action="a", actor=staff_user)
    victim = audit_record(action="b", actor=staff_user)
    successor = audit_record(action="c", actor=staff_user)
    with owner_cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM bankcore_auditevent WHERE id = %s", [victim.pk])
    with pytest.raises(CommandError, match=f"#{successor.pk}"):
        call_command("verify_audit_log")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_unbroken_chain(django_user_model):
    import threading

    from django.db import connections

    user = django_user_model.objects.create_user(email="c@example.com", password="x" * 12, full_name="C")
    errors = []

    def write(n):
        try:
            for i in range(20):
                audit_record(action=f"t{n}.{i}", actor=user)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert AuditEvent.objects.count() == 120
    # Six connections: writers spread over several chains instead of queueing on one.
    assert AuditEvent.objects.values("chain").distinct().count() > 1
    call_command("verify_audit_log")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_deleting_the_newest_row_of_a_chain_is_detected(staff_user):
    audit_record(action="a", actor=staff_user)
    newest = audit_record(action="b", actor=staff_user)
    with owner_cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM bankcore_auditevent WHERE id = %s", [newest.pk])
    with pytest.raises(CommandError, match="newest rows of chain"):
        call_command("verify_audit_log")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_moving_a_row_to_another_chain_is_detected(staff_user):
    event = audit_record(action="a", actor=staff_user)
    with owner_cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE bankcore_auditevent SET chain = chain %% 16 + 1 WHERE id = %s", [event.pk])
    with pytest.raises(CommandError):
        call_command("verify_audit_log")


@pytest.mark.django_db
def test_staff_read_the_audit_log_in_the_admin_and_can_change_nothing(staff_user, django_user_model):
    from django.contrib.admin import site

    from bankcore.testing import admin_request

    staff_user.is_staff = staff_user.is_superuser = True
    staff_user.save()
    customer = django_user_model.objects.create_user(email="c@example.com", password="x" * 12, full_name="C Ustomer")
    event = audit_record(action="account.frozen", actor=staff_user, target=customer)
    login = audit_record(action="login.succeeded", actor=customer)
    audit_record(action="login.succeeded", actor=staff_user)
    model_admin = site._registry[AuditEvent]

    def changelist(search: str) -> list[AuditEvent]:
        response = model_admin.changelist_view(admin_request(staff_user, data={"q": search}))
        response.render()
        assert response.status_code == 200
        return list(response.context_data["cl"].result_list)

    # Exact search: everything done to the customer or by them, newest first.
    assert changelist(str(customer.pk)) == [login, event]
    assert changelist("not-an-id") == []
    request = admin_request(staff_user)
    response = model_admin.change_view(request, str(event.pk))
    response.render()
    assert response.status_code == 200 and b"account.frozen" in response.content
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)


@pytest.mark.django_db
def test_event_details_are_stored_as_they_read_back_from_json():
    import uuid
    from decimal import Decimal

    from bankcore.audit import audit_event

    flat = {"amount": "1.50", "count": 2, "ok": True, "note": None}
    event = audit_event(action="test.flat", details=flat)
    assert event.details == flat and event.details is not flat  # a copy: later edits of the caller's dict stay out
    key = uuid.uuid4()
    event = audit_event(action="test.rich", details={"id": key, "amount": Decimal("1.50"), "nested": {"a": [1]}})
    assert event.details == {"id": str(key), "amount": "1.50", "nested": {"a": [1]}}


def _chain_of(count, user):
    events = [audit_record(action=f"step.{n}", actor=user, details={"n": n}) for n in range(count)]
    assert len({event.chain for event in events}) == 1  # one connection: one chain
    return events


def _behind_the_triggers(sql, params):
    """What only a superuser can do (the app's role has no such privilege): write with every
    trigger off. On a connection of its own, so the test must commit what it checks."""
    with owner_cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", [1, 2, 3, 6, 7, 5000])
def test_verify_checks_an_intact_chain_across_its_batch_boundaries(staff_user, batch_size):
    """Each batch must continue from the previous batch's last hash: every row counted once."""
    import io

    from bankcore.audit import verify_chain

    _chain_of(7, staff_user)
    steps = list(verify_chain(batch_size=batch_size))
    assert all(isinstance(step, int) for step in steps) and steps[-1] == 7
    out = io.StringIO()
    call_command("verify_audit_log", batch_size=batch_size, stdout=out)
    assert "Audit chain intact: 7 events verified." in out.getvalue()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_a_row_deleted_at_a_batch_boundary_is_detected_at_its_successor(staff_user, batch_size):
    """Row `batch_size` deleted: the first batch ends just before it and the next one starts with
    its successor, which must be checked against the hash carried over from the previous batch,
    not trusted for what its own batch starts with."""
    events = _chain_of(7, staff_user)
    _behind_the_triggers("DELETE FROM bankcore_auditevent WHERE id = %s", [events[batch_size].pk])
    with pytest.raises(CommandError, match=f"#{events[batch_size + 1].pk}: prev_hash"):
        call_command("verify_audit_log", batch_size=batch_size)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_row_edited_at_a_batch_boundary_is_detected(staff_user):
    events = _chain_of(7, staff_user)
    _behind_the_triggers("UPDATE bankcore_auditevent SET details = %s WHERE id = %s", ['{"n": 99}', events[3].pk])
    with pytest.raises(CommandError, match=f"#{events[3].pk}: content"):
        call_command("verify_audit_log", batch_size=3)


@pytest.mark.django_db
def test_verify_refuses_a_batch_size_below_one():
    with pytest.raises(CommandError, match="batch-size"):
        call_command("verify_audit_log", batch_size=0)
