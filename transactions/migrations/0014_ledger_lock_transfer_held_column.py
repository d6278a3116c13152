"""ledger_lock_transfer() reads each account's `held` from its row (accounts 0006) instead of
summing the holds table: the same figure, kept by the ledger under the row lock, for free.
The old signature's hold status and clock arguments go with it."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION ledger_lock_transfer(
    p_user uuid, p_source uuid, p_destination_iban text, p_currency text, p_since timestamptz
) RETURNS TABLE (
    id uuid, owner_id uuid, internal_code varchar, name varchar, kind varchar, currency varchar,
    status varchar, iban varchar, balance bigint, overdraft_limit bigint, held bigint, created_at timestamptz,
    limit_per_transfer bigint, limit_daily bigint, limit_step_up_threshold bigint, used_today bigint
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
           a.overdraft_limit, a.held, a.created_at, v_per_transfer, v_daily, v_step_up, v_used
    FROM accounts_bankaccount a
    WHERE a.id = p_source OR a.iban = p_destination_iban
    ORDER BY a.id;
END
$$;
"""
DROP_OLD = "DROP FUNCTION IF EXISTS ledger_lock_transfer(uuid, uuid, text, text, timestamptz, text, timestamptz);"
DROP_NEW = "DROP FUNCTION IF EXISTS ledger_lock_transfer(uuid, uuid, text, text, timestamptz);"


class Migration(migrations.Migration):
    dependencies = [("transactions", "0013_payments_and_settlement"), ("accounts", "0006_bankaccount_held")]

    # Backwards restores the old function from 0005 by hand if ever needed; its body is there.
    operations = [migrations.RunSQL([DROP_OLD, CREATE], [DROP_NEW])]
