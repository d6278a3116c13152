from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from notifications.metrics import register_collectors

        register_collectors()

        from bankcore.signals import maintenance_changed
        from notifications.services.maintenance import maintenance_mode_changed

        # Maintenance mode (bankcore) shows on /api/v1/status and is announced to customers.
        maintenance_changed.connect(maintenance_mode_changed, dispatch_uid="notifications.maintenance_mode")
