from django.apps import AppConfig


class TransactionsConfig(AppConfig):
    name = "transactions"

    def ready(self) -> None:
        from transactions.services.settlement import register_open_payments_gauge

        register_open_payments_gauge()  # bankcore_payments_open{status} on /metrics
