"""Re-encrypt every encrypted field value with the newest FIELD_ENCRYPTION_KEYS key.

Rotation: put the new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after
it), deploy, run this command, then drop the old keys. Safe to re-run. Rows are
rewritten in batches of stored ciphertext (never decrypted into the ORM), each
batch in its own transaction with its rows locked.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from bankcore.crypto import DecryptionError, encrypted_fields, reencrypt


class Command(BaseCommand):
    help = "Re-encrypt all encrypted fields (PII, TOTP secrets) with the first FIELD_ENCRYPTION_KEYS key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        quote = connection.ops.quote_name
        total = 0
        for model, attname in encrypted_fields():
            table = quote(model._meta.db_table)
            column = quote(str(model._meta.get_field(attname).column))  # type: ignore[union-attr]
            pk = quote(str(model._meta.pk.column))
            rewritten = 0
            last_pk: Any = None
            while True:
                with transaction.atomic(), connection.cursor() as cursor:
                    after = f" AND {pk} > %s" if last_pk is not None else ""
                    cursor.execute(
                        f"SELECT {pk}, {column} FROM {table} WHERE {column} <> ''{after} "  # noqa: S608 - quoted names
                        f"ORDER BY {pk} LIMIT %s FOR UPDATE",
                        [*([last_pk] if last_pk is not None else []), batch_size],
                    )
                    batch = cursor.fetchall()
                    if not batch:
                        break
                    for row_pk, stored in batch:
                        try:
                            fresh = reencrypt(stored)
                        except DecryptionError as exc:
                            raise CommandError(f"{model._meta.label} {row_pk}: {exc}") from None
                        cursor.execute(
                            f"UPDATE {table} SET {column} = %s WHERE {pk} = %s",  # noqa: S608 - quoted names
                            [fresh, row_pk],
                        )
                        rewritten += 1
                    last_pk = batch[-1][0]
            self.stdout.write(f"{model._meta.label}.{attname}: {rewritten} values re-encrypted")
            total += rewritten
        self.stdout.write(self.style.SUCCESS(f"{total} values re-encrypted with the newest key."))
