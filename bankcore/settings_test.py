"""Settings for the test suite: bankcore.settings on real PostgreSQL and Redis.

DATABASE_URL and REDIS_URL default to the local servers. A service that does not answer is
recorded in MISSING_SERVICES, never replaced by another: conftest.py stops the run naming it
(or, with ALLOW_MISSING_SERVICES=1, skips the tests that need it).
"""

import os
import socket
from urllib.parse import urlparse

os.environ.setdefault("BANKCORE_ENV", "test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bankcore")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")


def _answers(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


MISSING_SERVICES: dict[str, str] = {}
if not _answers(os.environ["DATABASE_URL"], 5432):
    MISSING_SERVICES["postgres"] = f"PostgreSQL not reachable at {os.environ['DATABASE_URL']}"
if not _answers(os.environ["REDIS_URL"], 6379):
    MISSING_SERVICES["redis"] = f"Redis not reachable at {os.environ['REDIS_URL']}"

from bankcore.settings import *  # noqa: E402,F403
from bankcore.settings import REST_FRAMEWORK  # noqa: E402

# Argon2 is deliberately slow; tests that check hashing ask for it explicitly.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
]
# Throttle rates generous enough for suites; throttle tests override them.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"auth_ip": "10000/min", "auth_user": "10000/min", "user": "100000/min"},
}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# The suite migrates as the owner (DATABASE_URL's user) and then runs as a runtime login role,
# given only what the app needs by `grant_app_role` (conftest.py), like production.
DATABASE_OWNER = DATABASES["default"].get("USER", "")  # noqa: F405
DATABASE_APP_ROLE = os.environ.get("DATABASE_APP_ROLE", "bankcore_app")

# In-process tests render pages with `{% static %}` but nothing ran collectstatic: plain names, and
# WhiteNoise looks files up through the finders per request. A real server (bankcore.testing.
# GunicornServer) uses the production storage on files collected for it.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
