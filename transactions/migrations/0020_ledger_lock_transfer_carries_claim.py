"""ledger_lock_transfer() may carry the request's Idempotency-Key claim (bankcore/idempotency.py,
"carried claim"): given the claim's arguments it calls idempotency_claim() (bankcore 0013) first
and locks nothing unless the claim succeeded, so a transfer request claims its key and locks its
rows in one round trip. The first column says what the claim gave: the key row's id, or NULL
(another request holds or used the key) in a single row of NULLs. Without claim arguments
(`p_key` NULL) it does what it did before and `claimed` is NULL.

A claim that succeeds while neither account exists still answers one row (its id, the rest NULL),
so the caller learns the claim's id. The accounts are locked and read in one statement now (the
limits are read first, under the customer's lock, which is what keeps them consistent).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION ledger_lock_transfer(
    p_user uuid, p_source uuid, p_destination_iban text, p_currency text, p_since timestamptz,
    p_key text, p_request_hash text, p_claim_token text, p_lease_until timestamptz,
    p_claimed_at timestamptz, p_expires_at timestamptz, p_lock bigint
) RETURNS TABLE (
    claimed bigint,
    id uuid, owner_id uuid, internal_code varchar, name varchar, kind varchar, currency varchar,
    status varchar, iban varchar, balance bigint, overdraft_limit bigint, held bigint, created_at timestamptz,
    limit_per_transfer bigint, limit_daily bigint, limit_step_up_threshold bigint, used_today bigint
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_claimed bigint;
    v_per_transfer bigint;
    v_daily bigint;
    v_step_up bigint;
    v_used bigint;
BEGIN
    IF p_key IS NOT NULL THEN
        v_claimed := idempotency_claim(p_user, p_key, p_request_hash, p_claim_token, p_lease_until,
                                       p_claimed_at, p_expires_at, p_lock);
        IF v_claimed IS NULL THEN
            -- Not claimed: lock nothing (a duplicate must not wait for the first request's locks).
            RETURN QUERY SELECT NULL::bigint, NULL::uuid, NULL::uuid, NULL::varchar, NULL::varchar,
                NULL::varchar, NULL::varchar, NULL::varchar, NULL::varchar, NULL::bigint, NULL::bigint,
                NULL::bigint, NULL::timestamptz, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint;
            RETURN;
        END IF;
    END IF;
    PERFORM 1 FROM accounts_user u WHERE u.id = p_user FOR NO KEY UPDATE;
    -- Under the customer's lock no other transfer of theirs can change the usage: read it now, in
    -- a new statement that sees everything committed by the lock's previous holder.
    SELECT l.per_transfer, l.daily, l.step_up_threshold,
           -- Whole minutes, the one the window starts in included: never under-counted.
           (SELECT coalesce(sum(u.amount), 0)::bigint FROM transactions_limitusage u
            WHERE u.user_id = p_user AND u.currency = p_currency
              AND u.minute >= date_trunc('minute', p_since))
    INTO v_per_transfer, v_daily, v_step_up, v_used
    FROM (SELECT 1) AS one
    LEFT JOIN transactions_customerlimit l ON l.user_id = p_user AND l.currency = p_currency;
    -- Both accounts, locked in id order; FOR UPDATE answers each row as its lock's previous
    -- holder left it.
    RETURN QUERY
    SELECT v_claimed, a.id, a.owner_id, a.internal_code, a.name, a.kind, a.currency, a.status, a.iban,
           a.balance, a.overdraft_limit, a.held, a.created_at, v_per_transfer, v_daily, v_step_up, v_used
    FROM accounts_bankaccount a
    WHERE a.id = p_source OR a.iban = p_destination_iban
    ORDER BY a.id
    FOR UPDATE OF a;
    IF NOT FOUND AND v_claimed IS NOT NULL THEN
        RETURN QUERY SELECT v_claimed, NULL::uuid, NULL::uuid, NULL::varchar, NULL::varchar,
            NULL::varchar, NULL::varchar, NULL::varchar, NULL::varchar, NULL::bigint, NULL::bigint,
            NULL::bigint, NULL::timestamptz, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint;
    END IF;
END
$$;
"""
DROP_OLD = "DROP FUNCTION IF EXISTS ledger_lock_transfer(uuid, uuid, text, text, timestamptz);"
DROP_NEW = (
    "DROP FUNCTION IF EXISTS ledger_lock_transfer(uuid, uuid, text, text, timestamptz,"
    " text, text, text, timestamptz, timestamptz, timestamptz, bigint);"
)


class Migration(migrations.Migration):
    dependencies = [
        ("transactions", "0019_counterparty_relations"),
        ("bankcore", "0013_idempotency_functions"),
    ]

    # Backwards restores the function of 0014 by hand if ever needed; its body is there.
    operations = [migrations.RunSQL([DROP_OLD, CREATE], [DROP_NEW])]
