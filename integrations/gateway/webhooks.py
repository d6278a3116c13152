"""Signed webhooks from the gateway: `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The MAC covers "<t>.<raw body>" with the shared secret (GATEWAY_WEBHOOK_SECRET), so a body
cannot be replayed later with a new timestamp. Secret rotation: `secret` may list several
secrets separated by commas; a signature by any of them verifies (sign uses the first).
"""

from __future__ import annotations

import hashlib
import hmac

from .errors import InvalidSignature

SIGNATURE_HEADER = "X-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def _secrets(secret: str) -> list[str]:
    return [part.strip() for part in secret.split(",") if part.strip()]


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Signature header value for `body` sent at `timestamp` (unix seconds)."""
    secrets = _secrets(secret)
    if not secrets:
        raise ValueError("no webhook secret configured")
    return f"t={int(timestamp)},v1={_mac(secrets[0], body, int(timestamp))}"


def verify(
    secret: str, header: str | None, body: bytes, *, now: float, tolerance: int = DEFAULT_TOLERANCE_SECONDS
) -> None:
    """Raise InvalidSignature unless `header` signs `body` with (one of) the secret(s) and its
    timestamp is within `tolerance` seconds of `now`. Constant-time comparison. With no secret
    configured every webhook is refused."""
    secrets = _secrets(secret)
    if not secrets:
        raise InvalidSignature("no webhook secret configured")
    if not header:
        raise InvalidSignature("missing signature header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature("malformed signature header")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature("malformed signature timestamp") from None
        elif key == "v1":
            signatures.append(value.strip().lower())
    if timestamp is None or not signatures:
        raise InvalidSignature("malformed signature header")
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature("signature timestamp outside the tolerance")
    expected = [_mac(candidate, body, timestamp) for candidate in secrets]
    # Compare every pair (no early exit) so timing does not tell which secret matched.
    matched = False
    for mac in expected:
        for signature in signatures:
            matched |= hmac.compare_digest(mac, signature)
    if not matched:
        raise InvalidSignature("signature does not match")
