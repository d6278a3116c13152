"""The two database roles: the owner, who runs migrations, and the runtime role the app connects as.

The owner owns every table; it can ALTER, DISABLE TRIGGER and TRUNCATE, so a process
connected as the owner (or a superuser) can rewrite the ledger and the audit log behind
the triggers' back. The web app, the Celery workers and beat therefore connect as a
runtime login role that `manage.py grant_app_role` gives only what the app needs
(`runtime_grants`), and in production they refuse to run as anything more
(`arm_runtime_role_check`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

logger = logging.getLogger(__name__)

FULL = ("SELECT", "INSERT", "UPDATE", "DELETE")
APPEND_ONLY = ("SELECT", "INSERT")
READ_ONLY = ("SELECT",)

# The table whose owner is "the owner": every bankcore table has the same one (migrate made them).
LEDGER_TABLE_MODEL = "transactions.Entry"


def _table(label: str) -> str:
    return apps.get_model(label)._meta.db_table


def restricted_tables() -> dict[str, tuple[str, ...]]:
    """Tables the runtime role gets less than full DML on, with what it gets.

    - The journal, its entries and payment timelines are only ever inserted (a reversal is a new
      transaction).
    - Audit events and chain heads are written only by `audit_append()`, which runs with the
      owner's rights (SECURITY DEFINER), so the app can neither forge, edit, delete nor rewind them.
    - Which migrations ran is the owner's business.
    """
    return {
        _table("transactions.Transaction"): APPEND_ONLY,
        _table("transactions.Entry"): APPEND_ONLY,
        _table("transactions.PaymentEvent"): APPEND_ONLY,
        _table("bankcore.AuditEvent"): READ_ONLY,
        _table("bankcore.AuditChainHead"): READ_ONLY,
        "django_migrations": READ_ONLY,
    }


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted (Django's quote_name does not escape embedded quotes)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass
class RoleFacts:
    """What the database says about the connected role and the tables' owner."""

    current_user: str
    superuser: bool
    owner: str | None  # owner of the ledger tables; None before `migrate`
    owner_member: bool  # current_user is the owner or a member of the owner role
    owned: list[str] = field(default_factory=list)


def role_facts(connection: BaseDatabaseWrapper, role: str | None = None) -> RoleFacts:
    """Facts about `role` (default: the connected role) on `connection`'s database."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT r.rolname, r.rolsuper, o.rolname,
                   coalesce(pg_has_role(r.oid, o.oid, 'MEMBER'), false),
                   coalesce((SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
                             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
                               AND pg_has_role(r.oid, c.relowner, 'MEMBER')), '{}')
            FROM pg_roles r
            LEFT JOIN pg_class t ON t.oid = to_regclass(%s)
            LEFT JOIN pg_roles o ON o.oid = t.relowner
            WHERE r.rolname = coalesce(%s, current_user)
            """,
            [f"public.{_table(LEDGER_TABLE_MODEL)}", role],
        )
        row = cursor.fetchone()
    if row is None:
        raise LookupError(role)
    return RoleFacts(current_user=row[0], superuser=row[1], owner=row[2], owner_member=row[3], owned=list(row[4]))


def privileged_role_problem(connection: BaseDatabaseWrapper) -> str | None:
    """Why the connected role is too powerful to run the app as, or None if it is not."""
    facts = role_facts(connection)
    if facts.superuser:
        return f"connected to the database as {facts.current_user!r}, a superuser"
    if facts.owner_member:
        return f"connected to the database as {facts.current_user!r}, the owner of the ledger tables"
    if facts.owned:
        return f"connected to the database as {facts.current_user!r}, which owns tables ({', '.join(facts.owned[:3])})"
    return None


def refuse_privileged_role(connection: BaseDatabaseWrapper) -> None:
    """Raise ImproperlyConfigured if `connection` is logged in as a superuser or the tables' owner."""
    problem = privileged_role_problem(connection)
    if problem is None:
        return
    message = (
        f"Refusing to run: {problem}. In production the app connects as the runtime role that "
        "`manage.py grant_app_role ROLE` set up (see README, 'Running it for real'); the owner only runs migrations."
    )
    logger.critical(message)
    raise ImproperlyConfigured(message)


_checked: set[str] = set()


def _check_new_connection(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if connection.alias in _checked:
        return
    try:
        refuse_privileged_role(connection)
    except ImproperlyConfigured:
        connection.close()  # else the next query would reuse the refused connection unchecked
        raise
    _checked.add(connection.alias)


def arm_runtime_role_check(*, check_now: bool = True) -> None:
    """In production, refuse to run on a connection logged in as a superuser or the tables' owner.

    Called where the web app (bankcore.wsgi) and the Celery worker and beat start, never by
    management commands: the owner runs `migrate` and `grant_app_role`. Every new connection is
    checked until one passes (the role cannot change without a restart). With `check_now` it
    connects at once, so a misconfigured process fails at start instead of at its first request;
    a database that does not answer yet is left to that first connection (and /readyz).
    """
    from django.conf import settings

    if not getattr(settings, "PRODUCTION", False):
        return
    connection_created.connect(_check_new_connection, dispatch_uid="bankcore.db.roles.runtime_role_check")
    if not check_now:
        return
    from django.db import OperationalError

    try:
        default_connection.ensure_connection()
    except OperationalError:
        logger.warning("database not reachable at start; its role is checked on the first connection")
    finally:
        # Do not hand a connection opened in the master process to forked workers.
        default_connection.close()


# pgtrigger's triggers skip themselves for any trigger named in the `pgtrigger.ignore` setting,
# which every session may SET: the runtime role could insert unbalanced entries past the
# deferred balance trigger. This version honours that setting only for the owner (or a
# superuser), and costs nothing when it is unset. pgtrigger recreates the function whenever a
# migration installs a trigger, so it is put back after every `migrate` (post_migrate).
HARDENED_PGTRIGGER_IGNORE = """
CREATE OR REPLACE FUNCTION public._pgtrigger_should_ignore(trigger_name NAME) RETURNS BOOLEAN AS $$
    DECLARE
        _pgtrigger_ignore TEXT[];
    BEGIN
        BEGIN
            SELECT INTO _pgtrigger_ignore CURRENT_SETTING('pgtrigger.ignore');
            EXCEPTION WHEN OTHERS THEN
        END;
        IF _pgtrigger_ignore IS NULL OR NOT trigger_name = ANY(_pgtrigger_ignore) THEN
            RETURN FALSE;
        END IF;
        -- Only the owner of this function (the tables' owner) may switch triggers off this way.
        RETURN pg_has_role(current_user, (SELECT p.proowner FROM pg_catalog.pg_proc p
                                          WHERE p.oid = 'public._pgtrigger_should_ignore(name)'::regprocedure),
                           'MEMBER');
    END;
$$ LANGUAGE plpgsql;
"""


def harden_pgtrigger_ignore(using: str = "default", **kwargs: Any) -> None:
    """Put the owner-only `_pgtrigger_should_ignore` back (a post_migrate receiver)."""
    from django.db import connections

    with connections[using].cursor() as cursor:
        cursor.execute("SELECT to_regprocedure('public._pgtrigger_should_ignore(name)') IS NOT NULL")
        if cursor.fetchone()[0]:
            cursor.execute(HARDENED_PGTRIGGER_IGNORE)
