"""ledger_post(): write one prepared posting - balances, journal row, entries, the
alerts outbox row and the customer's limit usage - in one call, with plans cached per
database session.

Everything is validated in Python first (transactions.services.ledger.posting_prepare,
under the accounts' row locks); this only writes. The database still checks the result:
the deferred balance trigger at COMMIT, the append-only triggers, the balance >=
-overdraft check constraint, the foreign keys.
Adding a column to Transaction or Entry means replacing this function in that migration.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION ledger_post(
    p_id uuid, p_kind text, p_status text, p_reference text, p_description text, p_initiated_by uuid,
    p_source uuid, p_destination uuid, p_amount bigint, p_currency text, p_reverses uuid,
    p_created_at timestamptz, p_posted_at timestamptz,
    p_accounts uuid[], p_balances bigint[],
    p_entry_accounts uuid[], p_entry_amounts bigint[], p_entry_balances bigint[],
    p_notices jsonb, p_limit_usage boolean
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- One row per statement, looped: each statement keeps one cached generic plan (an index
    -- lookup). Set-based forms over unnest() were either re-planned on every call or got a
    -- generic plan that scans the whole accounts table.
    FOR i IN 1 .. cardinality(p_accounts) LOOP
        UPDATE accounts_bankaccount SET balance = p_balances[i] WHERE id = p_accounts[i];
    END LOOP;

    INSERT INTO transactions_transaction (id, kind, status, reference, description, initiated_by_id,
        source_account_id, destination_account_id, amount, currency, reverses_id, created_at, posted_at)
    VALUES (p_id, p_kind, p_status, p_reference, p_description, p_initiated_by,
        p_source, p_destination, p_amount, p_currency, p_reverses, p_created_at, p_posted_at);

    -- An entry is never dated before its account's latest one (app-server clocks may
    -- disagree): an account's entries stay in posting order by (created_at, id), which
    -- history pages, statements and opening balances rely on.
    FOR i IN 1 .. cardinality(p_entry_accounts) LOOP
        INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)
        VALUES (p_id, p_entry_accounts[i], p_entry_amounts[i], p_currency, p_entry_balances[i],
                GREATEST(p_created_at, (SELECT max(e.created_at) FROM transactions_entry e
                                        WHERE e.account_id = p_entry_accounts[i])));
    END LOOP;

    IF p_notices IS NOT NULL THEN
        INSERT INTO transactions_ledgernotice (transaction_id, notices, created_at)
        VALUES (p_id, p_notices, p_created_at);
    END IF;

    IF p_limit_usage THEN
        INSERT INTO transactions_limitusage AS u (user_id, currency, minute, amount)
        VALUES (p_initiated_by, p_currency, date_trunc('minute', p_created_at), p_amount)
        ON CONFLICT (user_id, currency, minute) DO UPDATE SET amount = u.amount + EXCLUDED.amount;
    END IF;
END
$$;
"""

DROP = (
    "DROP FUNCTION IF EXISTS ledger_post(uuid, text, text, text, text, uuid, uuid, uuid, bigint, text, uuid,"
    " timestamptz, timestamptz, uuid[], bigint[], uuid[], bigint[], bigint[], jsonb, boolean);"
)


class Migration(migrations.Migration):
    dependencies = [("transactions", "0005_ledger_lock_transfer")]

    # A list: each string runs whole, not split into statements (the $$ bodies).
    operations = [migrations.RunSQL([CREATE], [DROP])]
