from transactions.tests.gateway_fixture import gateway, gateway_simulator, settlement_worker  # noqa: F401 - fixtures
