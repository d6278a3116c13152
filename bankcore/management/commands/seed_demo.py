"""An idempotent demo bank: customers, a staff user, accounts and history. Prints the logins."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

DEMO_PASSWORD = "demo-bank-2026!"  # noqa: S105 - demo data, printed on purpose
DEMO_CUSTOMERS = [
    ("alice@demo.bankcore.dev", "Alice Andersen", "+4915112340001"),
    ("bob@demo.bankcore.dev", "Bob Brandt", "+4915112340002"),
    ("carol@demo.bankcore.dev", "Carol Castillo", "+4915112340003"),
]
DEMO_STAFF = ("staff@demo.bankcore.dev", "Sam Staff", "+4915112340099")


class Command(BaseCommand):
    help = "Create (or top up) the demo bank. Safe to run any number of times."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            customers = [self._user(email, name, phone) for email, name, phone in DEMO_CUSTOMERS]
            staff = self._user(*DEMO_STAFF, staff=True)
            seed_banking(customers=customers, stdout=self.stdout)
            seed_app_config(stdout=self.stdout)
            seed_support(customers=customers, stdout=self.stdout)
        self.stdout.write(self.style.SUCCESS(f"Demo bank ready. Logins (password for all: {DEMO_PASSWORD}):"))
        for user in customers:
            self.stdout.write(f"  customer  {user.email}")
        self.stdout.write(f"  staff     {staff.email}  (admin needs TOTP: manage.py enrol_staff_totp {staff.email})")

    def _user(self, email: str, full_name: str, phone: str, staff: bool = False) -> Any:
        users = get_user_model().objects
        user = users.filter(email__iexact=email).first()
        if user is None:
            create = users.create_superuser if staff else users.create_user
            user = create(email=email, password=DEMO_PASSWORD, full_name=full_name, phone=phone)
        return user


def seed_banking(*, customers: list[Any], stdout: Any) -> None:
    """Accounts, history, beneficiaries and a standing order for the demo customers.

    Owned by the ledger: must be idempotent (running seed_demo twice adds nothing twice).
    """
    try:
        from transactions.demo import seed_demo_banking
    except ImportError:
        return
    seed_demo_banking(customers=customers, stdout=stdout)


DEMO_STORE_URLS = {
    "ios": "https://apps.apple.com/app/bankcore-demo/id0000000000",
    "android": "https://play.google.com/store/apps/details?id=dev.bankcore.demo",
}
# (name, description, enabled, rollout percent): one flag at 50 % shows the stable per-user rollout.
DEMO_FLAGS = [
    ("instant_payments", "Instant SEPA payments", True, 100),
    ("spending_insights", "Spending by category", True, 50),
    ("card_controls_v2", "New card controls screen", False, 0),
]


def seed_app_config(*, stdout: Any) -> None:
    """Version policies for both platforms and a few feature flags (one at 50 %). Idempotent:
    existing policies and flags are left as staff set them."""
    from bankcore.app_config import feature_flag_set, version_policy_set
    from bankcore.models import AppVersionPolicy, FeatureFlag

    for platform, store_url in DEMO_STORE_URLS.items():
        if not AppVersionPolicy.objects.filter(platform=platform).exists():
            version_policy_set(
                platform=platform,
                min_supported_version="1.4.0",
                latest_version="2.3.1",
                store_url=store_url,
                actor="seed_demo",
            )
    for name, description, enabled, percent in DEMO_FLAGS:
        if not FeatureFlag.objects.filter(name=name).exists():
            feature_flag_set(
                name=name, description=description, enabled=enabled, rollout_percent=percent, actor="seed_demo"
            )
    stdout.write("App versions and feature flags ready.")


def seed_support(*, customers: list[Any], stdout: Any) -> None:
    """An open support ticket in the staff queue (owned by the ledger, which may link a transfer)."""
    from transactions.demo import seed_demo_support

    seed_demo_support(customers=customers, stdout=stdout)
