"""One engine everywhere: PostgreSQL in production, in tests and under `make run` (the embedded
server of bankcore/embedded_db.py); no code path depends on which database it runs on."""

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bankcore.embedded_db import APP_ROLE, OWNER, EmbeddedPostgres, run

BASE_DIR = Path(__file__).resolve().parents[2]
PROJECT_PARTS = ("bankcore", "accounts", "transactions", "integrations", "notifications", "bench")
# The engine the development setup used to run on, spelled apart so this file does not match itself.
OLD_ENGINE = "sql" + "ite"


def _source_files():
    for part in PROJECT_PARTS:
        yield from (BASE_DIR / part).rglob("*.py")
    yield from BASE_DIR.glob("*.py")


def _engine_branches(path):
    """Where `path` compares a database vendor, asks about backend features, names another
    engine or the old migration helper that ran SQL on PostgreSQL only: (line, what) pairs.
    Read, not imported."""
    text = path.read_text()
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if OLD_ENGINE in line.lower():
            found.append((number, f"names {OLD_ENGINE}"))
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                name = side.attr if isinstance(side, ast.Attribute) else getattr(side, "id", None)
                if name == "vendor":
                    found.append((node.lineno, "compares the database vendor"))
        elif isinstance(node, ast.Attribute) and node.attr == "features":
            found.append((node.lineno, "asks the backend's features"))
        elif isinstance(node, (ast.Name, ast.Attribute)) and "postgresql_only" in ast.unparse(node):
            found.append((node.lineno, "uses postgresql_only"))
    return found


def test_no_code_path_depends_on_the_database_engine():
    branches = [
        f"{path.relative_to(BASE_DIR)}:{line}: {what}"
        for path in _source_files()
        for line, what in _engine_branches(path)
    ]
    assert branches == []


def _settings_of_a_new_process(**env_overrides):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bankcore.settings", "BANKCORE_ENV": "development", **env_overrides}
    for name, value in env_overrides.items():
        if value is None:
            del env[name]
    code = "import json; from django.conf import settings; print(json.dumps(settings.DATABASES['default']))"
    return subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True)


def test_without_database_url_development_uses_the_embedded_server_as_the_owner():
    result = _settings_of_a_new_process(DATABASE_URL=None)
    database = json.loads(result.stdout)
    assert database["USER"] == OWNER
    assert database["NAME"] == "bankcore"
    assert database["OPTIONS"]["host"] == str(BASE_DIR / "var" / "postgres")


def test_a_database_url_of_another_engine_is_refused():
    result = _settings_of_a_new_process(DATABASE_URL="mysql://bank@127.0.0.1/bank")
    assert result.returncode != 0
    assert "bankcore runs on PostgreSQL only" in result.stderr


# What `make run` does on the embedded server, minus the long-running processes: the owner
# migrates and equips the runtime role; as that role the demo bank is seeded and the ledger
# verified (triggers, ledger_post(), audit_append() all took part).
MAKE_RUN_STEPS = """
set -e
python manage.py migrate --noinput -v 0
python manage.py grant_app_role "$DATABASE_APP_ROLE" > /dev/null
export DATABASE_URL="$DATABASE_APP_URL"
python manage.py seed_demo > /dev/null
python manage.py verify_ledger
python -c 'import django; django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT current_user, version()")
    print(*cursor.fetchone())'
"""


def test_embedded_postgres_starts_serves_the_migrated_bank_to_the_runtime_role_and_stops(monkeypatch, capfd):
    # Not pytest's tmp_path: as root the server runs as another user, who must be able to enter
    # every directory above its files (pytest's are private to root).
    parent = Path(tempfile.mkdtemp(prefix="bankcore-embedded-test-"))
    parent.chmod(0o711)
    server = EmbeddedPostgres(parent / "postgres")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "bankcore.settings")
    monkeypatch.setenv("BANKCORE_ENV", "development")
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")  # the demo's alerts go nowhere
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "cache+memory://")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    try:
        assert not server.is_running()
        exit_status = run(["sh", "-c", MAKE_RUN_STEPS], server)
        out, err = capfd.readouterr()
        assert exit_status == 0, out + err
        assert f"{APP_ROLE} PostgreSQL 18" in out
        assert "ledger OK" in out
        # Started by run(), so stopped by it: nothing listens any more.
        assert not server.is_running()
        assert not (server.socket_dir / ".s.PGSQL.5432").exists()

        # The data outlives the server; a second start finds it and does not start twice.
        assert server.start(quiet=True) is True
        assert server.start(quiet=True) is False
        entries = server.psql("SELECT count(*) FROM transactions_entry", role=OWNER, database="bankcore")
        assert int(entries) > 0
        with pytest.raises(Exception, match="append-only"):
            server.psql("TRUNCATE transactions_entry CASCADE", role=OWNER, database="bankcore")
        assert server.stop() is True
        assert not server.is_running()
    finally:
        server.stop()
        shutil.rmtree(parent, ignore_errors=True)
