"""/api/v1/accounts... routes (owned by the ledger work). History and statements are served by transactions.api."""

from django.urls import path

from accounts.api.bank_accounts import BankAccountDetail, BankAccountListCreate
from transactions.api import views as ledger_views

urlpatterns: list = [
    path("accounts", BankAccountListCreate.as_view(), name="accounts"),
    path("accounts/<uuid:account_id>", BankAccountDetail.as_view(), name="account-detail"),
    path("accounts/<uuid:account_id>/transactions", ledger_views.AccountHistory.as_view(), name="account-history"),
    path("accounts/<uuid:account_id>/statement", ledger_views.AccountStatement.as_view(), name="account-statement"),
]
