"""A real streaming replica of the test server, for the read-replica tests.

`pg_basebackup -R` of the PostgreSQL server the suite runs on (DATABASE_URL's host and port, as
its owner) into a temporary directory, started with `pg_ctl` on a free loopback port as a hot
standby that streams from the primary. Needs the server's binaries (the server's major version,
under /usr/lib/postgresql/<major>/bin or PG_BINDIR) and a pg_hba.conf line allowing replication
from loopback, e.g. `host replication all 127.0.0.1/32 trust`. As root, the binaries run as
the `postgres` OS user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2

from bankcore.testing import free_port

# Settings a hot standby needs at least as high as its primary's.
_AT_LEAST_PRIMARY = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


class ReplicaUnavailable(RuntimeError):
    """The replica could not be made here (binaries missing, replication not allowed...)."""


class StreamingReplica:
    def __init__(self, *, host: str, port: int, user: str, dbname: str) -> None:
        self.primary = {"host": host, "port": port, "user": user, "dbname": dbname}
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bankcore-replica-"))
        self.data = self.dir / "data"
        self.log = self.dir / "replica.log"
        self.started = False

    # --- running the server's binaries ---------------------------------------------------
    def _primary_facts(self) -> dict[str, str]:
        with psycopg2.connect(**self.primary) as conn, conn.cursor() as cursor:
            facts = {}
            for name in ("server_version_num", *_AT_LEAST_PRIMARY):
                cursor.execute(f"SHOW {name}")
                facts[name] = cursor.fetchone()[0]
        conn.close()
        return facts

    def _bindir(self, version_num: str) -> Path:
        bindir = Path(os.environ.get("PG_BINDIR") or f"/usr/lib/postgresql/{int(version_num) // 10000}/bin")
        if not (bindir / "pg_basebackup").exists() or not (bindir / "pg_ctl").exists():
            raise ReplicaUnavailable(f"PostgreSQL binaries not found in {bindir} (set PG_BINDIR)")
        return bindir

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", "postgres", "--", *argv]

    def _run(self, argv: list[str], timeout: float = 300) -> None:
        result = subprocess.run(
            self._as_server_user(argv), capture_output=True, text=True, timeout=timeout, cwd=self.dir
        )
        if result.returncode != 0:
            raise ReplicaUnavailable(f"{Path(argv[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}")

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 120) -> StreamingReplica:
        facts = self._primary_facts()
        bindir = self._bindir(facts["server_version_num"])
        if os.geteuid() == 0:
            server_user = pwd.getpwnam("postgres")
            os.chown(self.dir, server_user.pw_uid, server_user.pw_gid)
        self.dir.chmod(0o700)
        host, port, user = self.primary["host"], self.primary["port"], self.primary["user"]
        try:
            self._run(
                [
                    *(str(bindir / "pg_basebackup"), "-h", host, "-p", str(port), "-U", user, "-D", str(self.data)),
                    *("-X", "stream", "-R", "-c", "fast", "--no-password"),
                ]
            )
        except ReplicaUnavailable as exc:
            raise ReplicaUnavailable(
                f"{exc}. The primary must allow replication from this host, e.g. in pg_hba.conf: "
                f"`host replication all {host}/32 trust`, then SELECT pg_reload_conf()."
            ) from exc
        # A Debian cluster keeps its configuration outside the data directory: write our own.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.dir}'",
            "hot_standby": "on",
            "hot_standby_feedback": "on",
            "wal_receiver_status_interval": "1",
            "shared_buffers": "32MB",
            "fsync": "off",
            **{name: facts[name] for name in _AT_LEAST_PRIMARY},
        }
        (self.data / "postgresql.conf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        if os.geteuid() == 0:
            for name in ("postgresql.conf", "pg_hba.conf"):
                shutil.chown(self.data / name, user="postgres", group="postgres")
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"])
        self.started = True
        self.bindir = bindir
        self._wait_streaming(timeout)
        return self

    def _wait_streaming(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.query("SELECT pg_is_in_recovery() AND pg_last_wal_receive_lsn() IS NOT NULL")[0]:
                    return
            except psycopg2.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise ReplicaUnavailable(f"the replica did not start streaming; see {self.log}")
            time.sleep(0.2)

    def query(self, sql: str) -> tuple[Any, ...]:
        """One row of `sql` on the replica, as the primary's owner (a superuser in tests)."""
        conn = psycopg2.connect(**{**self.primary, "host": "127.0.0.1", "port": self.port}, connect_timeout=3)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchone()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                self._as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
            )
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)
