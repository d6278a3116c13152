"""Provider servers on loopback and a Celery worker wired to them, for notifications tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from notifications.tests.servers import HttpProvider, SmtpSink

# Our own queue name, so no other test worker on this machine eats our tasks.
QUEUE = f"notifications-test-{os.getpid()}"


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def sms_gateway() -> Iterator[HttpProvider]:
    server = HttpProvider("sms").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def push_service() -> Iterator[HttpProvider]:
    server = HttpProvider("push").start()
    yield server
    server.stop()


def provider_settings(smtp: SmtpSink, sms: HttpProvider, push: HttpProvider) -> dict[str, str]:
    return {
        "NOTIFICATIONS_QUEUE": QUEUE,
        "NOTIFICATIONS_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp.port),
        "EMAIL_TIMEOUT": "2",
        "SMS_API_URL": sms.url,
        "SMS_API_TOKEN": "sms-test-token",
        "NOTIFICATIONS_SMS_PROVIDER": "notifications.providers.HttpSmsProvider",
        "PUSH_API_URL": push.url,
        "PUSH_API_TOKEN": "push-test-token",
        "NOTIFICATIONS_PUSH_PROVIDER": "notifications.providers.FcmPushProvider",
        "NOTIFICATIONS_HTTP_TIMEOUT": "0.5",
        "NOTIFICATIONS_RETRY_BASE_SECONDS": "0.2",
        "NOTIFICATIONS_RETRY_MAX_SECONDS": "1",
        "NOTIFICATIONS_MAX_ATTEMPTS": "4",
        "NOTIFICATIONS_SEND_LEASE_SECONDS": "3",
        "NOTIFICATIONS_FANOUT_BATCH_SIZE": "200",
    }


_TYPED = {
    "EMAIL_PORT": int,
    "EMAIL_TIMEOUT": float,
    "NOTIFICATIONS_HTTP_TIMEOUT": float,
    "NOTIFICATIONS_RETRY_BASE_SECONDS": float,
    "NOTIFICATIONS_RETRY_MAX_SECONDS": float,
    "NOTIFICATIONS_MAX_ATTEMPTS": int,
    "NOTIFICATIONS_SEND_LEASE_SECONDS": float,
    "NOTIFICATIONS_FANOUT_BATCH_SIZE": int,
}


@pytest.fixture
def providers(settings: Any, smtp_sink: SmtpSink, sms_gateway: HttpProvider, push_service: HttpProvider) -> Any:
    """This process's settings point at the loopback providers; the servers start empty."""
    for key, value in provider_settings(smtp_sink, sms_gateway, push_service).items():
        setattr(settings, key, _TYPED.get(key, str)(value))
    for server in (smtp_sink, sms_gateway, push_service):
        server.reset()
    return type("Providers", (), {"smtp": smtp_sink, "sms": sms_gateway, "push": push_service})


@pytest.fixture(scope="session")
def notifications_worker(
    django_db_setup: Any,
    django_db_blocker: Any,
    smtp_sink: SmtpSink,
    sms_gateway: HttpProvider,
    push_service: HttpProvider,
) -> Iterator[Any]:
    """A real Celery worker consuming our queue, its providers pointed at the loopback servers."""
    from bankcore.testing import CeleryWorker, process_env

    env = process_env(**provider_settings(smtp_sink, sms_gateway, push_service))
    with django_db_blocker.unblock():
        worker = CeleryWorker(queues=[QUEUE], env=env).start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def make_worker(smtp_sink: SmtpSink, sms_gateway: HttpProvider, push_service: HttpProvider) -> Callable[[], Any]:
    """Start an extra worker (for crash tests) with the same wiring."""
    from bankcore.testing import CeleryWorker, process_env

    def make(queue: str, **overrides: str) -> Any:
        wiring = {**provider_settings(smtp_sink, sms_gateway, push_service), "NOTIFICATIONS_QUEUE": queue}
        return CeleryWorker(queues=[queue], env=process_env(**(wiring | overrides)))

    return make


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
