"""Idempotency keys now belong to `bankcore` (its 0009 renamed the table and took the model).

State only: the rows stay where they are.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("transactions", "0011_ledger_truncate_guard"),
        ("bankcore", "0009_idempotencykey_from_transactions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="IdempotencyKey")],
        ),
    ]
