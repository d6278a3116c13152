"""TRUNCATE of the audit tables is refused by a trigger, even for the owner.

TRUNCATE fires no row triggers, so the append-only trigger does not see it. Raw SQL rather
than pgtrigger: pgtrigger's triggers honour a `pgtrigger.ignore` setting any session may set.
Only ALTER TABLE ... DISABLE TRIGGER (the owner) or a superuser's replica mode gets past it.
"""

from django.db import migrations

TABLES = ("bankcore_auditevent", "bankcore_auditchainhead")

FORWARD = """
CREATE OR REPLACE FUNCTION audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Concatenated, not a placeholder: Django passes migration SQL through the driver's formatting.
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'audit: TRUNCATE of ' || TG_TABLE_NAME || ' is refused: the audit log is append-only';
END
$$;
""" + "".join(
    f"CREATE TRIGGER audit_refuse_truncate BEFORE TRUNCATE ON {table}"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();\n"
    for table in TABLES
)

REVERSE = "".join(f"DROP TRIGGER IF EXISTS audit_refuse_truncate ON {table};\n" for table in TABLES) + (
    "DROP FUNCTION IF EXISTS audit_refuse_truncate();"
)


class Migration(migrations.Migration):
    dependencies = [("bankcore", "0007_audit_append_security_definer")]

    # A list: each string runs whole, not split into statements (the $$ bodies).
    operations = [migrations.RunSQL([FORWARD], [REVERSE])]
