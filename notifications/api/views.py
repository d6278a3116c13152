"""Inbox, preferences and the public status: parse, authorise, call one service."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bankcore.api.inputs import query_boolean
from bankcore.api.pagination import KeysetPagination
from bankcore.api.schema import page_parameters
from notifications import selectors, services
from notifications.api.serializers import (
    NotificationOut,
    NotificationPageOut,
    NotificationPreferencesSchema,
    StatusOut,
)


class NotificationListView(APIView):
    keyset_ordering = ("-id",)

    @extend_schema(
        operation_id="notifications_list",
        parameters=[
            OpenApiParameter("unread", OpenApiTypes.BOOL, description="`true`: only unread notifications."),
            *page_parameters(),
        ],
        responses=NotificationPageOut,
    )
    def get(self, request: Request) -> Response:
        unread_only = bool(query_boolean(request, "unread"))
        paginator = KeysetPagination()
        page = paginator.paginate_queryset(
            selectors.inbox(user=request.user, unread_only=unread_only), request, view=self
        )
        return Response(
            {
                "results": NotificationOut(page, many=True).data,
                "next": paginator.next_cursor,
                "unread": selectors.unread_count(user=request.user),
            }
        )


class NotificationReadView(APIView):
    @extend_schema(operation_id="notifications_read", request=None, responses={204: None})
    def post(self, request: Request, notification_id: UUID) -> Response:
        services.notification_mark_read(user=request.user, notification_id=notification_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class NotificationReadAllView(APIView):
    @extend_schema(operation_id="notifications_read_all", request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        services.notifications_mark_all_read(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class NotificationPreferencesView(APIView):
    @extend_schema(
        operation_id="notification_preferences_get",
        description="`{event: {channel: bool}}` for every event plus `quiet_hours`. Security alerts are always on.",
        responses={200: NotificationPreferencesSchema},
    )
    def get(self, request: Request) -> Response:
        return Response(services.preferences_get(user=request.user))

    @extend_schema(
        operation_id="notification_preferences_update",
        request=NotificationPreferencesSchema,
        responses={200: NotificationPreferencesSchema},
        examples=[OpenApiExample("turn off SMS for low balance", value={"low_balance": {"sms": False}})],
    )
    def patch(self, request: Request) -> Response:
        data: Any = request.data
        return Response(services.preferences_update(user=request.user, changes=data))


class StatusView(APIView):
    """Public service status: the banner the app shows when something is down."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(operation_id="service_status", auth=[], responses={200: OpenApiResponse(StatusOut)})
    def get(self, request: Request) -> Response:
        response = Response(selectors.service_status())
        response["Cache-Control"] = f"public, max-age={settings.NOTIFICATIONS_STATUS_CACHE_SECONDS}"
        return response
