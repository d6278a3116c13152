"""ledger_lock_customer(): the first step of every customer transfer, in one round trip.

It locks the customer's row (FOR NO KEY UPDATE: the lock that serialises one customer's
transfers, so the rolling 24-hour limit cannot be raced past) and THEN reads the limits
and what the last 24 hours used. The read must come after the lock in a new statement -
a new snapshot under READ COMMITTED - so it sees every transfer committed by whoever held
the lock before; a single SQL statement would read with the snapshot it started with.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION ledger_lock_customer(
    p_user uuid, p_currency text, p_kinds text[], p_since timestamptz
) RETURNS TABLE (per_transfer bigint, daily bigint, step_up_threshold bigint, used bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM accounts_user WHERE id = p_user FOR NO KEY UPDATE;
    RETURN QUERY
    SELECT l.per_transfer, l.daily, l.step_up_threshold,
           (SELECT coalesce(sum(t.amount), 0)::bigint FROM transactions_transaction t
            WHERE t.initiated_by_id = p_user AND t.kind = ANY (p_kinds)
              AND t.currency = p_currency AND t.created_at > p_since)
    FROM (SELECT 1) AS one
    LEFT JOIN transactions_customerlimit l ON l.user_id = p_user AND l.currency = p_currency;
END
$$;
"""

DROP = "DROP FUNCTION IF EXISTS ledger_lock_customer(uuid, text, text[], timestamptz);"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("transactions", "0003_ledger_notices")]

    operations = [migrations.RunPython(create, drop)]
