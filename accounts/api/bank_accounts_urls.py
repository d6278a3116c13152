"""/api/v1/accounts... routes (owned by the ledger work)."""

urlpatterns: list = []
