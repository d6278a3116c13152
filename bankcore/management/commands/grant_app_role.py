"""Give the runtime login role exactly what the app needs on this database, and nothing more.

Run by the tables' owner after every `migrate` (new tables, replaced functions): it revokes
everything it granted before and grants afresh, so running it twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from bankcore.db.roles import FULL, READ_ONLY, quote_ident, restricted_tables, role_facts


class Command(BaseCommand):
    help = (
        "Grant an existing login role what the app needs on this database (run as the tables' owner after "
        "migrate): no ownership, TRUNCATE, TRIGGER or REFERENCES, no UPDATE/DELETE of journal, entries or audit rows."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="the login role the web app, workers and beat connect as")

    def handle(self, *args: Any, role: str, **options: Any) -> None:
        me = role_facts(connection)
        if me.owner is None:
            raise CommandError("The ledger tables do not exist yet: run `manage.py migrate` first.")
        if not (me.owner_member or me.superuser):
            raise CommandError(
                f"Run grant_app_role as the owner of the tables ({me.owner!r}), not as {me.current_user!r}."
            )
        try:
            target = role_facts(connection, role)
        except LookupError:
            raise CommandError(f"Role {role!r} does not exist: create it first (CREATE ROLE ... LOGIN).") from None
        if target.superuser:
            raise CommandError(f"Role {role!r} is a superuser: the app must not run as one.")
        if target.owner_member or target.owned:
            raise CommandError(
                f"Role {role!r} owns the tables or is a member of their owner ({me.owner!r}): "
                "use a separate login role for the app."
            )
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolcreaterole FROM pg_roles WHERE rolname = %s", [role])
            if cursor.fetchone()[0]:
                # CREATEROLE may grant itself membership of the owner role.
                raise CommandError(f"Role {role!r} has CREATEROLE: the app's role must not be able to manage roles.")

        with transaction.atomic(), connection.cursor() as cursor:
            granted = self._regrant(cursor, quote_ident(role))
        self.stdout.write(f"Granted to {role} (tables owned by {me.owner}):")
        for line in granted:
            self.stdout.write(f"  {line}")
        self.stdout.write(self.style.SUCCESS(f"{role} has what the app needs; re-run after every migrate."))

    def _regrant(self, cursor: Any, role: str) -> list[str]:
        """Revoke what the owner granted `role` before, then grant afresh; what was granted, for the operator."""
        cursor.execute("SELECT current_database()")
        database = quote_ident(cursor.fetchone()[0])
        cursor.execute(
            "SELECT c.relname, c.relkind FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
            " AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY c.relname"
        )
        relations = cursor.fetchall()
        # The app's own functions (ledger_post, audit_append, the trigger functions), not extensions'.
        cursor.execute(
            """
            SELECT p.oid::regprocedure::text, p.proname, p.prosecdef FROM pg_proc p
            WHERE p.pronamespace = 'public'::regnamespace
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                              AND d.objid = p.oid AND d.deptype = 'e')
            ORDER BY p.proname
            """
        )
        functions = cursor.fetchall()

        # Revoke first: a table that became restricted, or a grant made by hand, does not linger.
        cursor.execute(f"REVOKE ALL ON DATABASE {database} FROM {role}")
        cursor.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
        cursor.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        cursor.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
        cursor.execute(f"REVOKE ALL ON ALL ROUTINES IN SCHEMA public FROM {role}")

        cursor.execute(f"GRANT CONNECT ON DATABASE {database} TO {role}")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        restricted = restricted_tables()
        by_privileges: dict[tuple[str, ...], list[str]] = {}
        sequences: list[str] = []
        for name, kind in relations:
            if kind == "S":
                cursor.execute(f"GRANT USAGE, SELECT ON SEQUENCE {quote_ident(name)} TO {role}")
                sequences.append(name)
                continue
            privileges = READ_ONLY if kind in ("v", "m") else restricted.get(name, FULL)
            cursor.execute(f"GRANT {', '.join(privileges)} ON TABLE {quote_ident(name)} TO {role}")
            by_privileges.setdefault(privileges, []).append(name)
        definers = []
        for signature, name, security_definer in functions:
            if security_definer:
                # Runs with the owner's rights: only the app's role may call it.
                cursor.execute(f"REVOKE EXECUTE ON ROUTINE {signature} FROM PUBLIC")
                definers.append(name)
            cursor.execute(f"GRANT EXECUTE ON ROUTINE {signature} TO {role}")

        lines = ["CONNECT on the database", "USAGE on schema public"]
        for privileges, names in sorted(by_privileges.items(), key=lambda item: -len(item[0])):
            shown = f"{len(names)} tables" if privileges == FULL else ", ".join(names)
            lines.append(f"{', '.join(privileges)} on {shown}")
        lines.append(f"USAGE, SELECT on {len(sequences)} sequences")
        lines.append(f"EXECUTE on {len(functions)} functions")
        if definers:
            lines.append(f"(only this role and the owner may EXECUTE {', '.join(definers)}: they run as the owner)")
        return lines
