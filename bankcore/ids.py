"""Time-ordered UUIDs (UUIDv7, RFC 9562) for primary keys.

Opaque to clients, yet they sort by creation time, so keyset pagination by id is
"newest first" and inserts land at the right edge of the index.
"""

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b
    return uuid.UUID(int=value)
