"""audit_append() runs with the owner's rights, on a fixed search_path.

The runtime role (manage.py grant_app_role) may only read the audit tables: it can
neither insert a forged event nor move a chain head. audit_append() is the one way in,
so it is SECURITY DEFINER; its search_path is pinned (pg_temp last) so a caller cannot
shadow the tables or functions it uses, and only roles granted EXECUTE may call it.
"""

from django.db import migrations

SIGNATURE = (
    "audit_append(integer, bytea, timestamptz, uuid, text, text, text, text, inet, text, text, jsonb)"
)

FORWARD = f"""
ALTER FUNCTION {SIGNATURE} SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE EXECUTE ON FUNCTION {SIGNATURE} FROM PUBLIC;
"""

REVERSE = f"""
ALTER FUNCTION {SIGNATURE} SECURITY INVOKER RESET search_path;
GRANT EXECUTE ON FUNCTION {SIGNATURE} TO PUBLIC;
"""


class Migration(migrations.Migration):
    dependencies = [("bankcore", "0006_audit_target_index")]

    # A list: each string runs whole, not split into statements (the $$ bodies).
    operations = [migrations.RunSQL([FORWARD], [REVERSE])]
