"""Identity endpoints: thin views that parse, call one service, and serialize."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api import identity_serializers as s
from accounts.api.throttles import AUTH_THROTTLES
from accounts.exceptions import (
    AccountLocked,
    InvalidCredentials,
    MfaRequired,
    SessionRevoked,
    StepUpRequired,
    TotpAlreadyEnabled,
)
from accounts.models import Device, User
from accounts.services import authentication, contacts, devices, sessions, step_up, two_factor, users
from accounts.services.contacts import InvalidContactCode
from bankcore.api.schema import raises

_NO_CONTENT = OpenApiResponse(description="Done; no body.")


def _valid(serializer_class: type[serializers.Serializer], request: Request, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _session_id(request: Request) -> str | None:
    token: Any = request.auth
    return str(token.get(sessions.SESSION_CLAIM)) if token is not None else None


def _customer(request: Request) -> User:
    """The signed-in user (the view's IsAuthenticated permission guarantees one)."""
    assert isinstance(request.user, User)
    return request.user


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = AUTH_THROTTLES

    @extend_schema(tags=["identity"], request=s.RegisterInput, responses={201: s.UserOutput})
    def post(self, request: Request) -> Response:
        user = users.user_register(**_valid(s.RegisterInput, request))
        return Response(s.UserOutput(user).data, status=status.HTTP_201_CREATED)


class TokenView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = AUTH_THROTTLES

    @raises(InvalidCredentials, MfaRequired, AccountLocked)
    @extend_schema(
        tags=["identity"],
        request=s.TokenInput,
        responses={200: s.TokenPairOutput},
        description="Password login. With TOTP enabled answers 401 `mfa_required` with `details.mfa_token` "
        "(valid 5 minutes, once) to send to /auth/token/mfa. Any wrong e-mail or password: 401 "
        "`invalid_credentials`; 5 in a row lock the account (403 `account_locked`).",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.TokenInput, request)
        return Response(authentication.password_login(**data))


class MfaTokenView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = AUTH_THROTTLES

    @raises(InvalidCredentials, AccountLocked)
    @extend_schema(tags=["identity"], request=s.MfaTokenInput, responses={200: s.TokenPairOutput})
    def post(self, request: Request) -> Response:
        return Response(authentication.mfa_login(**_valid(s.MfaTokenInput, request)))


class RefreshView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = AUTH_THROTTLES

    @raises(SessionRevoked)
    @extend_schema(
        tags=["identity"],
        request=s.RefreshInput,
        responses={200: s.TokenPairOutput},
        description="Rotates: the refresh token sent is spent. Sending a spent one again ends the whole login "
        "(every token from it) and answers 401.",
    )
    def post(self, request: Request) -> Response:
        return Response(sessions.session_refresh(**_valid(s.RefreshInput, request)))


class LogoutView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = AUTH_THROTTLES

    @raises(SessionRevoked)
    @extend_schema(tags=["identity"], request=s.RefreshInput, responses={204: _NO_CONTENT})
    def post(self, request: Request) -> Response:
        sessions.session_logout(**_valid(s.RefreshInput, request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(tags=["identity"], responses={200: s.UserOutput})
    def get(self, request: Request) -> Response:
        return Response(s.UserOutput(_customer(request)).data)

    @raises(StepUpRequired)
    @extend_schema(
        tags=["identity"],
        request=s.ProfileInput,
        responses={200: s.UserOutput},
        description="A contact change (email, phone, notification_email, notification_phone) needs `step_up_token` "
        "(purpose `contact_change`, payee = the new value), else 403 `step_up_required`; the current contacts are "
        "told, a code goes to the new one, and the change shows in `pending_contacts` until confirmed.",
    )
    def patch(self, request: Request) -> Response:
        changes = _valid(s.ProfileInput, request, partial=True)
        token = changes.pop("step_up_token", "") or None
        user = users.profile_update(
            user=_customer(request), actor=_customer(request), changes=changes, step_up_token=token
        )
        return Response(s.UserOutput(user).data)


class ContactConfirmView(APIView):
    permission_classes = [IsAuthenticated]
    throttle_classes = AUTH_THROTTLES

    @raises(InvalidContactCode)
    @extend_schema(
        tags=["identity"],
        request=s.ContactConfirmInput,
        responses={200: s.UserOutput},
        description="Apply a pending contact change with the code sent to the new contact (valid 30 minutes, 5 tries).",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.ContactConfirmInput, request)
        user = contacts.contact_change_confirm(user=_customer(request), field=data["field"], code=data["code"])
        return Response(s.UserOutput(user).data)


class PasswordView(APIView):
    permission_classes = [IsAuthenticated]
    throttle_classes = AUTH_THROTTLES

    @raises(InvalidCredentials, AccountLocked)
    @extend_schema(
        tags=["identity"],
        request=s.PasswordChangeInput,
        responses={204: _NO_CONTENT},
        description="Changes the password and ends every other session (this one stays).",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.PasswordChangeInput, request)
        users.password_change(user=_customer(request), keep_session_id=_session_id(request), **data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TotpView(APIView):
    permission_classes = [IsAuthenticated]
    throttle_classes = AUTH_THROTTLES

    @raises(TotpAlreadyEnabled)
    @extend_schema(tags=["identity"], request=None, responses={201: s.TotpEnrolOutput})
    def post(self, request: Request) -> Response:
        return Response(two_factor.totp_enrol(user=_customer(request)), status=status.HTTP_201_CREATED)

    @raises(InvalidCredentials, AccountLocked)
    @extend_schema(
        tags=["identity"],
        request=s.CodeInput,
        responses={204: _NO_CONTENT},
        description="Turns TOTP off; needs a current TOTP or backup code.",
    )
    def delete(self, request: Request) -> Response:
        two_factor.totp_disable(user=_customer(request), **_valid(s.CodeInput, request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TotpConfirmView(APIView):
    permission_classes = [IsAuthenticated]
    throttle_classes = AUTH_THROTTLES

    @extend_schema(tags=["identity"], request=s.CodeInput, responses={200: s.BackupCodesOutput})
    def post(self, request: Request) -> Response:
        codes = two_factor.totp_confirm(user=_customer(request), **_valid(s.CodeInput, request))
        return Response({"backup_codes": codes})


class DeviceListView(generics.ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = s.DeviceOutput
    keyset_ordering = ("-id",)

    def get_queryset(self) -> QuerySet[Device]:
        return Device.objects.filter(user=_customer(self.request), revoked_at__isnull=True)

    @extend_schema(tags=["identity"])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["identity"], request=s.DeviceInput, responses={201: s.DeviceOutput})
    def post(self, request: Request) -> Response:
        device = devices.device_register(user=_customer(request), **_valid(s.DeviceInput, request))
        return Response(s.DeviceOutput(device).data, status=status.HTTP_201_CREATED)


class DeviceDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["identity"],
        request=s.DeviceUpdateInput,
        responses={200: s.DeviceOutput},
        description="Update name, app version or push token (e.g. after FCM/APNs rotated it).",
    )
    def patch(self, request: Request, device_id: Any) -> Response:
        device = devices.device_for_user(user=_customer(request), device_id=device_id)
        changes = _valid(s.DeviceUpdateInput, request, partial=True)
        device = devices.device_update(device=device, actor=_customer(request), changes=changes)
        return Response(s.DeviceOutput(device).data)

    @extend_schema(tags=["identity"], responses={204: _NO_CONTENT})
    def delete(self, request: Request, device_id: Any) -> Response:
        device = devices.device_for_user(user=_customer(request), device_id=device_id)
        devices.device_revoke(device=device, actor=_customer(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceChallengeView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = AUTH_THROTTLES

    @raises(InvalidCredentials, AccountLocked)
    @extend_schema(tags=["identity"], request=s.DeviceChallengeInput, responses={200: s.DeviceChallengeOutput})
    def post(self, request: Request) -> Response:
        challenge, expires_at = devices.device_challenge_issue(**_valid(s.DeviceChallengeInput, request))
        return Response(s.DeviceChallengeOutput({"challenge": challenge, "expires_at": expires_at}).data)


class DeviceTokenView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = AUTH_THROTTLES

    @raises(InvalidCredentials, AccountLocked)
    @extend_schema(tags=["identity"], request=s.DeviceTokenInput, responses={200: s.TokenPairOutput})
    def post(self, request: Request) -> Response:
        return Response(authentication.device_login(**_valid(s.DeviceTokenInput, request)))


class StepUpView(APIView):
    permission_classes = [IsAuthenticated]
    throttle_classes = AUTH_THROTTLES

    @raises(InvalidCredentials, AccountLocked)
    @extend_schema(
        tags=["identity"],
        request=s.StepUpInput,
        responses={200: s.StepUpOutput},
        description="A step-up token valid 5 minutes, once, for exactly this purpose, amount, currency and payee.",
    )
    def post(self, request: Request) -> Response:
        token, expires_at = step_up.step_up_issue(user=_customer(request), **_valid(s.StepUpInput, request))
        return Response(s.StepUpOutput({"step_up_token": token, "expires_at": expires_at}).data)
