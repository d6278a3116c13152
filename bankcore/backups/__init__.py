"""Encrypted, checksummed database backups, their restore and the disaster-recovery drill.

A backup is two objects in the backup store (a directory, BACKUP_DIR, or an S3-compatible
bucket, BACKUP_S3_BUCKET), named by the backup's id (``20250101T120000Z-1a2b3c4d``, sortable by time):

- ``<id>.bcbk``: the output of ``pg_dump --format=custom`` (compressed by pg_dump), encrypted
  as it streams out of pg_dump in the segmented AES-256-GCM format of ``bankcore.backups.crypto``;
- ``<id>.manifest.json``: what the backup holds, HMAC-SHA256-signed: the SHA-256 and size of
  the ``.bcbk`` object, the creation time, the server and pg_dump versions, the applied
  migrations, row counts and content checksums of the ledger and audit tables
  (BACKUP_CHECKSUM_TABLES) with a combined ledger checksum, and the audit chains' heads.
  It is written last: a backup without a manifest is incomplete and is never restored.

The manifest's figures describe exactly what was dumped: they are read in one REPEATABLE READ
transaction whose snapshot is exported (``pg_export_snapshot()``) and handed to
``pg_dump --snapshot``, so pg_dump sees the same rows (``bankcore.backups.postgres``).

Modules: ``crypto`` (keys, the stream format, signatures), ``storage`` (the stores),
``postgres`` (pg_dump/pg_restore, the database facts), ``services`` (backup_create,
backup_restore, backups_prune, dr_drill_run, ...).
"""
