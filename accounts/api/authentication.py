"""Bearer JWT authentication that also honours session revocation.

simplejwt checks signature (HS256 only, so `alg: none` and other algorithms are
refused), expiry and token type; on top, the token's login session (`fam` claim)
must still be live, so logout, refresh-token reuse, password change and device
revocation end access tokens at once rather than when they expire.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.services.sessions import SESSION_CLAIM, user_with_session_state


class SessionJWTAuthentication(JWTAuthentication):
    def get_user(self, validated_token: Any) -> Any:
        """simplejwt's checks (user exists, is active, password unchanged) plus a live session,
        with the user row and the session state read in one query."""
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken("Token contained no recognizable user identification") from exc
        session_id = validated_token.get(SESSION_CLAIM)
        if not session_id:
            raise AuthenticationFailed("This session has ended. Log in again.", code="session_revoked")
        found = user_with_session_state(user_id=user_id, session_id=session_id)
        if found is None:
            raise AuthenticationFailed("User not found", code="user_not_found")
        user, session_live = found
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed("User is inactive", code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed("The user's password has been changed.", code="password_changed")
        if not session_live:
            raise AuthenticationFailed("This session has ended. Log in again.", code="session_revoked")
        return user


class SessionJWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.SessionJWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
