"""What can go wrong at the legacy core's edge, as one exception family.

The one rule for a financial request (0200, `debit`/`credit`/`send`): an error that carries
`original` (an OriginalRequest) means the request was SENT and its outcome is unknown — the
core may have applied it. The caller must reverse it (`reverse(exc.original)`, retried until
acknowledged). An error without `original` means nothing reached the core.

- LegacyUnavailable: nothing was sent or nothing usable came back from an idempotent call
  (connect refused, connection lost, the circuit is open, every pooled connection busy).
  From a 0200 it never carries `original`: the request did not leave.
- LegacyTimeout: the request was sent and no answer came in time (or the connection closed
  before the answer). From a 0200 it carries `original`: reverse it.
- LegacyProtocolError: the core answered bytes that are not our protocol. From a 0200 it
  carries `original`: reverse it.
- LegacyDeclined: a balance inquiry or echo the core answered with a refusal (its response
  code, e.g. 14 invalid account). Financial requests and reversals return their refusals as
  a LegacyResult instead (approved False), since the caller records them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .messages import OriginalRequest


class LegacyError(Exception):
    """Base of every legacy-core error. `original` is set when a 0200 may have been applied."""

    def __init__(self, message: str, *, original: OriginalRequest | None = None) -> None:
        super().__init__(message)
        self.original = original

    @property
    def outcome_unknown(self) -> bool:
        """True when a financial request was sent and may have been applied: reverse it."""
        return self.original is not None


class LegacyUnavailable(LegacyError):
    """The core could not be reached (or the circuit is open); nothing of a 0200 was sent."""


class LegacyTimeout(LegacyError):
    """Sent, but no answer in time (or the connection closed first): the outcome is unknown."""


class LegacyProtocolError(LegacyError):
    """The core answered something that is not ISO 8583 as PROTOCOL.md specifies it."""


class LegacyDeclined(LegacyError):
    """The core refused a balance inquiry or an echo (`response_code`, field 39)."""

    def __init__(self, message: str, *, response_code: str) -> None:
        super().__init__(message)
        self.response_code = response_code
