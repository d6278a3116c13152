from django.urls import path

from transactions.api import insights, payments, support, views, webhooks

# The accounts pages show ledger figures (balance, available after holds, history), so the
# ledger serves them: accounts never imports transactions.
urlpatterns = [
    path("accounts", views.BankAccountListCreate.as_view(), name="accounts"),
    path("accounts/<uuid:account_id>", views.BankAccountDetail.as_view(), name="account-detail"),
    path("accounts/<uuid:account_id>/transactions", views.AccountHistory.as_view(), name="account-history"),
    path(
        "accounts/<uuid:account_id>/transactions/<str:entry_id>",
        insights.AccountHistoryEntry.as_view(),
        name="account-history-entry",
    ),
    path("accounts/<uuid:account_id>/statement", views.AccountStatement.as_view(), name="account-statement"),
    path("transfers", views.TransferListCreate.as_view(), name="transfers"),
    path("transfers/<uuid:transfer_id>", views.TransferDetail.as_view(), name="transfer-detail"),
    path("limits", views.Limits.as_view(), name="limits"),
    path("beneficiaries", views.BeneficiaryListCreate.as_view(), name="beneficiaries"),
    path("beneficiaries/<uuid:beneficiary_id>", views.BeneficiaryDetail.as_view(), name="beneficiary-detail"),
    path("standing-orders", views.StandingOrderListCreate.as_view(), name="standing-orders"),
    path("standing-orders/<uuid:order_id>", views.StandingOrderDetail.as_view(), name="standing-order-detail"),
    path("payments", payments.PaymentListCreate.as_view(), name="payments"),
    path("payments/<uuid:payment_id>", payments.PaymentDetail.as_view(), name="payment-detail"),
    path("insights/spending", insights.SpendingInsights.as_view(), name="insights-spending"),
    path("insights/preferences", insights.InsightsPreferences.as_view(), name="insights-preferences"),
    path("integrations/gateway/webhook", webhooks.GatewayWebhook.as_view(), name="gateway-webhook"),
    path("support/tickets", support.SupportTicketListCreate.as_view(), name="support-tickets"),
    path("support/tickets/<uuid:ticket_id>", support.SupportTicketDetail.as_view(), name="support-ticket-detail"),
    path(
        "support/tickets/<uuid:ticket_id>/messages",
        support.SupportTicketMessages.as_view(),
        name="support-ticket-messages",
    ),
]
