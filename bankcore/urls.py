from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.admin.site import BankAdminSite
from bankcore import health, metrics
from bankcore.api.app_config import AppConfigView

# Staff must pass a TOTP code to reach the admin (device enrolled with `manage.py enrol_staff_totp`),
# given with e-mail and password on one form, under the API's lockout and throttles.
admin.site.__class__ = BankAdminSite
admin.site.site_header = f"{settings.BANK_NAME} — staff"

api_v1: list[URLPattern | URLResolver] = [
    path("", include("accounts.api.urls")),
    path("", include("transactions.api.urls")),
    path("", include("notifications.api.urls")),
    path("app-config", AppConfigView.as_view(), name="app-config"),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view loads its start-up script from a URL instead of inline, so the page works
    # under a Content-Security-Policy without 'unsafe-inline' scripts.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include((api_v1, "v1"))),
    path(settings.ADMIN_URL, admin.site.urls),
]

handler400 = "bankcore.api.errors.handler400"
handler403 = "bankcore.api.errors.handler403"
handler404 = "bankcore.api.errors.handler404"
handler500 = "bankcore.api.errors.handler500"
