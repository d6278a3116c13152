"""TRUNCATE of the ledger (journal, entries, holds) is refused by a trigger, even for the owner.

TRUNCATE fires no row triggers, so the append-only triggers do not see it. Raw SQL rather
than pgtrigger: pgtrigger's triggers honour a `pgtrigger.ignore` setting any session may set.
Only ALTER TABLE ... DISABLE TRIGGER (the owner) or a superuser's replica mode gets past it.
"""

from django.db import migrations

TABLES = ("transactions_transaction", "transactions_entry", "transactions_hold")

FORWARD = """
CREATE OR REPLACE FUNCTION ledger_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Concatenated, not a placeholder: Django passes migration SQL through the driver's formatting.
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'ledger: TRUNCATE of ' || TG_TABLE_NAME || ' is refused: the ledger is append-only';
END
$$;
""" + "".join(
    f"CREATE TRIGGER ledger_refuse_truncate BEFORE TRUNCATE ON {table}"
    " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_truncate();\n"
    for table in TABLES
)

REVERSE = "".join(f"DROP TRIGGER IF EXISTS ledger_refuse_truncate ON {table};\n" for table in TABLES) + (
    "DROP FUNCTION IF EXISTS ledger_refuse_truncate();"
)


class Migration(migrations.Migration):
    dependencies = [("transactions", "0010_staff_permissions_reversal_requests")]

    # A list: each string runs whole, not split into statements (the $$ bodies).
    operations = [migrations.RunSQL([FORWARD], [REVERSE])]
