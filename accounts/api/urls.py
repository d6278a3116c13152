from django.urls import path

from accounts.api import identity_views as views

urlpatterns: list = [
    path("auth/register", views.RegisterView.as_view(), name="auth-register"),
    path("auth/token", views.TokenView.as_view(), name="auth-token"),
    path("auth/token/mfa", views.MfaTokenView.as_view(), name="auth-token-mfa"),
    path("auth/token/refresh", views.RefreshView.as_view(), name="auth-token-refresh"),
    path("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    path("auth/password", views.PasswordView.as_view(), name="auth-password"),
    path("auth/totp", views.TotpView.as_view(), name="auth-totp"),
    path("auth/totp/confirm", views.TotpConfirmView.as_view(), name="auth-totp-confirm"),
    path("auth/device/challenge", views.DeviceChallengeView.as_view(), name="auth-device-challenge"),
    path("auth/device/token", views.DeviceTokenView.as_view(), name="auth-device-token"),
    path("auth/step-up", views.StepUpView.as_view(), name="auth-step-up"),
    path("me", views.MeView.as_view(), name="me"),
    path("me/contacts/confirm", views.ContactConfirmView.as_view(), name="me-contacts-confirm"),
    path("devices", views.DeviceListView.as_view(), name="devices"),
    path("devices/<uuid:device_id>", views.DeviceDetailView.as_view(), name="device-detail"),
]
