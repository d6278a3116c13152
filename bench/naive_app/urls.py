"""bankcore's URLs plus the naive transfer view, mounted only in bench.naive_app.settings."""

from django.urls import path

from bankcore.urls import handler400, handler403, handler404, handler500
from bankcore.urls import urlpatterns as product_urlpatterns
from bench.naive_app.views import NaiveTransfer

urlpatterns = [path("api/bench/naive-transfers", NaiveTransfer.as_view(), name="naive-transfers")]
urlpatterns += product_urlpatterns

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
