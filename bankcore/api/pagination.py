"""Keyset ("cursor") pagination: newest first, no OFFSET, no COUNT(*).

A page filters on the last row's ordering values, so page 50,000 costs what page 1
costs as long as an index covers the ordering (e.g. (account_id, id)). The cursor is
an opaque base64 token of those values.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from django.db.models import Q, QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps([str(value) if value is not None else None for value in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValidationError({"cursor": ["Invalid cursor."]}) from exc
    if not isinstance(values, list) or len(values) != size:
        raise ValidationError({"cursor": ["Invalid cursor."]})
    return values


def parse_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError as exc:
        raise ValidationError({"limit": [f"Must be an integer between 1 and {MAX_LIMIT}."]}) from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError({"limit": [f"Must be an integer between 1 and {MAX_LIMIT}."]})
    return limit


def keyset_filter(ordering: Sequence[str], values: Sequence[Any]) -> Q:
    """Rows strictly after `values` in `ordering` (lexicographic over the fields)."""
    condition = Q(pk__in=[])
    equal_prefix = Q()
    for field_spec, value in zip(ordering, values, strict=True):
        descending = field_spec.startswith("-")
        field = field_spec.lstrip("-")
        lookup = "lt" if descending else "gt"
        condition |= equal_prefix & Q(**{f"{field}__{lookup}": value})
        equal_prefix &= Q(**{field: value})
    return condition


class KeysetPagination(BasePagination):
    """`{"results": [...], "next": cursor|null}`. Views may set `keyset_ordering`."""

    ordering: tuple[str, ...] = ("-id",)

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        ordering = tuple(getattr(view, "keyset_ordering", self.ordering))
        limit = parse_limit(request)
        cursor = request.query_params.get("cursor")
        assert isinstance(queryset, QuerySet), "keyset pagination needs a queryset"
        queryset = queryset.order_by(*ordering)
        if cursor:
            queryset = queryset.filter(keyset_filter(ordering, decode_cursor(cursor, len(ordering))))
        rows = list(queryset[: limit + 1])
        self.next_cursor: str | None = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            self.next_cursor = encode_cursor([_attr(last, spec.lstrip("-")) for spec in ordering])
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"results": data, "next": self.next_cursor})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "nullable": True, "description": "Cursor of the next page."},
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "cursor",
                "required": False,
                "in": "query",
                "description": "Opaque cursor from the previous page's `next`.",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"},
            },
            {
                "name": "limit",
                "required": False,
                "in": "query",
                "description": f"Page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            },
        ]


def _attr(obj: Any, path: str) -> Any:
    for part in path.split("__"):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj.isoformat() if hasattr(obj, "isoformat") else obj
