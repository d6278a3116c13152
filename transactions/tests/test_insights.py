"""Spending insights: categories from staff rules, the customer's own categories (which win and
teach the counterparty), monthly totals by SQL that equal the entries' sums, recommendations."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import BankAccount
from integrations.gateway.messages import CreditNotification, Party
from transactions.models import CategoryRule, Entry, Transaction
from transactions.services.cash import cash_deposit, cash_withdraw
from transactions.services.incoming import incoming_credit_apply
from transactions.services.insights import category_rule_save, entry_categories, spending_for_month
from transactions.services.ledger import Leg, post_transaction
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def default_rules(db):
    """The bank's starting rules as migration 0016 installs them (a transactional test elsewhere in
    the run flushes the tables, and migration data with them)."""
    import importlib

    if not CategoryRule.objects.exists():
        migration = importlib.import_module("transactions.migrations.0016_insights")
        CategoryRule.objects.bulk_create(
            CategoryRule(field=field, pattern=pattern, direction=direction, category=category, priority=priority)
            for field, pattern, direction, category, priority in migration.DEFAULT_RULES
        )


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def pay(source: BankAccount, destination: BankAccount, amount: int, description: str, when: datetime) -> Entry:
    """A back-dated transfer (post in time order); returns the source account's entry."""
    with transaction.atomic():
        journal, _ = post_transaction(
            kind=Transaction.Kind.TRANSFER,
            legs=[Leg(source.pk, -amount), Leg(destination.pk, amount)],
            currency=source.currency,
            description=description,
            initiated_by=source.owner,
            source_account_id=source.pk,
            destination_account_id=destination.pk,
            amount=amount,
            at=when,
        )
    return Entry.objects.get(transaction=journal, account=source)


def merchant(name: str, currency: str = "EUR") -> BankAccount:
    return open_account(CustomerFactory(full_name=name), currency=currency, name=name)


@pytest.fixture
def funded(customer) -> BankAccount:
    account = open_account(customer, name="Everyday")
    cash_deposit(iban=account.iban, amount=1_000_000, at=at(1, 1, 8), reference="Opening cash")
    return account


def categories_of(customer, *entries: Entry) -> list[str]:
    found = entry_categories(customer=customer, entry_ids=[entry.pk for entry in entries])
    return [found[entry.pk] for entry in entries]


def spending(client, query: str) -> dict:
    response = client.get(f"/api/v1/insights/spending?{query}")
    assert response.status_code == 200, response.content
    return response.json()


# --- categorisation ----------------------------------------------------------------------------


def test_rules_categorise_by_priority_on_whole_words(customer, funded):
    category_rule_save(
        rule=CategoryRule(field="description", pattern="flat white", category="eating_out", priority=100),
        actor="test",
    )
    category_rule_save(
        rule=CategoryRule(field="counterparty_name", pattern="Quokka Grocer", category="groceries", priority=300),
        actor="test",
    )
    quokka, corner = merchant("Quokka Grocer GmbH"), merchant("Corner Stand")
    both = pay(funded, quokka, 450, "Flat white and oats", at(2, 3))
    coffee = pay(funded, corner, 380, "flat-white", at(2, 4))
    nothing = pay(funded, corner, 100, "whitewash", at(2, 5))
    withdrawal = cash_withdraw(iban=funded.iban, amount=2_000, at=at(2, 6))
    cash = Entry.objects.get(transaction=withdrawal, account=funded)

    # The higher-priority counterparty rule beats the description rule; punctuation and case do
    # not matter, but a pattern matches whole words only ("white" is not in "whitewash").
    assert categories_of(customer, both, coffee, nothing, cash) == ["groceries", "eating_out", "other", "cash"]


def test_a_staff_rule_change_applies_to_past_entries_and_is_audited(customer, funded):
    from bankcore.models import AuditEvent

    shop = merchant("Odd Widgets Ltd")
    entry = pay(funded, shop, 999, "widgets", at(2, 3))
    assert categories_of(customer, entry) == ["other"]
    rule = category_rule_save(
        rule=CategoryRule(field="counterparty_name", pattern="odd widgets", category="shopping"), actor="test"
    )
    assert categories_of(customer, entry) == ["shopping"]
    rule.active = False
    category_rule_save(rule=rule, actor="test")
    assert categories_of(customer, entry) == ["other"]
    assert AuditEvent.objects.filter(action__startswith="insights.rule_", target_id=str(rule.pk)).count() == 2


def test_money_between_the_customers_own_accounts_is_transfers(customer, funded):
    savings = open_account(customer, kind="savings", name="Rainy day")
    entry = pay(funded, savings, 50_000, "Rent reserve", at(2, 1))
    assert categories_of(customer, entry) == ["transfers"]  # not "rent": it never left the customer


def test_history_entries_carry_their_category(customer, customer_client, funded):
    entry = pay(funded, merchant("Lidl Vertrieb"), 2_345, "Einkauf", at(3, 2))
    response = customer_client.get(f"/api/v1/accounts/{funded.pk}/transactions")
    assert response.status_code == 200
    by_id = {item["id"]: item["category"] for item in response.json()["results"]}
    assert by_id[str(entry.pk)] == "groceries"  # the bank's default rule on the counterparty name


def test_incoming_credit_is_categorised_by_its_debtor_and_remittance(customer):
    account = open_account(customer)
    incoming_credit_apply(
        notification=CreditNotification(
            id="n-insights-1",
            iban=account.iban,
            amount=250_000,
            currency="EUR",
            debtor=Party(name="Acme Payroll Services", iban="FR1420041010050500013M02606"),
            remittance_information="Salary November",
            booked_at=timezone.now(),
        )
    )
    entry = Entry.objects.get(account=account, amount=250_000)
    assert categories_of(customer, entry) == ["salary"]


# --- the customer's own category ---------------------------------------------------------------


def test_customer_category_wins_and_teaches_later_entries_from_the_same_counterparty(customer, customer_client, funded):
    gym = merchant("Iron Temple Fitness")
    other_shop = merchant("Iron Works Supplies")
    category_rule_save(
        rule=CategoryRule(field="counterparty_name", pattern="iron", category="shopping", priority=500), actor="test"
    )
    january = pay(funded, gym, 3_000, "Membership", at(1, 10))
    february = pay(funded, gym, 3_000, "Membership", at(2, 10))
    march = pay(funded, gym, 3_000, "Membership", at(3, 10))
    unrelated = pay(funded, other_shop, 1_500, "Nails", at(3, 11))
    someone_else = open_account(CustomerFactory(), name="Theirs")
    cash_deposit(iban=someone_else.iban, amount=100_000, at=at(1, 1, 9))
    theirs = pay(someone_else, gym, 3_000, "Membership", at(3, 12))

    response = customer_client.patch(
        f"/api/v1/accounts/{funded.pk}/transactions/{february.pk}", {"category": "health"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(february.pk) and body["category"] == "health" and body["amount"] == "-30.00"

    april = pay(funded, gym, 3_000, "Membership", at(4, 10))
    # The re-categorised entry and every later one from the gym follow the customer; the earlier
    # one, another counterparty and another customer's entries keep the rule's category.
    assert categories_of(customer, january, february, march, april, unrelated) == [
        "shopping",
        "health",
        "health",
        "health",
        "shopping",
    ]
    assert categories_of(someone_else.owner, theirs) == ["shopping"]
    # And the insights follow: April's health spending is the gym's (March had the nails' shopping).
    data = spending(customer_client, "month=2026-04")
    assert {c["category"]: c["amount"] for c in data["categories"]} == {"health": "30.00", "shopping": "0.00"}


def test_a_later_choice_for_the_counterparty_replaces_the_taught_category(customer, customer_client, funded):
    cafe = merchant("Blue Door")
    first, second, third = (pay(funded, cafe, 800, "Order", at(5, day)) for day in (1, 2, 3))
    url = f"/api/v1/accounts/{funded.pk}/transactions"
    assert customer_client.patch(f"{url}/{second.pk}", {"category": "eating_out"}, format="json").status_code == 200
    assert customer_client.patch(f"{url}/{third.pk}", {"category": "shopping"}, format="json").status_code == 200
    # third is its own choice; second keeps its own; the taught span starts at second.
    assert categories_of(customer, first, second, third) == ["other", "eating_out", "shopping"]
    fourth = pay(funded, cafe, 800, "Order", at(5, 4))
    assert categories_of(customer, fourth) == ["shopping"]


def test_patch_checks_the_category_and_whose_entry_it_is(customer, customer_client, funded, other_customer):
    entry = pay(funded, merchant("Somewhere"), 100, "x", at(2, 2))
    url = f"/api/v1/accounts/{funded.pk}/transactions/{entry.pk}"

    bad = customer_client.patch(url, {"category": "yachts"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_request" and "category" in bad.json()["error"]["details"]
    assert customer_client.patch(url, {}, format="json").status_code == 400

    # Another customer: the account is not theirs -> 404, and nothing changed.
    intruder = client_for(other_customer)
    response = intruder.patch(url, {"category": "rent"}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    # Their own account with our entry's id: the entry is not on that account -> 404.
    theirs = open_account(other_customer)
    response = intruder.patch(
        f"/api/v1/accounts/{theirs.pk}/transactions/{entry.pk}", {"category": "rent"}, format="json"
    )
    assert response.status_code == 404
    # The customer's own other account with this entry's id: still 404.
    savings = open_account(customer, kind="savings")
    url_other = f"/api/v1/accounts/{savings.pk}/transactions/{entry.pk}"
    assert customer_client.patch(url_other, {"category": "rent"}, format="json").status_code == 404
    for junk in ("abc", "99999999999999999999999", str(entry.pk + 10_000)):
        response = customer_client.patch(
            f"/api/v1/accounts/{funded.pk}/transactions/{junk}", {"category": "rent"}, format="json"
        )
        assert response.status_code == 404, junk
    assert categories_of(customer, entry) == ["other"]


# --- monthly totals ----------------------------------------------------------------------------


def test_insights_totals_equal_the_entries_sums(customer, customer_client, funded):
    savings = open_account(customer, kind="savings", name="Rainy day")
    usd = open_account(customer, currency="USD", name="Travel")
    cash_deposit(iban=usd.iban, amount=90_000, at=at(1, 1, 9))
    shops = {
        "groceries": merchant("Rewe Markt"),
        "eating_out": merchant("Pizzeria Napoli"),
        "transport": merchant("BVG Tickets"),
        "utilities": merchant("Stadtwerke Nord"),
    }
    amounts = [1_234, 5_678, 999, 12_001, 333, 7_070]
    day = 1
    for month in (2, 3):
        for index, (category, shop) in enumerate(sorted(shops.items())):
            for amount in amounts[index : index + month]:
                pay(funded, shop, amount, "Card payment", at(month, day % 28 + 1))
                day += 1
        pay(funded, savings, 10_000, "Put aside", at(month, 27))
        cash_withdraw(iban=funded.iban, amount=5_000, at=at(month, 27, 15))
        pay(savings, funded, 2_500, "Top up", at(month, 28))  # money out of savings counts too
        cash_deposit(iban=funded.iban, amount=20_000, at=at(month, 28, 15), reference="Refund")  # money in: not
        pay(usd, merchant("NYC Deli", currency="USD"), 4_200, "Lunch", at(month, 28, 16))  # other currency

    data = spending(customer_client, "month=2026-03&currency=EUR")
    start, end = at(3, 1, 0), at(4, 1, 0)
    out = Entry.objects.filter(
        account__owner=customer, currency="EUR", created_at__gte=start, created_at__lt=end, amount__lt=0
    )
    expected: dict[str, int] = defaultdict(int)
    found = entry_categories(customer=customer, entry_ids=[entry.pk for entry in out])
    for entry in out:
        expected[found[entry.pk]] -= entry.amount
    assert data["month"] == "2026-03" and data["currency"] == "EUR"
    assert data["total_out"] == f"{-sum(entry.amount for entry in out) / 100:.2f}"
    assert {c["category"]: c["amount"] for c in data["categories"]} == {
        category: f"{amount / 100:.2f}" for category, amount in expected.items()
    }
    assert set(expected) == {"groceries", "eating_out", "transport", "utilities", "transfers", "cash"}
    # Largest first.
    amounts_listed = [float(c["amount"]) for c in data["categories"]]
    assert amounts_listed == sorted(amounts_listed, reverse=True)

    usd_data = spending(customer_client, "month=2026-03&currency=USD")
    assert usd_data["currency"] == "USD" and usd_data["total_out"] == "42.00"
    assert [c["category"] for c in usd_data["categories"]] == ["eating_out"]


def test_change_against_the_previous_month_is_an_amount_difference(customer, customer_client, funded):
    rewe, netflix = merchant("Rewe City"), merchant("Netflix International")
    pay(funded, rewe, 10_000, "Groceries", at(6, 5))
    pay(funded, netflix, 1_299, "Subscription", at(6, 6))
    pay(funded, rewe, 6_000, "Groceries", at(7, 5))
    pay(funded, rewe, 9_050, "Groceries", at(7, 20))
    data = spending(customer_client, "month=2026-07")
    assert data["total_out"] == "150.50"
    assert data["categories"] == [
        {
            "category": "groceries",
            "amount": "150.50",
            "change_vs_previous_month": "50.50",
            "previous_month_amount": "100.00",
        },
        {
            "category": "entertainment",
            "amount": "0.00",
            "change_vs_previous_month": "-12.99",
            "previous_month_amount": "12.99",
        },
    ]
    january = spending(customer_client, "month=2027-01")  # across the year boundary, nothing spent
    assert january["total_out"] == "0.00" and january["categories"] == []


def test_december_is_compared_with_november_and_january_with_december(customer, funded):
    shop = merchant("Year End Store")
    pay(funded, shop, 100, "gift", at(11, 30, 23))
    pay(funded, shop, 300, "gift", at(12, 1, 0))
    with transaction.atomic():
        post_transaction(
            kind=Transaction.Kind.TRANSFER,
            legs=[Leg(funded.pk, -700), Leg(shop.pk, 700)],
            currency="EUR",
            source_account_id=funded.pk,
            destination_account_id=shop.pk,
            amount=700,
            at=datetime(2027, 1, 1, 0, tzinfo=UTC),
        )
    from datetime import date

    december = spending_for_month(user=funded.owner, month=date(2026, 12, 1), currency="EUR")
    assert (december.total_out, december.categories[0].previous) == (300, 100)
    january = spending_for_month(user=funded.owner, month=date(2027, 1, 1), currency="EUR")
    assert (january.total_out, january.categories[0].previous) == (700, 300)


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "2026-1", "26-01", "abc", "", "2026-01-01", "1969-12"])
def test_a_malformed_month_is_400(customer_client, month):
    response = customer_client.get(f"/api/v1/insights/spending?month={month}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert "month" in response.json()["error"]["details"]


def test_currency_defaults_to_the_first_current_account_and_is_validated(customer, customer_client):
    open_account(customer, currency="GBP", kind="savings")
    open_account(customer, currency="CHF")
    open_account(customer, currency="EUR")
    assert spending(customer_client, "month=2026-05")["currency"] == "CHF"
    assert spending(customer_client, "")["month"] == timezone.now().strftime("%Y-%m")
    response = customer_client.get("/api/v1/insights/spending?month=2026-05&currency=XYZ")
    assert response.status_code == 400 and "currency" in response.json()["error"]["details"]


def test_insights_need_authentication():
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/insights/spending?month=2026-05").status_code == 401


# --- recommendations ---------------------------------------------------------------------------


def test_recommendations_only_for_customers_who_opted_in(customer, customer_client, settings):
    settings.INSIGHTS_IDLE_BALANCE_THRESHOLD = "5000.00"
    account = open_account(customer)
    cash_deposit(iban=account.iban, amount=800_000, at=at(8, 1, 0), reference="Inheritance")
    cash_withdraw(iban=account.iban, amount=100_000, at=at(8, 16, 0))  # avg ~ 7,500 over August

    assert spending(customer_client, "month=2026-08")["recommendations"] == []
    assert customer_client.get("/api/v1/insights/preferences").json() == {"recommendations": False}

    response = customer_client.patch("/api/v1/insights/preferences", {"recommendations": True}, format="json")
    assert response.status_code == 200 and response.json() == {"recommendations": True}
    advice = spending(customer_client, "month=2026-08")["recommendations"]
    assert [item["code"] for item in advice] == ["open_savings_account"]
    assert advice[0]["details"]["threshold"] == "5000.00"
    assert 7_400 < float(advice[0]["details"]["average_balance"]) < 7_600

    # Below the threshold (July: nothing yet; a higher threshold) -> nothing.
    assert spending(customer_client, "month=2026-07")["recommendations"] == []
    settings.INSIGHTS_IDLE_BALANCE_THRESHOLD = "8000.00"
    assert spending(customer_client, "month=2026-08")["recommendations"] == []
    settings.INSIGHTS_IDLE_BALANCE_THRESHOLD = "5000.00"

    # Already has a savings account -> nothing to recommend.
    open_account(customer, kind="savings")
    assert spending(customer_client, "month=2026-08")["recommendations"] == []

    # Opted out again -> nothing, whatever the balance.
    other = CustomerFactory()
    rich = open_account(other)
    cash_deposit(iban=rich.iban, amount=900_000, at=at(8, 1, 0))
    client = client_for(other)
    client.patch("/api/v1/insights/preferences", {"recommendations": True}, format="json")
    assert spending(client, "month=2026-08")["recommendations"] != []
    client.patch("/api/v1/insights/preferences", {"recommendations": False}, format="json")
    assert spending(client, "month=2026-08")["recommendations"] == []


# --- staff rules in the admin ------------------------------------------------------------------


def test_staff_edit_rules_in_the_admin_audited_and_applied_at_once(django_user_model, customer, funded):
    from bankcore.models import AuditEvent
    from bankcore.testing import staff_client

    admin_user = django_user_model.objects.create_superuser(
        email="rules@bank.example", password="x-Very-long-pass-1", full_name="Rules Admin"
    )
    client = staff_client(admin_user)
    entry = pay(funded, merchant("Hoppy Brewing Co"), 1_250, "Taproom", at(2, 2))
    assert categories_of(customer, entry) == ["other"]
    response = client.post(
        "/admin/transactions/categoryrule/add/",
        {
            "field": "counterparty_name",
            "pattern": "hoppy",
            "direction": "out",
            "category": "eating_out",
            "priority": "100",
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    rule = CategoryRule.objects.get(pattern="hoppy")
    assert categories_of(customer, entry) == ["eating_out"]
    assert AuditEvent.objects.filter(action="insights.rule_created", target_id=str(rule.pk), actor=admin_user).exists()
    assert client.get("/admin/transactions/categoryrule/").status_code == 200

    response = client.post(f"/admin/transactions/categoryrule/{rule.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not CategoryRule.objects.filter(pk=rule.pk).exists()
    assert categories_of(customer, entry) == ["other"]
    assert AuditEvent.objects.filter(action="insights.rule_deleted", target_id=str(rule.pk)).exists()


def test_seed_demo_history_has_believable_categories():
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("seed_demo")
    alice = get_user_model().objects.get(email="alice@demo.bankcore.dev")
    client = client_for(alice)
    seen: dict[str, float] = defaultdict(float)
    for days_ago in (100, 70, 40, 10):
        month = (timezone.now() - timedelta(days=days_ago)).strftime("%Y-%m")
        for item in spending(client, f"month={month}")["categories"]:
            seen[item["category"]] += float(item["amount"])
    assert {"rent", "groceries", "transport", "utilities", "eating_out", "entertainment", "cash", "transfers"} <= set(
        seen
    )
    assert seen.get("other", 0) < 0.1 * sum(seen.values())
