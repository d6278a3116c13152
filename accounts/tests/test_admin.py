"""Staff screens for customers: search, lock/unlock, reset 2FA, revoke devices — each audited."""

from __future__ import annotations

import pytest
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Device, LoginSession, TotpAuthenticator, TwoFactorResetRequest
from accounts.tests.factories import PASSWORD, DeviceFactory, UserFactory, enrol_totp, tokens_for
from bankcore.models import AuditEvent
from bankcore.testing import staff_client as staff_client_for
from notifications.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def staff_client(client, django_user_model):
    staff = django_user_model.objects.create_superuser(email="ops@bank.example", password=PASSWORD, full_name="Ops")
    device = TOTPDevice.objects.create(user=staff, name="admin", confirmed=True)
    client.force_login(staff)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id  # passed the admin's TOTP step
    session.save()
    client.staff = staff
    return client


def _act(client, action: str, *users):
    return client.post(
        "/admin/accounts/user/", {"action": action, "_selected_action": [str(u.pk) for u in users]}, follow=True
    )


def test_staff_find_customers_by_name_email_or_phone(staff_client):
    UserFactory(full_name="Ada Lovelace", email="ada@example.com")
    UserFactory(full_name="Grace Hopper", email="grace@example.com")
    page = staff_client.get("/admin/accounts/user/", {"q": "lovelace"})
    assert page.status_code == 200
    assert b"ada@example.com" in page.content and b"grace@example.com" not in page.content


def test_staff_lock_and_unlock_are_audited_and_enforced(staff_client, api_client):
    user = UserFactory()
    session = tokens_for(user)
    _act(staff_client, "lock_users", user)
    user.refresh_from_db()
    assert api_client.post("/api/v1/auth/token/refresh", {"refresh": session["refresh"]}).status_code == 401
    assert user.locked_until > timezone.now()
    login = api_client.post("/api/v1/auth/token", {"email": user.email, "password": PASSWORD})
    assert login.status_code == 403 and login.json()["error"]["code"] == "account_locked"
    assert Notification.objects.filter(user=user, event="account_locked").exists()
    locked = AuditEvent.objects.get(action="staff.user_locked", target_id=str(user.pk))
    assert locked.actor_id == staff_client.staff.pk

    _act(staff_client, "unlock_users", user)
    assert api_client.post("/api/v1/auth/token", {"email": user.email, "password": PASSWORD}).status_code == 200
    assert (
        AuditEvent.objects.get(action="staff.user_unlocked", target_id=str(user.pk)).actor_id == staff_client.staff.pk
    )


def test_staff_two_factor_reset_needs_a_second_staff_member(staff_client, django_user_model):
    user = UserFactory()
    enrol_totp(user)
    asked = _act(staff_client, "propose_two_factor_reset", user)
    assert b'name="reason"' in asked.content, "the maker is asked why first"
    staff_client.post(
        "/admin/accounts/user/",
        {
            "action": "propose_two_factor_reset",
            "_selected_action": [str(user.pk)],
            "apply": "Propose",
            "reason": "Lost phone; identity checked by video call",
        },
    )
    proposal = TwoFactorResetRequest.objects.get(user=user)
    assert proposal.status == "pending" and proposal.proposed_by == staff_client.staff
    assert TotpAuthenticator.objects.filter(user=user).exists(), "nothing changes on the maker's word"

    approve = {"action": "approve_resets", "_selected_action": [str(proposal.pk)]}
    staff_client.post("/admin/accounts/twofactorresetrequest/", approve)
    assert TotpAuthenticator.objects.filter(user=user).exists(), "the maker cannot approve their own proposal"

    checker = django_user_model.objects.create_superuser(email="chk@bank.example", password=PASSWORD, full_name="C")
    staff_client_for(checker).post("/admin/accounts/twofactorresetrequest/", approve)
    assert not TotpAuthenticator.objects.filter(user=user).exists()
    proposal.refresh_from_db()
    assert (proposal.status, proposal.decided_by) == ("done", checker)
    actions = dict(AuditEvent.objects.filter(target_id=str(user.pk)).values_list("action", "actor_id"))
    assert actions["staff.two_factor_reset_proposed"] == staff_client.staff.pk
    assert actions["staff.two_factor_reset_approved"] == actions["staff.two_factor_reset"] == checker.pk


def test_staff_revoke_devices(staff_client):
    device = DeviceFactory()
    user = device.user
    tokens_for(user, device=device)
    _act(staff_client, "revoke_all_devices", user)
    assert Device.objects.get(pk=device.pk).revoked_at is not None
    assert not LoginSession.objects.filter(user=user, revoked_at__isnull=True).exists()
    actions = set(
        AuditEvent.objects.filter(target_id=str(user.pk), actor=staff_client.staff).values_list("action", flat=True)
    )
    assert "staff.devices_revoked" in actions


def test_staff_edit_through_the_form_is_audited(staff_client):
    user = UserFactory(full_name="Old Name")
    page = staff_client.get(f"/admin/accounts/user/{user.pk}/change/")
    assert page.status_code == 200
    form = {
        "full_name": "New Name",
        "phone": user.phone,
        "notification_email": "",
        "notification_phone": "",
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "devices-TOTAL_FORMS": "0",
        "devices-INITIAL_FORMS": "0",
        "devices-MIN_NUM_FORMS": "0",
        "devices-MAX_NUM_FORMS": "1000",
    }
    response = staff_client.post(f"/admin/accounts/user/{user.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    user.refresh_from_db()
    assert user.full_name == "New Name"
    event = AuditEvent.objects.get(action="staff.admin_changed", target_id=str(user.pk))
    assert event.actor_id == staff_client.staff.pk


def test_admin_refuses_staff_who_skipped_the_totp_step(client, django_user_model):
    staff = django_user_model.objects.create_superuser(email="x@bank.example", password=PASSWORD, full_name="X")
    client.force_login(staff)
    assert client.get("/admin/accounts/user/").status_code == 302
