from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Customers and accounts"

    def ready(self) -> None:
        from accounts.services.staff_groups import sync_staff_groups_after_migrate

        # The staff groups (support, operations, compliance) follow the code on every migrate.
        post_migrate.connect(sync_staff_groups_after_migrate, sender=self, dispatch_uid="bankcore_staff_groups")
