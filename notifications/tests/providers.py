"""Provider implementations for tests, selected like any other by NOTIFICATIONS_*_PROVIDER."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from notifications.providers import HttpSmsProvider


class CrashingOnceSmsProvider(HttpSmsProvider):
    """A provider with a bug: its first send raises RuntimeError (not a provider error), later
    ones send normally. "First" holds across processes: the file named by the environment
    variable CRASHING_PROVIDER_MARKER is created by the send that crashes."""

    def send(self, delivery: Any) -> str:
        try:
            Path(os.environ["CRASHING_PROVIDER_MARKER"]).open("x").close()
        except FileExistsError:
            return super().send(delivery)
        raise RuntimeError("provider bug: 'NoneType' object is not subscriptable")
