from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        from bankcore import circuits

        from .gateway.client import circuit_state

        circuits.register("payment_gateway", circuit_state)
