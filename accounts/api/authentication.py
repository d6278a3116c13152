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
from rest_framework_simplejwt.exceptions import AuthenticationFailed

from accounts.services.sessions import SESSION_CLAIM, session_is_live


class SessionJWTAuthentication(JWTAuthentication):
    def get_user(self, validated_token: Any) -> Any:
        user = super().get_user(validated_token)
        session_id = validated_token.get(SESSION_CLAIM)
        if not session_id or not session_is_live(session_id=session_id, user_id=user.pk):
            raise AuthenticationFailed("This session has ended. Log in again.", code="session_revoked")
        return user


class SessionJWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.SessionJWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
