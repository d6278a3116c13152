"""Per-request context (request id, client address) kept in context variables.

Every log line carries the request id; the audit log reads the client details from
here so services need not pass the request around.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestMeta:
    request_id: str = "-"
    ip: str | None = None
    user_agent: str = ""


_NO_REQUEST = RequestMeta()
request_meta_var: ContextVar[RequestMeta] = ContextVar("request_meta", default=_NO_REQUEST)


def current_request_meta() -> RequestMeta:
    return request_meta_var.get()


def current_request_id() -> str:
    return request_meta_var.get().request_id


class RequestIDFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_meta_var.get().request_id
        return True
