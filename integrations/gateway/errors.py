"""What can go wrong at the payment gateway's edge, as one exception family.

Callers (the settlement side) decide by class:

- GatewayUnavailable: network error, timeout, 5xx or the circuit is open. For a submission the
  outcome is unknown: the gateway may have accepted the message. Resubmitting the same message
  id is safe (the gateway deduplicates by it).
- GatewayRejected: the gateway refused the request (4xx, e.g. its XSD check failed). Retrying
  the same bytes will not help.
- UnknownMessage: the gateway has never received this message id: submit it (again).
- InvalidMessage: an ISO 20022 document that does not validate against its schema, ours before
  sending (nothing was sent) or the gateway's on receipt.
- InvalidSignature: a webhook whose X-Signature is missing, malformed, wrong or stale.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every payment-gateway error."""


class GatewayUnavailable(GatewayError):
    """The gateway did not answer usefully (network, timeout, 5xx, open circuit); outcome unknown."""


class GatewayRejected(GatewayError):
    """The gateway answered 4xx: it refused the request as sent."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"gateway rejected the request ({status_code}): {detail}")
        self.status_code = status_code
        self.detail = detail


class UnknownMessage(GatewayError):
    """The gateway does not know this message id (404): it was never received."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"gateway does not know message {message_id!r}")
        self.message_id = message_id


class InvalidMessage(GatewayError):
    """An ISO 20022 document failed its schema validation (or could not be read at all)."""


class InvalidSignature(GatewayError):
    """A webhook's signature header is missing, malformed, wrong, or its timestamp is too old."""
