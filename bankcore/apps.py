from django.apps import AppConfig


class BankcoreConfig(AppConfig):
    name = "bankcore"
    verbose_name = "bankcore operations"
    default_auto_field = "django.db.models.BigAutoField"
