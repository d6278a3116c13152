from django.urls import path

from transactions.api import views

urlpatterns = [
    path("transfers", views.TransferListCreate.as_view(), name="transfers"),
    path("transfers/<uuid:transfer_id>", views.TransferDetail.as_view(), name="transfer-detail"),
    path("limits", views.Limits.as_view(), name="limits"),
]
