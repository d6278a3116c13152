"""Time-ordered UUIDs (UUIDv7, RFC 9562) for primary keys.

Opaque to clients, yet they sort by creation time, so keyset pagination by id is
"newest first" and inserts land at the right edge of the index. Within one process
ids are strictly increasing (a 12-bit counter within the millisecond, RFC 9562
"method 1"); across processes they are ordered to the millisecond.
"""

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    global _last_ms, _counter
    with _lock:
        unix_ms = time.time_ns() // 1_000_000
        if unix_ms > _last_ms:
            _last_ms, _counter = unix_ms, int.from_bytes(os.urandom(2), "big") & 0x3FF
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms, _counter = _last_ms + 1, 0
        unix_ms, counter = _last_ms, _counter
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= counter << 64  # rand_a, used as a monotonic counter
    value |= 0b10 << 62  # variant
    value |= int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF  # rand_b
    return uuid.UUID(int=value)
