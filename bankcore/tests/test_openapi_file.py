"""docs/openapi.yaml is what the server serves at /api/schema/, and a valid OpenAPI document.

The file is committed so that a change to the contract shows in review as a diff of the schema
app teams generate their clients from. `make openapi` regenerates it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.conf import settings
from openapi_spec_validator import validate

COMMITTED = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"
REGENERATE = "run `make openapi` and commit docs/openapi.yaml"


def _differences(committed: object, served: object, where: str = "") -> list[str]:
    """The first few paths where two documents differ, for a readable failure."""
    if isinstance(committed, dict) and isinstance(served, dict):
        found: list[str] = []
        for key in sorted(set(committed) | set(served), key=str):
            if key not in served:
                found.append(f"{where}/{key}: only in docs/openapi.yaml")
            elif key not in committed:
                found.append(f"{where}/{key}: only in what the server serves")
            else:
                found += _differences(committed[key], served[key], f"{where}/{key}")
        return found
    return [] if committed == served else [f"{where}: differs"]


@pytest.mark.django_db
def test_committed_schema_is_what_the_server_serves(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    served = yaml.safe_load(response.content)
    assert COMMITTED.exists(), f"docs/openapi.yaml is missing: {REGENERATE}"
    committed = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    differences = _differences(committed, served)
    assert not differences, f"The API schema changed; {REGENERATE}. First differences:\n" + "\n".join(differences[:20])


def test_committed_schema_is_valid_openapi():
    document = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    validate(document)
    assert document["openapi"].startswith("3.")
