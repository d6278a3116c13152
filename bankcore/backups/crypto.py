"""Backup keys, the encrypted stream format and the manifest's signature.

Keys: ``BACKUP_ENCRYPTION_KEYS``, secrets of 32+ characters, newest first. The first encrypts
and signs; any of them decrypts and verifies, so a new key is put in front and the old one kept
until the last backup it encrypted has been pruned. Each key has a public id (``key_id``),
which the stream header and the manifest carry, so an unknown key is named, not guessed at.

The stream (``.bcbk``), version 1:

    header   = b"BCBACKUP" | version (1 byte, 1) | key id (8 bytes) | salt (16 bytes)
               | segment size (4 bytes, big-endian)                          (37 bytes)
    segments = AES-256-GCM(data key, nonce, plaintext segment, associated data) ...

- data key = HKDF-SHA256(the secret, salt, info "bankcore-backup/1 data"): a fresh key for
  every backup (the salt is random), so the nonce can simply count: 4 zero bytes and the
  segment's index (8 bytes, big-endian);
- every segment holds `segment size` plaintext bytes (1 MiB) except the last, which holds
  0 to `segment size` bytes and is flagged final;
- associated data = the header | the segment's index (8 bytes) | final flag (1 byte), so a
  segment that is altered, moved, dropped, or a stream cut at any point (its last segment
  was not sealed as final) fails authentication, as does a header altered in any byte.

The writer and the reader hold one or two segments at a time: memory stays flat for any
size. The manifest is signed with HMAC-SHA256 under a second key derived from the same secret
(info "bankcore-backup/1 manifest"), over its canonical JSON (sorted keys, no spaces)
without the ``signature`` field.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

MAGIC = b"BCBACKUP"
VERSION = 1
HEADER = struct.Struct(">8sB8s16sI")  # magic, version, key id, salt, segment size
SEGMENT_SIZE = 1024 * 1024
TAG_SIZE = 16
MAX_SEGMENT_SIZE = 64 * 1024 * 1024


class BackupError(Exception):
    """Base of the backup errors an operator must look at; the message says what and why."""


class BackupCorrupt(BackupError):
    """The backup's bytes are not what was written: altered, truncated, or not a backup at all."""


class BackupKeyUnknown(BackupError):
    """The backup was encrypted or signed with a key BACKUP_ENCRYPTION_KEYS no longer holds."""


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


# --- keys ---------------------------------------------------------------------------------


def backup_keys() -> tuple[bytes, ...]:
    """The configured BACKUP_ENCRYPTION_KEYS, newest first (re-read, so settings overrides apply)."""
    configured = getattr(settings, "BACKUP_ENCRYPTION_KEYS", [])
    if isinstance(configured, str):
        configured = configured.split(",")
    keys = tuple(key.strip().encode() for key in configured if key.strip())
    if not keys:
        raise ImproperlyConfigured("BACKUP_ENCRYPTION_KEYS must be set (comma-separated secrets, each 32+ chars).")
    short = [index for index, key in enumerate(keys) if len(key) < 32]
    if short:
        raise ImproperlyConfigured(f"BACKUP_ENCRYPTION_KEYS: key #{short[0] + 1} is shorter than 32 characters.")
    return keys


def key_id(secret: bytes) -> str:
    """A key's public name (16 hex digits): which key wrote a backup, never the key itself."""
    return hmac.new(secret, b"bankcore-backup-key-id", hashlib.sha256).hexdigest()[:16]


def _derive(secret: bytes, *, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def _key_named(kid: str, *, what: str) -> bytes:
    for secret in backup_keys():
        if hmac.compare_digest(key_id(secret), kid):
            return secret
    raise BackupKeyUnknown(
        f"{what} names key {kid}, which BACKUP_ENCRYPTION_KEYS does not hold "
        "(keep old keys after the new one while backups they wrote are kept)."
    )


# --- the stream ---------------------------------------------------------------------------


def _read_full(source: Readable, size: int) -> bytes:
    """Exactly `size` bytes, fewer only at end of stream (a pipe's read returns what it has)."""
    parts: list[bytes] = []
    wanted = size
    while wanted:
        chunk = source.read(wanted)
        if not chunk:
            break
        parts.append(chunk)
        wanted -= len(chunk)
    return b"".join(parts)


def _nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack(">Q", index)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">Q", index) + (b"\x01" if final else b"\x00")


def encrypt_stream(source: Readable, *, segment_size: int = SEGMENT_SIZE) -> Iterator[bytes]:
    """The encrypted stream of `source`'s bytes (read to its end), header first, one segment per item.

    Encrypted with the newest BACKUP_ENCRYPTION_KEYS key. Holds two segments at most.
    """
    secret = backup_keys()[0]
    salt = os.urandom(16)
    header = HEADER.pack(MAGIC, VERSION, bytes.fromhex(key_id(secret)), salt, segment_size)
    cipher = AESGCM(_derive(secret, salt=salt, info=b"bankcore-backup/1 data"))
    yield header
    index = 0
    current = _read_full(source, segment_size)
    while True:
        # One segment ahead: the last one is known only when the next read finds the end.
        following = _read_full(source, segment_size) if len(current) == segment_size else b""
        final = not following
        yield cipher.encrypt(_nonce(index), current, _aad(header, index, final))
        if final:
            return
        current, index = following, index + 1


def decrypt_stream(source: Readable) -> Iterator[bytes]:
    """The plaintext of an encrypted stream, segment by segment, each authenticated before it is yielded.

    Raises BackupCorrupt at the first segment that fails (altered, reordered, truncated) or when
    the stream does not end with its final segment, BackupKeyUnknown when its key is not configured.
    A consumer must treat what it received as unusable until the iterator is exhausted.
    """
    header = _read_full(source, HEADER.size)
    if len(header) < HEADER.size:
        raise BackupCorrupt("the backup is shorter than its header: truncated, or not a bankcore backup.")
    magic, version, raw_key_id, salt, segment_size = HEADER.unpack(header)
    if magic != MAGIC:
        raise BackupCorrupt("the backup does not start with the bankcore backup header: not a backup, or altered.")
    if version != VERSION:
        raise BackupCorrupt(f"the backup's format version is {version}; this bankcore reads version {VERSION}.")
    if not 0 < segment_size <= MAX_SEGMENT_SIZE:
        raise BackupCorrupt(f"the backup's header names an impossible segment size ({segment_size}): altered.")
    secret = _key_named(raw_key_id.hex(), what="The backup")
    cipher = AESGCM(_derive(secret, salt=salt, info=b"bankcore-backup/1 data"))
    sealed = segment_size + TAG_SIZE
    index = 0
    current = _read_full(source, sealed)
    if not current:
        raise BackupCorrupt("the backup ends after its header: truncated.")
    while True:
        following = _read_full(source, sealed) if len(current) == sealed else b""
        final = not following
        try:
            yield cipher.decrypt(_nonce(index), current, _aad(header, index, final))
        except InvalidTag:
            where = "its last segment" if final else f"segment {index}"
            raise BackupCorrupt(
                f"the backup fails authentication at {where} (#{index}): it was altered or truncated."
            ) from None
        if final:
            return
        current, index = following, index + 1


class StreamReader:
    """A file-like `read(n)` over an iterator of byte chunks (for boto3's upload_fileobj and pipes)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self._done = True
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readable(self) -> bool:
        return True


def copy_stream(chunks: Iterator[bytes], target: BinaryIO) -> int:
    written = 0
    for chunk in chunks:
        target.write(chunk)
        written += len(chunk)
    return written


# --- the manifest's signature ---------------------------------------------------------------


def _signed_bytes(document: dict[str, Any]) -> bytes:
    unsigned = {field: value for field, value in document.items() if field != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def _signing_key(secret: bytes) -> bytes:
    return _derive(secret, salt=None, info=b"bankcore-backup/1 manifest")


def sign_manifest(document: dict[str, Any]) -> bytes:
    """The manifest as stored: `document` with the signing key's id and the HMAC-SHA256 signature."""
    secret = backup_keys()[0]
    signed = {**document, "key_id": key_id(secret)}
    signed["signature"] = hmac.new(_signing_key(secret), _signed_bytes(signed), hashlib.sha256).hexdigest()
    return json.dumps(signed, indent=1, sort_keys=True).encode() + b"\n"


def verify_manifest(data: bytes, *, name: str) -> dict[str, Any]:
    """The manifest's content once its signature verifies with a configured key.

    Raises BackupCorrupt when it cannot be read or was altered, BackupKeyUnknown when it was
    signed with a key BACKUP_ENCRYPTION_KEYS no longer holds.
    """
    try:
        document = json.loads(data)
        signature = str(document["signature"])
        kid = str(document["key_id"])
    except (ValueError, TypeError, KeyError) as exc:
        raise BackupCorrupt(f"the manifest of backup {name} cannot be read: {exc}") from None
    secret = _key_named(kid, what=f"The manifest of backup {name}")
    expected = hmac.new(_signing_key(secret), _signed_bytes(document), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise BackupCorrupt(f"the manifest of backup {name} has an invalid signature: it was altered after signing.")
    if not isinstance(document, dict):
        raise BackupCorrupt(f"the manifest of backup {name} is not an object.")
    return document


@checks.register(checks.Tags.security, deploy=True)
def check_backup_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """`manage.py check --deploy` fails when production has no (or too short) backup keys."""
    try:
        backup_keys()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="bankcore.E102")]
    return []
