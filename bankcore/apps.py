from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BankcoreConfig(AppConfig):
    name = "bankcore"
    verbose_name = "bankcore operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bankcore.backups import crypto  # noqa: F401 - registers the deploy check of the backup keys
        from bankcore.backups.services import register_backup_age_gauge
        from bankcore.db.roles import harden_pgtrigger_ignore

        register_backup_age_gauge()

        # After every migrate: pgtrigger's migrations reinstall the function this replaces.
        post_migrate.connect(harden_pgtrigger_ignore, sender=self, dispatch_uid="bankcore.harden_pgtrigger_ignore")
