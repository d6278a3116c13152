"""Helpers for migrations."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def postgresql_only(forward_sql: str, reverse_sql: str) -> migrations.RunPython:
    """A migration step that runs SQL on PostgreSQL only (functions, BRIN indexes) and does
    nothing on SQLite, which the embedded development setup uses."""

    def run(sql: str) -> Any:
        def step(apps: Any, schema_editor: Any) -> None:
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(sql)

        return step

    return migrations.RunPython(run(forward_sql), run(reverse_sql))
