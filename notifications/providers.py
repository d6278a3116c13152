"""Channel providers: how a rendered delivery leaves the bank.

Chosen by settings (NOTIFICATIONS_*_PROVIDER, dotted paths). Each `send` returns the
provider's message id or raises `TransientProviderError` (retry later) or
`PermanentProviderError` (cannot succeed: dead letter). Every network call has a timeout.
"""

from __future__ import annotations

import abc
import hashlib
import json
import smtplib
import uuid
from pathlib import Path
from typing import Any, Protocol

import requests
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils import timezone
from django.utils.module_loading import import_string

from notifications.push_tokens import PushTarget, active_push_targets, active_push_targets_of, deactivate_push_token


class ProviderError(Exception):
    """A channel provider refused or failed a send."""


class TransientProviderError(ProviderError):
    """Worth retrying: timeouts, 5xx, 429, connection refused."""


class PermanentProviderError(ProviderError):
    """Will never succeed as it is: invalid number, rejected address, no device."""


class Provider(Protocol):
    """`send` one delivery. A provider may also have `prepare(user_ids=...)`, called before a
    chunk of sends of its channel to read what they all need at once."""

    def send(self, delivery: Any) -> str: ...


def provider_for(channel: str) -> Provider:
    path = {
        "email": "notifications.providers.EmailProvider",
        "sms": settings.NOTIFICATIONS_SMS_PROVIDER,
        "push": settings.NOTIFICATIONS_PUSH_PROVIDER,
    }[channel]
    return import_string(path)()


def _outbox(name: str) -> Path:
    directory = Path(settings.NOTIFICATIONS_OUTBOX_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


def _append_jsonl(name: str, record: dict[str, Any]) -> None:
    with _outbox(name).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")


# --- e-mail -----------------------------------------------------------------------------
def email_message_id(delivery: Any) -> str:
    """The Message-ID of a delivery row: the same for every attempt and resend of it."""
    return f"<{delivery.id}@{settings.BANK_CODE}.bankcore>"


class EmailProvider:
    """Django's e-mail backend (SMTP in production, files in var/outbox/email by default).

    SMTP has no idempotency: a message whose send was cut off may or may not have been
    accepted. Each delivery row has one stable Message-ID (every attempt and resend of the
    row carries the same one), so a second copy can be recognised and dropped by mail
    stores and clients that de-duplicate on it.
    """

    def send(self, delivery: Any) -> str:
        message_id = email_message_id(delivery)
        message = EmailMultiAlternatives(
            subject=delivery.subject,
            body=delivery.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[delivery.recipient],
            headers={"Message-ID": message_id, "X-Bankcore-Delivery": delivery.delivery_key},
            connection=get_connection(settings.NOTIFICATIONS_EMAIL_BACKEND, timeout=settings.EMAIL_TIMEOUT),
        )
        if delivery.html_body:
            message.attach_alternative(delivery.html_body, "text/html")
        try:
            message.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            error = f"recipient refused: {exc.recipients}"
            if codes and all(500 <= code < 600 for code in codes):
                raise PermanentProviderError(error) from exc
            raise TransientProviderError(error) from exc  # 4xx: greylisting, mailbox busy
        except smtplib.SMTPResponseException as exc:
            error = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
            if 500 <= exc.smtp_code < 600:
                raise PermanentProviderError(error) from exc
            raise TransientProviderError(error) from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TransientProviderError(f"SMTP: {exc!r}") from exc
        return message_id


# --- SMS --------------------------------------------------------------------------------
class HttpSmsProvider:
    """An SMS gateway's REST API: POST {SMS_API_URL}/messages with JSON {to, from, text}.

    Bearer token auth; our delivery key travels as `Idempotency-Key` on every attempt of
    the same row, so a gateway that honours it answers a repeat with the first message's
    id instead of sending it again. 2xx answers `{"id": ...}`; 408/429/5xx are retried;
    any other 4xx (invalid number) is final.
    """

    def send(self, delivery: Any) -> str:
        try:
            response = requests.post(
                settings.SMS_API_URL.rstrip("/") + "/messages",
                json={"to": delivery.recipient, "from": settings.SMS_SENDER, "text": delivery.body},
                headers={
                    "Authorization": f"Bearer {settings.SMS_API_TOKEN}",
                    "Idempotency-Key": delivery.delivery_key,
                },
                timeout=settings.NOTIFICATIONS_HTTP_TIMEOUT,
            )
        except requests.Timeout as exc:
            raise TransientProviderError(f"SMS provider timeout: {exc}") from exc
        except requests.RequestException as exc:
            raise TransientProviderError(f"SMS provider unreachable: {exc}") from exc
        return _http_result(response, "SMS provider", lambda body: str(body.get("id", "")))


def _http_result(response: requests.Response, who: str, message_id: Any) -> str:
    if 200 <= response.status_code < 300:
        try:
            return message_id(response.json())
        except ValueError:
            return ""
    error = f"{who} answered {response.status_code}: {response.text[:300]}"
    if response.status_code in (408, 425, 429) or response.status_code >= 500:
        raise TransientProviderError(error)
    raise PermanentProviderError(error)


class FileSmsProvider:
    """Embedded default: appends each SMS to var/outbox/sms.jsonl."""

    def send(self, delivery: Any) -> str:
        message_id = f"file-{uuid.uuid4()}"
        _append_jsonl(
            "sms.jsonl",
            {
                "id": message_id,
                "to": delivery.recipient,
                "from": settings.SMS_SENDER,
                "text": delivery.body,
                "at": timezone.now().isoformat(),
            },
        )
        return message_id


# --- push -------------------------------------------------------------------------------
_INVALID_TOKEN_STATUSES = {"UNREGISTERED", "INVALID_ARGUMENT", "NOT_FOUND"}


class _PushProviderBase(abc.ABC):
    """Sends one delivery to every active device of the user, each device at most once.

    Devices already reached are remembered in `delivery.details["push_sent"]`, so a
    retry after a partial failure only sends to the rest.
    """

    def __init__(self) -> None:
        self._targets: dict[str, list[PushTarget]] | None = None

    def prepare(self, *, user_ids: list[Any]) -> None:
        """Read the device tokens of every user in one query, for the sends to them that follow."""
        self._targets = active_push_targets_of(user_ids=user_ids)

    def _active_targets(self, user_id: Any) -> list[PushTarget]:
        if self._targets is not None and str(user_id) in self._targets:
            return list(self._targets[str(user_id)])
        return active_push_targets(user_id=user_id)

    def _retire(self, user_id: Any, target: PushTarget) -> None:
        deactivate_push_token(device_id=target.device_id, token=target.token)
        if self._targets is not None and target in self._targets.get(str(user_id), []):
            self._targets[str(user_id)].remove(target)  # a later delivery in the batch skips it too

    def send(self, delivery: Any) -> str:
        sent: dict[str, str] = dict(delivery.details.get("push_sent", {}))
        targets = [t for t in self._active_targets(delivery.user_id) if t.device_id not in sent]
        if not targets and not sent:
            raise PermanentProviderError("no device with an active push token")
        invalid: list[str] = delivery.details.setdefault("push_invalid", [])
        transient: TransientProviderError | None = None
        for target in targets:
            try:
                sent[target.device_id] = self.send_one(delivery, target.token)
            except _InvalidToken:
                self._retire(delivery.user_id, target)
                invalid.append(target.device_id)
            except TransientProviderError as exc:
                transient = exc
            delivery.details["push_sent"] = sent
        if transient is not None:
            raise transient
        if not sent:
            raise PermanentProviderError("every push token was invalid (tokens deactivated)")
        return ",".join(sent.values())[:200]

    @abc.abstractmethod
    def send_one(self, delivery: Any, token: str) -> str:
        """Send to one device token; return the provider's message id. Raise _InvalidToken for dead tokens."""


class _InvalidToken(Exception):
    """The push service says this device token is dead; the token gets deactivated."""


def push_message_key(delivery: Any) -> str:
    """A stable key per delivery row: 32 hex characters of SHA-256 of the delivery key.

    Short and plain enough for every FCM v1 slot that collapses duplicates on the device:
    Android `notification.tag`, APNs `apns-collapse-id` (<= 64 bytes), Web Push `Topic`
    (<= 32 URL-safe characters). A resend of the same row carries the same key.
    """
    return hashlib.sha256(delivery.delivery_key.encode()).hexdigest()[:32]


class FcmPushProvider(_PushProviderBase):
    """FCM HTTP v1: POST {PUSH_API_URL}/v1/projects/{PUSH_PROJECT_ID}/messages:send.

    An UNREGISTERED / INVALID_ARGUMENT (404/400) answer deactivates that device's token.
    FCM has no idempotency key, so a resend is delivered again; every message therefore
    carries the delivery's stable key as the Android notification tag, the APNs collapse
    id and the Web Push topic (the device replaces the notification it shows instead of
    showing a second one) and as `data.message_key` (for the app to drop repeats).
    """

    def send_one(self, delivery: Any, token: str) -> str:
        url = f"{settings.PUSH_API_URL.rstrip('/')}/v1/projects/{settings.PUSH_PROJECT_ID}/messages:send"
        key = push_message_key(delivery)
        payload: dict[str, Any] = {
            "message": {
                "token": token,
                "notification": {"title": delivery.subject, "body": delivery.body},
                "data": {"event": delivery.event, "delivery_id": str(delivery.id), "message_key": key},
                "android": {"collapse_key": key, "notification": {"tag": key}},
                "apns": {"headers": {"apns-collapse-id": key}},
                "webpush": {"headers": {"Topic": key}},
            }
        }
        try:
            response = requests.post(
                url,
                json=payload,
                headers={"Authorization": f"Bearer {settings.PUSH_API_TOKEN}"},
                timeout=settings.NOTIFICATIONS_HTTP_TIMEOUT,
            )
        except requests.Timeout as exc:
            raise TransientProviderError(f"push provider timeout: {exc}") from exc
        except requests.RequestException as exc:
            raise TransientProviderError(f"push provider unreachable: {exc}") from exc
        if response.status_code in (400, 404):
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            codes = {error.get("status")} | {d.get("errorCode") for d in error.get("details", []) or []}
            if codes & _INVALID_TOKEN_STATUSES:
                raise _InvalidToken(str(codes))
        return _http_result(response, "push provider", lambda body: str(body.get("name", "")))


class FilePushProvider(_PushProviderBase):
    """Embedded default: appends each push to var/outbox/push.jsonl."""

    def send_one(self, delivery: Any, token: str) -> str:
        message_id = f"file-{uuid.uuid4()}"
        _append_jsonl(
            "push.jsonl",
            {
                "id": message_id,
                "token": token,
                "title": delivery.subject,
                "body": delivery.body,
                "at": timezone.now().isoformat(),
            },
        )
        return message_id
