"""Where backups are kept: a directory or an S3-compatible bucket.

Each backup is ``<id>.bcbk`` (the encrypted dump) and ``<id>.manifest.json``. Both stores
write without holding an object in memory (the directory through a temporary file renamed
into place, S3 through a multipart upload fed from the stream) and read as streams.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings

from bankcore.backups.crypto import Readable, StreamReader

DATA_SUFFIX = ".bcbk"
MANIFEST_SUFFIX = ".manifest.json"
ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
# S3 multipart parts: memory in flight is about part size x concurrency.
S3_PART_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class StoredBackup:
    """What the store holds of one backup (nothing verified yet)."""

    backup_id: str
    size: int
    has_manifest: bool


class BackupStore(Protocol):
    location: str

    def write_data(self, backup_id: str, chunks: Iterator[bytes]) -> int:
        """Store the backup's encrypted stream; its size in bytes."""
        ...

    def open_data(self, backup_id: str) -> AbstractContextManager[Readable]: ...

    def write_manifest(self, backup_id: str, data: bytes) -> None: ...

    def read_manifest(self, backup_id: str) -> bytes | None: ...

    def list(self) -> list[StoredBackup]:
        """Every backup in the store, oldest first."""
        ...

    def delete(self, backup_id: str) -> None: ...

    def where(self, backup_id: str) -> str: ...


def _check_id(backup_id: str) -> str:
    if not ID_RE.match(backup_id):
        raise ValueError(f"{backup_id!r} is not a backup id (like 20250101T120000Z-1a2b3c4d)")
    return backup_id


def _group(names: dict[str, int]) -> list[StoredBackup]:
    found: dict[str, StoredBackup] = {}
    for name, size in names.items():
        if name.endswith(DATA_SUFFIX) and ID_RE.match(name[: -len(DATA_SUFFIX)]):
            backup_id = name[: -len(DATA_SUFFIX)]
            found[backup_id] = StoredBackup(backup_id, size, backup_id + MANIFEST_SUFFIX in names)
    return [found[key] for key in sorted(found)]


class DirectoryBackupStore:
    """Backups as files in a directory (a mount elsewhere than the database's disk, ideally)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)

    def where(self, backup_id: str) -> str:
        return str(self.directory / (backup_id + DATA_SUFFIX))

    def _write(self, name: str, chunks: Iterator[bytes]) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            size = 0
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o440)
            os.replace(temp, self.directory / name)
        except BaseException:
            with _ignore_missing():
                os.unlink(temp)
            raise
        return size

    def write_data(self, backup_id: str, chunks: Iterator[bytes]) -> int:
        return self._write(_check_id(backup_id) + DATA_SUFFIX, chunks)

    @contextmanager
    def open_data(self, backup_id: str) -> Iterator[Readable]:
        with open(self.directory / (_check_id(backup_id) + DATA_SUFFIX), "rb") as handle:
            yield handle

    def write_manifest(self, backup_id: str, data: bytes) -> None:
        self._write(_check_id(backup_id) + MANIFEST_SUFFIX, iter([data]))

    def read_manifest(self, backup_id: str) -> bytes | None:
        try:
            return (self.directory / (_check_id(backup_id) + MANIFEST_SUFFIX)).read_bytes()
        except FileNotFoundError:
            return None

    def list(self) -> list[StoredBackup]:
        if not self.directory.is_dir():
            return []
        return _group({entry.name: entry.stat().st_size for entry in os.scandir(self.directory) if entry.is_file()})

    def delete(self, backup_id: str) -> None:
        # The manifest first: a half-deleted backup is then "incomplete", never a signed promise of missing data.
        for suffix in (MANIFEST_SUFFIX, DATA_SUFFIX):
            with _ignore_missing():
                (self.directory / (_check_id(backup_id) + suffix)).unlink()


def _ignore_missing() -> AbstractContextManager[None]:
    return suppress(FileNotFoundError)


class S3BackupStore:
    """Backups as objects in an S3-compatible bucket (versioning or object lock recommended)."""

    def __init__(self, *, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client = client if client is not None else _s3_client()
        self.location = f"s3://{bucket}/{prefix}"

    def where(self, backup_id: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{backup_id}{DATA_SUFFIX}"

    def write_data(self, backup_id: str, chunks: Iterator[bytes]) -> int:
        from boto3.s3.transfer import TransferConfig

        counted = _Counted(chunks)
        # A multipart upload read from the stream: at most ~concurrency parts in memory.
        config = TransferConfig(
            multipart_threshold=S3_PART_SIZE, multipart_chunksize=S3_PART_SIZE, max_concurrency=2, use_threads=True
        )
        self.client.upload_fileobj(
            StreamReader(iter(counted)), self.bucket, self.prefix + _check_id(backup_id) + DATA_SUFFIX, Config=config
        )
        return counted.size

    @contextmanager
    def open_data(self, backup_id: str) -> Iterator[Readable]:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + _check_id(backup_id) + DATA_SUFFIX)["Body"]
        try:
            yield body
        finally:
            body.close()

    def write_manifest(self, backup_id: str, data: bytes) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.prefix + _check_id(backup_id) + MANIFEST_SUFFIX,
            Body=data,
            ContentType="application/json",
        )

    def read_manifest(self, backup_id: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            key = self.prefix + _check_id(backup_id) + MANIFEST_SUFFIX
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise
        return bytes(response["Body"].read())

    def list(self) -> list[StoredBackup]:
        names: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                names[item["Key"][len(self.prefix) :]] = int(item["Size"])
        return _group(names)

    def delete(self, backup_id: str) -> None:
        for suffix in (MANIFEST_SUFFIX, DATA_SUFFIX):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + _check_id(backup_id) + suffix)


class _Counted:
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.size += len(chunk)
            yield chunk


def _s3_client() -> Any:
    import boto3  # only where S3 is configured
    from botocore.config import Config

    return boto3.client(
        "s3",
        # Bounded waits: a hung endpoint fails the call (and the task) instead of holding it.
        config=Config(
            connect_timeout=settings.S3_CONNECT_TIMEOUT,
            read_timeout=settings.S3_READ_TIMEOUT,
            retries={"mode": "standard", "max_attempts": 3},
        ),
        endpoint_url=settings.BACKUP_S3_ENDPOINT_URL or None,
        region_name=settings.BACKUP_S3_REGION or None,
        aws_access_key_id=settings.BACKUP_S3_ACCESS_KEY_ID or None,
        aws_secret_access_key=settings.BACKUP_S3_SECRET_ACCESS_KEY or None,
    )


def backup_store() -> BackupStore:
    """The configured store: the S3 bucket when BACKUP_S3_BUCKET is set, else BACKUP_DIR."""
    if settings.BACKUP_S3_BUCKET:
        return S3BackupStore(bucket=settings.BACKUP_S3_BUCKET, prefix=settings.BACKUP_S3_PREFIX)
    return DirectoryBackupStore(settings.BACKUP_DIR)
