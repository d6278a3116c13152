"""Spending insights: the category vocabulary, staff rules and what customers taught us.

Entries are append-only, so an entry's category is never a column on Entry. It is derived
when read (`services.insights`): the customer's own category for that entry, else what the
customer taught for the entry's counterparty, else the first matching staff rule, else
`other`. Nothing here is written when money is posted.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Category(models.TextChoices):
    GROCERIES = "groceries", "Groceries"
    RENT = "rent", "Rent"
    UTILITIES = "utilities", "Utilities"
    TRANSPORT = "transport", "Transport"
    EATING_OUT = "eating_out", "Eating out"
    SHOPPING = "shopping", "Shopping"
    ENTERTAINMENT = "entertainment", "Entertainment"
    HEALTH = "health", "Health"
    TRAVEL = "travel", "Travel"
    SALARY = "salary", "Salary"
    TRANSFERS = "transfers", "Transfers"
    CASH = "cash", "Cash"
    FEES = "fees", "Fees"
    OTHER = "other", "Other"


CATEGORY_CHOICES = Category.choices


class CategoryRule(models.Model):
    """A staff rule: entries whose `field` contains `pattern` (case-insensitive) get `category`.

    The highest `priority` wins (ties: the older rule). `direction` limits a rule to money out
    or money in (a "salary" rule should not catch a payment the customer makes to a payroll
    bureau). A change applies at once to every entry's category, past ones too, except where
    the customer chose a category themselves.
    """

    class Field(models.TextChoices):
        COUNTERPARTY_NAME = "counterparty_name", "Counterparty name"
        COUNTERPARTY_IBAN = "counterparty_iban", "Counterparty IBAN"
        DESCRIPTION = "description", "Description"
        KIND = "kind", "Transaction kind (deposit, withdrawal, transfer, fee, payment, ...)"

    class Direction(models.TextChoices):
        ANY = "any", "Money in and out"
        OUT = "out", "Money out"
        IN = "in", "Money in"

    field = models.CharField(max_length=20, choices=Field.choices, default=Field.DESCRIPTION)
    pattern = models.CharField(max_length=140, help_text="Matched as a case-insensitive substring.")
    direction = models.CharField(max_length=3, choices=Direction.choices, default=Direction.ANY)
    category = models.CharField(max_length=20, choices=CATEGORY_CHOICES)
    priority = models.IntegerField(default=100, help_text="Higher wins.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-priority", "id")
        constraints = [models.CheckConstraint(condition=~models.Q(pattern=""), name="category_rule_pattern_set")]

    def __str__(self) -> str:
        return f"{self.field} ~ {self.pattern!r} -> {self.category}"


class EntryCategory(models.Model):
    """The category a customer chose for one of their entries (PATCH on the history entry)."""

    entry = models.OneToOneField("transactions.Entry", primary_key=True, on_delete=models.PROTECT, related_name="+")
    # The entry's account's owner: insights read a customer's choices by this column.
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=20, choices=CATEGORY_CHOICES)
    counterparty_key = models.CharField(max_length=140, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "entry categories"
        indexes = [models.Index(fields=["customer"], name="entrycat_customer")]

    def __str__(self) -> str:
        return f"entry {self.entry_id}: {self.category}"


class CounterpartyCategory(models.Model):
    """What a customer's re-categorisation taught: entries from `counterparty_key` posted at or
    after `effective_from` take `category` (the customer's later choice for the same counterparty
    replaces the category; the span only grows back to the earliest entry they re-categorised)."""

    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    counterparty_key = models.CharField(max_length=140)
    category = models.CharField(max_length=20, choices=CATEGORY_CHOICES)
    effective_from = models.DateTimeField()
    learned_from = models.ForeignKey("transactions.Entry", on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "counterparty categories"
        constraints = [
            models.UniqueConstraint(fields=["customer", "counterparty_key"], name="counterparty_category_once")
        ]

    def __str__(self) -> str:
        return f"{self.counterparty_key}: {self.category}"


class InsightsPreference(models.Model):
    """A customer's opt-in to rule-based recommendations (off unless they turn it on)."""

    customer = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.PROTECT, related_name="+"
    )
    recommendations = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"insights preferences of {self.customer_id}"
