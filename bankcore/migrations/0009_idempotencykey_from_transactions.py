"""Idempotency keys move from `transactions` to `bankcore`, which owns the mechanism.

The table is renamed in place (rows, indexes and grants stay with it); Django's state
gains the model here and loses it in transactions' 0012_idempotencykey_to_bankcore.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bankcore", "0008_audit_truncate_guard"),
        ("transactions", "0011_ledger_truncate_guard"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE transactions_idempotencykey RENAME TO bankcore_idempotencykey",
                    "ALTER TABLE bankcore_idempotencykey RENAME TO transactions_idempotencykey",
                ),
            ],
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyKey",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("key", models.CharField(max_length=255)),
                        ("request_hash", models.CharField(max_length=64)),
                        (
                            "state",
                            models.CharField(
                                choices=[("in_progress", "In progress"), ("completed", "Completed")],
                                default="in_progress",
                                max_length=16,
                            ),
                        ),
                        ("claim_token", models.CharField(blank=True, max_length=32)),
                        (
                            "lease_until",
                            models.DateTimeField(help_text="An in-progress claim older than this may be taken over."),
                        ),
                        ("response_status", models.PositiveSmallIntegerField(blank=True, null=True)),
                        ("response_body", models.JSONField(blank=True, null=True)),
                        ("created_at", models.DateTimeField()),
                        ("expires_at", models.DateTimeField(db_index=True)),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "constraints": [
                            models.UniqueConstraint(fields=("user", "key"), name="idempotency_key_unique_per_user")
                        ],
                    },
                ),
            ],
        ),
    ]
