from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Customers and accounts"

    def ready(self) -> None:
        from accounts.models import LoginSession, User
        from accounts.services.auth_cache import user_or_session_changed
        from accounts.services.staff_groups import sync_staff_groups_after_migrate

        # The staff groups (support, operations, compliance) follow the code on every migrate.
        post_migrate.connect(sync_staff_groups_after_migrate, sender=self, dispatch_uid="bankcore_staff_groups")
        # Any change to a user or one of their login sessions retires the live-session cache's
        # answers for them (accounts/services/auth_cache.py), in every process that makes one.
        for model in (User, LoginSession):
            for signal in (post_save, post_delete):
                uid = f"bankcore_auth_cache_{model.__name__}_{signal is post_save}"
                signal.connect(user_or_session_changed, sender=model, dispatch_uid=uid)
