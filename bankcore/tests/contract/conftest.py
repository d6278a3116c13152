"""The API as app teams consume it: a real gunicorn on the test database, the schema it serves,
and a Python client generated from that schema at test time (never committed).

One server and one generated client for this package, shared by the generated-client scenario
and the schemathesis run, and stopped when the package's tests are done (no idle connections to
the test database for the rest of the suite). The tests are transactional (`transactional_db`):
the server reads what a test committed, and everything is flushed afterwards.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import requests

from bankcore.tests.contract import CLIENT_PACKAGE

# Generous auth rates for the server: the scenario and schemathesis sign in far more often than a
# person would; the throttles themselves are proved in accounts/tests/test_throttling.py.
_RELAXED_THROTTLES = {
    "THROTTLE_AUTH_IP": "100000/min",
    "THROTTLE_AUTH_USER": "100000/min",
    "THROTTLE_USER": "1000000/min",
}
# The app-version policy a test sets applies to the server's next request, not after its 5 s cache.
_NO_APP_CONFIG_CACHE = {"APP_CONFIG_CACHE_SECONDS": "0"}


@pytest.fixture(scope="package")
def api_server(django_db_setup: None) -> Iterator[Any]:
    """bankcore under a real gunicorn on the test database (one worker: its clients send one request at a time)."""
    from bankcore.testing import GunicornServer, process_env

    with GunicornServer(env=process_env(**_RELAXED_THROTTLES, **_NO_APP_CONFIG_CACHE), workers=1) as server:
        yield server


@pytest.fixture(scope="package")
def served_schema(api_server: Any) -> dict[str, Any]:
    """The OpenAPI document exactly as the live server serves it at /api/schema/."""
    response = requests.get(f"{api_server.url}/api/schema/", headers={"Accept": "application/json"}, timeout=60)
    assert response.status_code == 200, response.text[:500]
    return response.json()


@pytest.fixture(scope="package")
def generated_client(served_schema: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """`openapi-python-client generate` on the served schema, imported as `bankcore_client`.

    No ruff post-hooks (formatting generated code costs time and is not what is tested). Any
    warning fails: the generator skips an operation or a model it cannot read, and an app team
    would then silently lack it.
    """
    workdir = tmp_path_factory.mktemp("generated-client")
    schema_path = workdir / "openapi.json"
    schema_path.write_text(json.dumps(served_schema))
    config_path = workdir / "config.yaml"
    config_path.write_text(f"post_hooks: []\npackage_name_override: {CLIENT_PACKAGE}\n")
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(schema_path),
            "--meta",
            "none",
            "--output-path",
            str(workdir / CLIENT_PACKAGE),
            "--config",
            str(config_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(workdir))
    try:
        yield importlib.import_module(CLIENT_PACKAGE)
    finally:
        sys.path.remove(str(workdir))
        for name in [m for m in sys.modules if m == CLIENT_PACKAGE or m.startswith(f"{CLIENT_PACKAGE}.")]:
            del sys.modules[name]
