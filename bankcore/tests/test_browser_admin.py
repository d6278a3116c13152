"""Staff flows in a real browser against a real gunicorn (issue 17, item 4): sign-in with password and
TOTP, a maker-checker adjustment, an incident declared in the admin reaching /api/v1/status, and a
support reply reaching the customer's inbox.

Drives Debian's chromium like test_browser.py (it fails, never skips, without it). The database is
committed (transactional tests) so the server sees what the test wrote, and the test reads what the
server wrote. Every wait is explicit (a selector, a URL, a response), never a sleep. When a test
fails, a full-page screenshot of each page it opened is kept under BROWSER_ARTEFACTS_DIR
(default var/test-artefacts/browser/), named after the test.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import BankAccount, User
from accounts.tests.factories import PASSWORD, UserFactory, tokens_for
from bankcore.tests.test_browser import browser, server  # noqa: F401 - fixtures: chromium, gunicorn
from transactions.models import AdjustmentRequest, SupportTicket
from transactions.services.support import ticket_open
from transactions.tests.factories import open_account

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("BROWSER_ARTEFACTS_DIR", BASE_DIR / "var" / "test-artefacts" / "browser"))
WAIT_MS = 20_000


class Pages:
    """The browser contexts a test opens (one per staff member), screenshotted if the test fails."""

    def __init__(self, chromium: Any, base_url: str) -> None:
        self.chromium = chromium
        self.base_url = base_url
        self.contexts: list[Any] = []
        self.pages: list[Any] = []
        self.dialogs: list[str] = []

    def new(self) -> Any:
        context = self.chromium.new_context(viewport={"width": 1280, "height": 900}, base_url=self.base_url)
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        # A script in customer text that ran would open this; escaped text never does.
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.contexts.append(context)
        self.pages.append(page)
        return page

    def keep_screenshots(self, name: str) -> list[Path]:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        kept = []
        for number, page in enumerate(self.pages, 1):
            path = ARTEFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-{number}.png"
            try:
                page.screenshot(path=str(path), full_page=True)
                kept.append(path)
            except Exception as exc:  # a closed page must not hide the test's own failure
                print(f"no screenshot of page {number}: {exc}")
        return kept

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser, server, request, monkeypatch, redis_flushed) -> Iterator[Pages]:  # noqa: F811 - the imported fixtures
    # Redis emptied first: the sign-in throttles count per IP, and every test signs in from 127.0.0.1.
    # Playwright's sync API keeps an event loop in this thread (driven by greenlets, no coroutine of
    # ours runs in it), and Django refuses queries from a thread with a running loop. These tests
    # query between browser steps, synchronously, one thing at a time: safe, so allowed here only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    opened = Pages(browser, server.url)
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for path in opened.keep_screenshots(request.node.name):
            print(f"screenshot kept: {path}")
    opened.close()


def _staff(email: str, *groups: str) -> tuple[User, pyotp.TOTP]:
    """A staff member in `groups` with a confirmed admin TOTP device, and the authenticator app for it."""
    user = UserFactory(email=email, is_staff=True)
    # Hashed as the server hashes (the suite's own settings add a fast MD5 hasher the server lacks).
    User.objects.filter(pk=user.pk).update(password=make_password(PASSWORD, hasher="argon2"))
    user.groups.set(Group.objects.filter(name__in=groups))
    device = TOTPDevice.objects.create(user=user, name="admin", confirmed=True)
    return user, pyotp.TOTP(base64.b32encode(device.bin_key).decode())


def _sign_in(page: Any, email: str, totp: pyotp.TOTP) -> None:
    page.goto("/admin/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=otp_token]", totp.now())
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")


def _refused(page: Any, email: str, password: str, code: str) -> None:
    page.goto("/admin/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", password)
    page.fill("input[name=otp_token]", code)
    page.click("input[type=submit]")
    page.wait_for_selector(".errornote")
    assert "authentication code" in page.inner_text(".errornote")
    assert page.locator("#user-tools").count() == 0


def test_staff_sign_in_needs_password_and_totp_code(pages):
    email, other_email = "ops@bank.example", "ops2@bank.example"
    _, totp = _staff(email, "operations")
    _, other_totp = _staff(other_email, "operations")
    page = pages.new()

    page.goto("/admin/")
    page.wait_for_url(re.compile(r"/admin/login/"))
    _refused(page, email, "not the password", totp.now())
    # A wrong code with the right password (another member: django-otp then holds the device back
    # for a second, which a retry at once would meet).
    wrong = f"{(int(other_totp.now()) + 1) % 1_000_000:06d}"
    _refused(page, other_email, PASSWORD, wrong)

    _sign_in(page, email, totp)
    assert email in page.inner_text("#user-tools").lower()
    page.goto("/admin/transactions/adjustmentrequest/")
    page.wait_for_selector("#changelist")


def test_manual_adjustment_is_proposed_by_one_and_approved_by_another_and_posts_once(pages):
    maker_email, checker_email = "maker@bank.example", "checker@bank.example"
    _, maker_totp = _staff(maker_email, "operations")
    _, checker_totp = _staff(checker_email, "compliance")
    customer = UserFactory()
    account = open_account(customer, balance=10_000)

    maker = pages.new()
    _sign_in(maker, maker_email, maker_totp)
    maker.goto("/admin/transactions/adjustmentrequest/add/")
    maker.click("#id_account + .select2 .select2-selection")  # the account's autocomplete box
    maker.fill(".select2-search__field", account.iban)
    maker.click(f".select2-results__option:has-text('{account.iban}')")
    maker.fill("input[name=amount]", "2500")
    maker.fill("textarea[name=reason], input[name=reason]", "Goodwill refund of a card fee")
    maker.click("input[name=_save]")
    maker.wait_for_selector(".messagelist .success")
    proposal = AdjustmentRequest.objects.get()
    assert proposal.status == AdjustmentRequest.Status.PENDING
    assert BankAccount.objects.get(pk=account.pk).balance == 10_000  # nothing posts on the proposal

    checker = pages.new()
    _sign_in(checker, checker_email, checker_totp)

    def approve() -> str:
        checker.goto("/admin/transactions/adjustmentrequest/")
        checker.check(f"input[name=_selected_action][value='{proposal.pk}']")
        checker.select_option("select[name=action]", "approve_adjustments")
        checker.click("button[name=index]")
        checker.wait_for_selector(".messagelist li")
        return checker.inner_text(".messagelist")

    assert "posted" in approve()
    assert BankAccount.objects.get(pk=account.pk).balance == 12_500
    # Approving it a second time changes nothing: the balance moved exactly once.
    assert "already been decided" in approve()
    assert BankAccount.objects.get(pk=account.pk).balance == 12_500
    proposal.refresh_from_db()
    assert proposal.status == AdjustmentRequest.Status.POSTED
    assert proposal.decided_by.email == checker_email


def test_incident_declared_in_the_admin_appears_on_the_status_api(pages, server):  # noqa: F811
    email = "ops@bank.example"
    _, totp = _staff(email, "operations")
    assert requests.get(f"{server.url}/api/v1/status", timeout=20).json()["incidents"] == []

    page = pages.new()
    _sign_in(page, email, totp)
    page.goto("/admin/notifications/incident/add/")
    page.fill("input[name=title]", "Card payments failing")
    page.select_option("select[name=severity]", "major")
    page.check("input[name=services]:first-of-type")
    page.fill("textarea[name=message]", "Card payments fail at some shops. We are on it.")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")

    status = requests.get(f"{server.url}/api/v1/status", timeout=20).json()
    assert [(i["title"], i["severity"]) for i in status["incidents"]] == [("Card payments failing", "major")]
    assert status["incidents"][0]["message"] == "Card payments fail at some shops. We are on it."


def test_support_reply_typed_in_the_admin_reaches_the_customers_inbox(pages, server):  # noqa: F811
    email = "agent@bank.example"
    _, totp = _staff(email, "support")
    customer = UserFactory()
    subject = "<script>alert('owned')</script> card blocked"
    ticket = ticket_open(customer=customer, subject=subject, message="My card <b>stopped</b> working.")
    inbox_url = f"{server.url}/api/v1/notifications"
    customer_auth = {"Authorization": f"Bearer {tokens_for(customer)['access']}"}
    assert requests.get(inbox_url, headers=customer_auth, timeout=20).json()["unread"] == 0

    page = pages.new()
    _sign_in(page, email, totp)
    page.goto("/admin/transactions/supportticket/")
    row = page.locator("#result_list tbody tr", has_text="card blocked")
    assert "due in" in row.inner_text()
    row.locator("a").first.click()
    page.wait_for_selector("textarea[name=reply]")
    # Customer text shows as text: the markup is visible, nothing ran.
    assert subject in page.inner_text("#content")
    assert "<b>stopped</b>" in page.inner_text("#content")
    page.fill("textarea[name=reply]", "We unblocked it; try again.")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert pages.dialogs == []

    inbox = requests.get(inbox_url, headers=customer_auth, timeout=20).json()
    assert inbox["unread"] == 1
    assert [(n["event"], n["body"]) for n in inbox["results"]] == [("support_reply", "We unblocked it; try again.")]
    ticket.refresh_from_db()
    assert ticket.status == SupportTicket.Status.ANSWERED
