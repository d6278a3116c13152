from django.urls import include, path

urlpatterns: list = [
    path("", include("accounts.api.bank_accounts_urls")),
]
