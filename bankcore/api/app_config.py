"""GET /api/v1/app-config: versions, store and feature flags for one platform (API.md, "The app itself")."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bankcore.app_config import PLATFORMS, app_config


class AppConfigOutput(serializers.Serializer):
    min_supported_version = serializers.CharField(allow_null=True)
    latest_version = serializers.CharField(allow_null=True)
    force_update = serializers.BooleanField(help_text="True when `version` is below the minimum supported.")
    store_url = serializers.URLField(allow_null=True)
    flags = serializers.DictField(child=serializers.BooleanField(), help_text="`{name: on}` for every flag.")


class AppConfigView(APIView):
    """No token needed; with one, each flag is this user's answer (stable per user as a rollout grows).

    Always served, even to an app below the minimum version (it learns here that it must update).
    """

    permission_classes = [AllowAny]

    def perform_authentication(self, request: Request) -> None:
        # An expired token must not hide the config from an app starting up: it is read as anonymous.
        try:
            request.user  # noqa: B018 - authenticates
        except exceptions.AuthenticationFailed:
            request.user = AnonymousUser()
            request.auth = None

    @extend_schema(
        operation_id="app_config",
        summary="Supported versions, store URL and feature flags for the app",
        parameters=[
            OpenApiParameter("platform", str, required=True, enum=list(PLATFORMS)),
            OpenApiParameter(
                "version",
                {"type": "string", "pattern": r"^([0-9]{1,9}(\.[0-9]{1,9}){0,3})?$", "example": "1.2.3"},
                description="The app's version, e.g. 1.2.3 (for force_update).",
            ),
        ],
        responses={200: AppConfigOutput},
    )
    def get(self, request: Request) -> Response:
        platform = request.query_params.get("platform", "").strip().lower()
        if platform not in PLATFORMS:
            raise serializers.ValidationError({"platform": [f"One of {', '.join(PLATFORMS)}."]})
        version = request.query_params.get("version", "").strip() or None
        return Response(app_config(platform=platform, version=version, user=request.user))
