"""Demo banking data for `manage.py seed_demo` (called from bankcore's seed_demo command).

Accounts, four months of believable history, beneficiaries and a standing order, all
posted through the ledger services so the demo ledger passes verify_ledger. The history
spends at shops that bank with us (demo business customers without a login), so the
bank's default category rules give the spending insights believable categories.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.models import BankAccount
from accounts.services.bank_accounts import bank_account_open, internal_account
from bankcore.audit import audit_record
from transactions.models import Beneficiary, StandingOrder, Transaction
from transactions.services.ledger import Leg, post_transaction
from transactions.services.payees import beneficiary_create, standing_order_create

HISTORY_DAYS = 120

# Demo businesses the customers pay: (name, description, times a month, min, max minor units).
# Their names are what the default category rules (migration transactions 0016) look for.
DEMO_MERCHANTS = [
    ("Hausverwaltung Landlord GmbH", "Rent", 1, 85_000, 95_000),
    ("Lidl Vertrieb", "Card payment", 3, 2_500, 7_500),
    ("Rewe Markt", "Card payment", 2, 1_500, 6_000),
    ("BVG Berlin", "Monthly ticket", 1, 8_600, 8_600),
    ("Stadtwerke Berlin", "Electricity", 1, 6_500, 9_000),
    ("Vodafone GmbH", "Mobile and internet", 1, 3_999, 3_999),
    ("Pizzeria Da Mario", "Card payment", 2, 1_800, 4_500),
    ("Cafe Einstein", "Contactless", 3, 350, 1_200),
    ("Zalando SE", "Online order", 1, 2_500, 12_000),
    ("Netflix International", "Subscription", 1, 1_299, 1_299),
    ("Apotheke am Markt", "Card payment", 1, 500, 3_000),
]


def _demo_merchants() -> list[tuple[BankAccount, str, int, int, int]]:
    """The demo businesses' current accounts (created once; they have no password to log in with)."""
    user_model = get_user_model()
    merchants = []
    for number, (name, description, per_month, low, high) in enumerate(DEMO_MERCHANTS):
        email = f"merchant{number + 1}@business.demo.bankcore.dev"
        # create_user(password=None): an unusable password, so a business cannot sign in.
        user = user_model.objects.filter(email=email).first() or user_model.objects.create_user(
            email=email, password=None, full_name=name
        )
        account = BankAccount.objects.filter(owner=user, kind=BankAccount.Kind.CURRENT).first()
        if account is None:
            account = bank_account_open(owner=user, kind="current", currency="EUR", name=name)
        merchants.append((account, description, per_month, low, high))
    return merchants


def _post(
    *, kind: str, source: BankAccount, destination: BankAccount, amount: int, description: str, at: datetime
) -> None:
    with transaction.atomic():
        journal, _ = post_transaction(
            kind=kind,
            legs=[Leg(source.pk, -amount), Leg(destination.pk, amount)],
            currency=source.currency,
            description=description,
            initiated_by=source.owner,
            source_account_id=source.pk if source.owner_id else None,
            destination_account_id=destination.pk,
            amount=amount,
            at=at,
        )
        audit_record(action=f"{kind}.posted", actor="seed_demo", target=journal, details={"demo": True})


def seed_demo_banking(*, customers: list[Any], stdout: Any) -> None:
    """Idempotent: customers who already have accounts are left as they are."""
    fresh = [user for user in customers if not BankAccount.objects.filter(owner=user).exists()]
    if not fresh:
        stdout.write("Demo accounts already exist; nothing added.")
        return
    rng = random.Random(20261128)  # noqa: S311 - reproducible demo data, not security
    payroll = internal_account(purpose="settlement_clearing", currency="EUR")
    vault = internal_account(purpose="cash_vault", currency="EUR")
    accounts: dict[Any, dict[str, BankAccount]] = {}
    for user in fresh:
        accounts[user] = {
            "current": bank_account_open(owner=user, kind="current", currency="EUR", name="Everyday"),
            "savings": bank_account_open(owner=user, kind="savings", currency="EUR", name="Rainy day"),
        }
    merchants = _demo_merchants()
    accounts[fresh[-1]]["usd"] = bank_account_open(owner=fresh[-1], kind="current", currency="USD", name="Travel USD")

    start = timezone.now() - timedelta(days=HISTORY_DAYS)
    events: list[tuple[datetime, str, BankAccount, BankAccount, int, str]] = []
    for user in fresh:
        current, savings = accounts[user]["current"], accounts[user]["savings"]
        for month in range(4):
            payday = start + timedelta(days=30 * month, hours=9)
            events.append((payday, "deposit", payroll, current, rng.randint(280_000, 420_000), "Salary"))
            events.append((payday + timedelta(days=1), "transfer", current, savings, 50_000, "Monthly saving"))
            for week in range(4):
                moment = payday + timedelta(days=2 + 7 * week, hours=rng.randint(8, 20))
                events.append((moment, "withdrawal", current, vault, rng.randint(2_000, 12_000), "Cash withdrawal"))
            for shop, description, per_month, low, high in merchants:
                for _ in range(per_month):
                    moment = payday + timedelta(days=rng.randint(1, 28), hours=rng.randint(8, 21))
                    events.append((moment, "transfer", current, shop, rng.randint(low, high), description))
        for other in fresh:
            if other is not user:
                moment = start + timedelta(days=rng.randint(5, HISTORY_DAYS - 2), hours=rng.randint(8, 22))
                amount = rng.randint(1_500, 9_000)
                events.append((moment, "transfer", current, accounts[other]["current"], amount, "Dinner, thanks!"))
    if "usd" in accounts[fresh[-1]]:
        events.append(
            (start + timedelta(days=3), "deposit", vault, accounts[fresh[-1]]["usd"], 150_000, "Cash deposit")
        )
        events[-1] = (
            events[-1][0],
            "deposit",
            internal_account(purpose="cash_vault", currency="USD"),
            accounts[fresh[-1]]["usd"],
            150_000,
            "Cash deposit",
        )
    for at, kind, source, destination, amount, description in sorted(events, key=lambda event: event[0]):
        _post(kind=kind, source=source, destination=destination, amount=amount, description=description, at=at)

    if len(fresh) >= 2:
        first, second = fresh[0], fresh[1]
        if not Beneficiary.objects.filter(owner=first).exists():
            beneficiary_create(owner=first, name=second.full_name, iban=accounts[second]["current"].iban)
            beneficiary_create(owner=first, name="Landlord GmbH", iban="DE89370400440532013000")
        if not StandingOrder.objects.filter(owner=first).exists():
            standing_order_create(
                owner=first,
                source_account_id=accounts[first]["current"].pk,
                destination_iban=accounts[second]["current"].iban,
                amount=45_000,
                currency="EUR",
                frequency=StandingOrder.Frequency.MONTHLY,
                day=1,
                start_date=timezone.localdate(),
                description="Rent share",
            )
    posted = Transaction.objects.filter(description__in=["Salary", "Monthly saving", "Cash withdrawal"]).count()
    stdout.write(f"Demo banking: {len(fresh)} customers with accounts and {posted}+ transactions of history.")


DEMO_TICKET_SUBJECT = "Transfer shows the wrong reference"


def seed_demo_support(*, customers: list[Any], stdout: Any) -> None:
    """One open support ticket (about the first customer's latest transfer), waiting in the staff
    queue with its first-answer timer running. Idempotent: not opened twice."""
    from transactions.models import SupportTicket
    from transactions.selectors import customer_transfers
    from transactions.services.support import ticket_open

    if not customers:
        return
    customer = customers[0]
    if SupportTicket.objects.filter(customer=customer, subject=DEMO_TICKET_SUBJECT).exists():
        stdout.write("Demo support ticket already open; nothing added.")
        return
    latest = customer_transfers(user=customer).order_by("-created_at").first()
    ticket_open(
        customer=customer,
        subject=DEMO_TICKET_SUBJECT,
        message="Hello, my last transfer arrived but the recipient sees no reference. Can you add it?",
        transfer_id=latest.pk if latest is not None else None,
    )
    stdout.write(f"Opened a demo support ticket for {customer.email}.")
