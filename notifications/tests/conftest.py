"""Provider servers on loopback and a Celery worker wired to them, for notifications tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from bankcore.testing import free_port
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


class OwnRedis:
    """A redis-server of our own on a loopback port, for outage tests: kill it, freeze it,
    bring it back (empty, no persistence) on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        # An external server like the machine's own Redis and PostgreSQL: it keeps the real
        # clock even when the suite runs under libfaketime (LD_PRELOAD), which hangs redis-server.
        env = {name: value for name, value in os.environ.items() if name not in ("LD_PRELOAD", "FAKETIME")}
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        wait_for(lambda: self._answers(), timeout=10, interval=0.05)
        return self

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: the port refuses connections, open connections are reset."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but never answered (a hung server)."""
        if self.process:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process:
            self.process.send_signal(signal.SIGCONT)

    def restart(self) -> OwnRedis:
        self.kill()
        return self.start()

    def stop(self) -> None:
        self.thaw()
        self.kill()


def _point_this_process_at(url: str, settings: Any) -> None:
    """Cache, flags and Celery broker of this process (and of workers started from now on:
    `process_env` reads these settings) on `url`."""
    from bankcore.celery import app
    from bankcore.redis_client import forget_shared_redis

    settings.REDIS_URL = url
    settings.CELERY_BROKER_URL = url
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": url}}  # Django drops its clients
    forget_shared_redis()
    app.conf.broker_url = url
    app._after_fork()  # Celery's own reset of the producer and connection pools


@pytest.fixture
def own_redis(settings: Any) -> Iterator[OwnRedis]:
    """This process (cache, flags, Celery broker) and the workers it starts use a Redis of
    our own, which the test may kill, freeze and restart. Restored afterwards."""
    server = OwnRedis().start()
    saved = settings.CELERY_BROKER_URL
    _point_this_process_at(server.url, settings)
    try:
        yield server
    finally:
        server.stop()
        from bankcore.celery import app
        from bankcore.redis_client import forget_shared_redis

        forget_shared_redis()
        app.conf.broker_url = saved
        app._after_fork()


@pytest.fixture
def kill_worker_mid_send(providers: Any, make_worker: Callable[..., Any], settings: Any) -> Callable[..., Any]:
    """`kill(channel, record)`: a worker of its own sends what `record()` commits; the
    `channel`'s provider accepts the message and holds its answer; the worker is SIGKILLed
    while that request is on the wire (it never learns the outcome). Returns once the
    row's lease (NOTIFICATIONS_SEND_LEASE_SECONDS) has run out. Delivery tasks go to QUEUE again."""
    from django.utils import timezone

    from notifications.models import Delivery
    from notifications.tests.servers import Answer

    def kill(channel: str, record: Callable[[], Any]) -> None:
        queue = f"{QUEUE}-doomed"
        held = {"sms": providers.sms, "push": providers.push, "email": providers.smtp}[channel]
        if channel == "email":
            providers.smtp.delay_next_reply = 60
        else:
            body = {"id": "sms-at-kill"} if channel == "sms" else {"name": "projects/bankcore/messages/at-kill"}
            held.script.append(Answer(201 if channel == "sms" else 200, body, delay=60))
        settings.NOTIFICATIONS_QUEUE = queue
        waiting = held.in_flight  # answers still held for an earlier test's killed worker
        # Long client timeouts: the request is still waiting for its answer when the kill comes.
        worker = make_worker(queue, NOTIFICATIONS_HTTP_TIMEOUT="60", EMAIL_TIMEOUT="60").start()
        try:
            record()
            wait_for(lambda: held.in_flight > waiting, timeout=30, interval=0.01)
        finally:
            worker.kill()
            settings.NOTIFICATIONS_QUEUE = QUEUE
        assert Delivery.objects.filter(channel=channel, status="sending").exists()
        wait_for(
            lambda: not Delivery.objects.filter(channel=channel, status="sending", lease_until__gte=timezone.now()),
            timeout=settings.NOTIFICATIONS_SEND_LEASE_SECONDS + 5,
        )

    return kill
