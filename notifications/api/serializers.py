from __future__ import annotations

from rest_framework import serializers

from notifications.models import Notification
from notifications.services import PREFERENCE_EVENTS


class NotificationOut(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "event", "title", "body", "created_at", "read_at"]


class NotificationPageOut(serializers.Serializer):
    results = NotificationOut(many=True)
    next = serializers.CharField(allow_null=True, help_text="Cursor of the next page.")
    unread = serializers.IntegerField(help_text="Unread notifications in the whole inbox.")


class StatusIncidentUpdate(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["declared", "updated", "resolved"])
    message = serializers.CharField()
    created_at = serializers.DateTimeField()


class StatusIncident(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    message = serializers.CharField()
    severity = serializers.ChoiceField(choices=["minor", "major", "critical"])
    services = serializers.ListField(child=serializers.CharField())
    started_at = serializers.DateTimeField()
    updates = StatusIncidentUpdate(many=True)


class StatusMaintenance(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    message = serializers.CharField()
    services = serializers.ListField(child=serializers.CharField())
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    in_progress = serializers.BooleanField()
    writes_paused = serializers.BooleanField(help_text="Maintenance mode: requests that change anything answer 503.")
    end_unknown = serializers.BooleanField(help_text="No expected end was given; ends_at is only a bound.")


class StatusAlternatives(serializers.Serializer):
    support_phone = serializers.CharField()
    branch_hours = serializers.CharField()


class StatusOut(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=["operational", "maintenance", "degraded", "partial_outage", "major_outage"]
    )
    updated_at = serializers.DateTimeField()
    incidents = StatusIncident(many=True)
    maintenance = StatusMaintenance(many=True)
    alternatives = StatusAlternatives()


class ChannelChoices(serializers.Serializer):
    openapi_closed = True  # preferences_update refuses an unknown channel (400)

    in_app = serializers.BooleanField(required=False, help_text="Always true: the inbox cannot be turned off.")
    email = serializers.BooleanField(required=False)
    sms = serializers.BooleanField(required=False)
    push = serializers.BooleanField(required=False)


_HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"


class QuietHoursOut(serializers.Serializer):
    start = serializers.RegexField(_HH_MM, help_text="HH:MM local time")
    end = serializers.RegexField(_HH_MM, help_text="HH:MM local time; not equal to start")
    timezone = serializers.RegexField(
        r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$", required=False, help_text="IANA name, default UTC"
    )


# `{event: {channel: bool}, quiet_hours}`: one field per event, so the schema lists them all.
NotificationPreferencesSchema = type(
    "NotificationPreferences",
    (serializers.Serializer,),
    {
        **{event.value: ChannelChoices(required=False) for event in PREFERENCE_EVENTS},
        "quiet_hours": QuietHoursOut(required=False, allow_null=True),
        "openapi_closed": True,  # preferences_update refuses an unknown event (400)
    },
)
