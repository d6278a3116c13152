from django.urls import path

from notifications.api import views

urlpatterns: list = [
    path("notifications", views.NotificationListView.as_view(), name="notifications"),
    path("notifications/read-all", views.NotificationReadAllView.as_view(), name="notifications-read-all"),
    path("notifications/<uuid:notification_id>/read", views.NotificationReadView.as_view(), name="notification-read"),
    path("notification-preferences", views.NotificationPreferencesView.as_view(), name="notification-preferences"),
    path("status", views.StatusView.as_view(), name="service-status"),
]
