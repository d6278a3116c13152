"""Contact changes (PATCH /me): step-up bound to the new value, the old contact told, and the
new one only used once the code sent to it is confirmed. A stolen session alone must not be
able to redirect security alerts."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from accounts.models import ContactChange, StepUpToken, User
from accounts.services.contacts import MAX_CODE_ATTEMPTS
from accounts.tests.factories import PASSWORD, UserFactory, authenticated_client, step_up_token_for
from bankcore.models import AuditEvent
from notifications.events import Event
from notifications.models import Delivery, Notification
from notifications.services import notify

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

OLD_PHONE, NEW_PHONE = "+4915112345678", "+447911123456"


@pytest.fixture
def customer():
    return UserFactory(email="ada@example.com", phone=OLD_PHONE)


def contact_token(user, value):
    return step_up_token_for(user, amount="", currency="", payee=value, purpose="contact_change")


def sent_code(address):
    body = Delivery.objects.get(event="contact_verification", recipient=address).body
    return re.search(r"\b(\d{6})\b", body).group(1)


def alert_recipients(user, channel):
    """Where a security alert raised now is addressed on `channel`."""
    Delivery.objects.filter(user=user, event="new_device").delete()
    notify(user=User.objects.get(pk=user.pk), event=Event.NEW_DEVICE, context={"device_name": "x"})
    return set(
        Delivery.objects.filter(user=user, event="new_device", channel=channel).values_list("recipient", flat=True)
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", NEW_PHONE),
        ("email", "thief@example.com"),
        ("notification_email", "thief@example.com"),
        ("notification_phone", NEW_PHONE),
    ],
)
def test_a_contact_change_with_only_an_access_token_answers_403_and_changes_nothing(customer, field, value):
    client = authenticated_client(customer)
    before = {f: getattr(customer, f) for f in ("email", "phone", "notification_email", "notification_phone")}
    response = client.patch("/api/v1/me", {field: value, "full_name": "Someone Else"}, format="json")
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "step_up_required"
    assert error["details"]["purpose"] == "contact_change" and error["details"]["payee"] == value
    customer.refresh_from_db()
    assert {f: getattr(customer, f) for f in before} == before
    assert customer.full_name != "Someone Else"  # the whole request changed nothing
    assert not ContactChange.objects.exists()
    assert not Delivery.objects.filter(event="contact_verification").exists()


def test_a_step_up_token_for_another_value_does_not_authorise_the_change(customer):
    client = authenticated_client(customer)
    token = contact_token(customer, "+447911999999")
    response = client.patch("/api/v1/me", {"phone": NEW_PHONE, "step_up_token": token}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "step_up_required"
    transfer_token = step_up_token_for(customer, amount="10.00", currency="EUR", payee="DE89370400440532013000")
    response = client.patch("/api/v1/me", {"phone": NEW_PHONE, "step_up_token": transfer_token}, format="json")
    assert response.status_code == 403
    assert not ContactChange.objects.exists()


def test_a_new_phone_is_used_only_after_its_code_is_confirmed_and_the_old_one_is_told(customer):
    client = authenticated_client(customer)
    response = client.patch(
        "/api/v1/me", {"phone": "+44 7911 123456", "step_up_token": contact_token(customer, NEW_PHONE)}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["phone"] == OLD_PHONE and body["pending_contacts"] == {"phone": NEW_PHONE}
    assert StepUpToken.objects.get(purpose="contact_change").used_at is not None

    # The current contacts are told at once, on every channel.
    told = Delivery.objects.filter(user=customer, event="contact_change_requested")
    assert set(told.values_list("channel", "recipient")) >= {("sms", OLD_PHONE), ("email", "ada@example.com")}
    # The code goes to the new phone only: not to the inbox, where a session holder could read it.
    code = sent_code(NEW_PHONE)
    assert not Notification.objects.filter(user=customer, event="contact_verification").exists()
    assert not Notification.objects.filter(user=customer, body__contains=code).exists()

    # Until confirmed, security alerts keep going to the verified phone.
    assert alert_recipients(customer, "sms") == {OLD_PHONE}

    confirmed = client.post("/api/v1/me/contacts/confirm", {"field": "phone", "code": code}, format="json")
    assert confirmed.status_code == 200, confirmed.content
    assert confirmed.json()["phone"] == NEW_PHONE and confirmed.json()["phone_verified"] is True
    assert confirmed.json()["pending_contacts"] == {}
    assert set(
        Delivery.objects.filter(user=customer, event="contact_changed", channel="sms").values_list(
            "recipient", flat=True
        )
    ) == {OLD_PHONE}
    assert alert_recipients(customer, "sms") == {NEW_PHONE}
    actions = set(AuditEvent.objects.filter(target_id=str(customer.pk)).values_list("action", flat=True))
    assert {"user.contact_change_requested", "user.contact_changed"} <= actions
    # The code is spent.
    again = client.post("/api/v1/me/contacts/confirm", {"field": "phone", "code": code}, format="json")
    assert again.status_code == 400


def test_wrong_codes_are_counted_and_too_many_void_the_change(customer):
    client = authenticated_client(customer)
    client.patch("/api/v1/me", {"phone": NEW_PHONE, "step_up_token": contact_token(customer, NEW_PHONE)}, format="json")
    code = sent_code(NEW_PHONE)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(MAX_CODE_ATTEMPTS):
        response = client.post("/api/v1/me/contacts/confirm", {"field": "phone", "code": wrong}, format="json")
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    assert ContactChange.objects.get().attempts == MAX_CODE_ATTEMPTS
    late = client.post("/api/v1/me/contacts/confirm", {"field": "phone", "code": code}, format="json")
    assert late.status_code == 400
    customer.refresh_from_db()
    assert customer.phone == OLD_PHONE


def test_a_new_login_email_takes_effect_only_when_confirmed(customer):
    client = authenticated_client(customer)
    new = "ada.lovelace@example.org"
    response = client.patch(
        "/api/v1/me",
        {"email": "Ada.Lovelace@Example.org", "step_up_token": contact_token(customer, new)},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["email"] == "ada@example.com"

    def login_answer(email):  # the password is accepted when TOTP is asked for next
        response = APIClient().post("/api/v1/auth/token", {"email": email, "password": PASSWORD}, format="json")
        return response.json()["error"]["code"]

    assert (login_answer("ada@example.com"), login_answer(new)) == ("mfa_required", "invalid_credentials")
    code = sent_code(new)
    assert (
        client.post("/api/v1/me/contacts/confirm", {"field": "email", "code": code}, format="json").status_code == 200
    )
    customer.refresh_from_db()
    assert (customer.email, customer.email_verified) == (new, True)
    assert (login_answer("ada@example.com"), login_answer(new)) == ("invalid_credentials", "mfa_required")


def test_an_alert_email_redirects_alerts_only_after_confirmation_and_removing_it_returns_them(customer):
    client = authenticated_client(customer)
    alerts = "alerts@example.net"
    token = contact_token(customer, alerts)
    client.patch("/api/v1/me", {"notification_email": alerts, "step_up_token": token}, format="json")
    assert alert_recipients(customer, "email") == {"ada@example.com"}
    code = sent_code(alerts)
    client.post("/api/v1/me/contacts/confirm", {"field": "notification_email", "code": code}, format="json")
    assert alert_recipients(customer, "email") == {alerts}

    assert client.patch("/api/v1/me", {"notification_email": ""}, format="json").status_code == 403
    removed = client.patch(
        "/api/v1/me", {"notification_email": "", "step_up_token": contact_token(customer, "")}, format="json"
    )
    assert removed.status_code == 200 and removed.json()["notification_email"] is None  # unset reads as null
    assert alert_recipients(customer, "email") == {"ada@example.com"}


def test_one_contact_per_request_and_the_email_of_another_account_is_refused(customer):
    client = authenticated_client(customer)
    both = client.patch("/api/v1/me", {"phone": NEW_PHONE, "email": "x@example.com"}, format="json")
    assert both.status_code == 400 and set(both.json()["error"]["details"]) == {"phone", "email"}
    UserFactory(email="taken@example.com")
    token = contact_token(customer, "taken@example.com")
    taken = client.patch("/api/v1/me", {"email": "taken@example.com", "step_up_token": token}, format="json")
    assert taken.status_code == 400 and "email" in taken.json()["error"]["details"]
    assert not ContactChange.objects.exists()


def test_the_step_up_for_a_contact_change_binds_the_new_value_not_an_amount(customer):
    from accounts.tests.factories import new_backup_code

    client = authenticated_client(customer)
    response = client.post(
        "/api/v1/auth/step-up",
        {"purpose": "contact_change", "payee": "+44 7911 123456", "code": new_backup_code(customer)},
        format="json",
    )
    assert response.status_code == 200, response.content
    token = StepUpToken.objects.get(purpose="contact_change")
    assert (token.amount, token.currency, token.payee) == ("", "", NEW_PHONE)
    bad = client.post(
        "/api/v1/auth/step-up",
        {"purpose": "contact_change", "payee": "not a contact", "code": new_backup_code(customer)},
        format="json",
    )
    assert bad.status_code == 400 and "payee" in bad.json()["error"]["details"]
