"""ledger_lock_transfer(): the locks and reads that start every customer transfer, in one call.

In the global lock order (transactions/lock_objects.py) it locks
  1. the customer's row (FOR NO KEY UPDATE: serialises one customer's transfers, so the
     rolling 24-hour limit cannot be raced past; rows referencing the customer can still
     be inserted), then
  2. the source account (by id) and the destination (by IBAN), in primary-key order,
and only THEN reads the customer's limits, what the last 24 hours used and each
account's active holds - in new statements, so new snapshots under READ COMMITTED:
they see everything committed by whoever held those locks before. (One SQL statement
would read with the snapshot it started with, before waiting for the locks.)
Plans are cached per database session - so the lookups take single values, never arrays,
whose generic plan would scan the whole accounts table. Returns the accounts (the
BankAccount columns) with `held` and the customer's limit figures on every row.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION ledger_lock_transfer(
    p_user uuid, p_source uuid, p_destination_iban text,
    p_currency text, p_since timestamptz, p_hold_status text, p_now timestamptz
) RETURNS TABLE (
    id uuid, owner_id uuid, internal_code varchar, name varchar, kind varchar, currency varchar,
    status varchar, iban varchar, balance bigint, overdraft_limit bigint, created_at timestamptz,
    held bigint, limit_per_transfer bigint, limit_daily bigint, limit_step_up_threshold bigint, used_today bigint
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_per_transfer bigint;
    v_daily bigint;
    v_step_up bigint;
    v_used bigint;
BEGIN
    PERFORM 1 FROM accounts_user u WHERE u.id = p_user FOR NO KEY UPDATE;
    PERFORM 1 FROM accounts_bankaccount a
    WHERE a.id = p_source OR a.iban = p_destination_iban ORDER BY a.id FOR UPDATE;

    SELECT l.per_transfer, l.daily, l.step_up_threshold,
           -- Whole minutes, the one the window starts in included: never under-counted.
           (SELECT coalesce(sum(u.amount), 0)::bigint FROM transactions_limitusage u
            WHERE u.user_id = p_user AND u.currency = p_currency
              AND u.minute >= date_trunc('minute', p_since))
    INTO v_per_transfer, v_daily, v_step_up, v_used
    FROM (SELECT 1) AS one
    LEFT JOIN transactions_customerlimit l ON l.user_id = p_user AND l.currency = p_currency;

    RETURN QUERY
    SELECT a.id, a.owner_id, a.internal_code, a.name, a.kind, a.currency, a.status, a.iban, a.balance,
           a.overdraft_limit, a.created_at,
           coalesce((SELECT sum(h.amount) FROM transactions_hold h
                     WHERE h.account_id = a.id AND h.status = p_hold_status AND h.expires_at > p_now), 0)::bigint,
           v_per_transfer, v_daily, v_step_up, v_used
    FROM accounts_bankaccount a
    WHERE a.id = p_source OR a.iban = p_destination_iban
    ORDER BY a.id;
END
$$;
"""

DROP = "DROP FUNCTION IF EXISTS ledger_lock_transfer(uuid, uuid, text, text, timestamptz, text, timestamptz);"


class Migration(migrations.Migration):
    dependencies = [("transactions", "0004_limit_usage")]

    # A list: each string runs whole, not split into statements (the $$ bodies).
    operations = [migrations.RunSQL([CREATE], [DROP])]
