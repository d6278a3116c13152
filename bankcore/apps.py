from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BankcoreConfig(AppConfig):
    name = "bankcore"
    verbose_name = "bankcore operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bankcore.db.roles import harden_pgtrigger_ignore

        # After every migrate: pgtrigger's migrations reinstall the function this replaces.
        post_migrate.connect(harden_pgtrigger_ignore, sender=self, dispatch_uid="bankcore.harden_pgtrigger_ignore")
