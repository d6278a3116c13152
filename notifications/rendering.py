"""Turning an event and its free-form context into text for each channel.

Context keys are whatever the caller passed: templates must render when any is missing,
and nothing that looks like an account number leaves here unmasked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils import translation

# Keys whose string values are account or card identifiers: masked to the last 4.
_ACCOUNT_KEY = re.compile(r"iban|account|number|card|pan|destination|source|counterparty|payee|^to$|^from$", re.I)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,30}\b")
_LONG_DIGITS = re.compile(r"\d[\d ]{6,}\d")


def mask_account(value: str) -> str:
    """'DE89 3704 0044 0532 0130 00' -> '****3000'."""
    compact = re.sub(r"\s", "", value)
    return "****" + compact[-4:] if len(compact) > 4 else value


def _mask_text(key: str, text: str) -> str:
    text = _IBAN.sub(lambda m: mask_account(m.group(0)), text)
    if _ACCOUNT_KEY.search(key):
        text = _LONG_DIGITS.sub(lambda m: mask_account(m.group(0)), text)
    return text


def safe_context(context: dict[str, Any]) -> dict[str, Any]:
    """A copy of `context` fit to show a customer and to store: account numbers masked,
    money dicts (`{"amount": "12.50", "currency": "EUR"}`) flattened to "12.50 EUR"."""
    result: dict[str, Any] = {}
    for key, value in context.items():
        key = str(key)
        if isinstance(value, dict) and {"amount", "currency"} <= set(value):
            value = f"{value['amount']} {value['currency']}"
        if isinstance(value, dict):
            value = safe_context(value)
        elif isinstance(value, (list, tuple)):
            value = [_mask_text(key, str(item)) for item in value]
        elif isinstance(value, str):
            value = _mask_text(key, value)
        elif not isinstance(value, (int, float, bool)) and value is not None:
            value = _mask_text(key, str(value))
        result[key] = value
    return result


# --- SMS length (GSM 03.38) -----------------------------------------------------------
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")
# Typographic characters that would force a whole SMS into UCS-2 (70 chars a part).
_SMS_FRIENDLY = str.maketrans(
    {
        "\u2019": "'",
        "\u2018": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u2022": "*",
    }
)


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text)


def sms_segments(text: str) -> int:
    """How many SMS parts `text` costs: GSM-7 160/153 septets, else UCS-2 70/67 units."""
    if is_gsm7(text):
        length = len(text) + sum(1 for ch in text if ch in GSM7_EXTENDED)
        single, multi = 160, 153
    else:
        length = len(text.encode("utf-16-le")) // 2
        single, multi = 70, 67
    if length <= single:
        return 1
    return math.ceil(length / multi)


def fit_sms(text: str, max_segments: int) -> str:
    """`text` in GSM-friendly characters, shortened with '...' to at most `max_segments` parts."""
    text = " ".join(text.translate(_SMS_FRIENDLY).split())
    if sms_segments(text) <= max_segments:
        return text
    low, high = 0, len(text)
    while low < high:  # longest prefix that still fits with the marker
        mid = (low + high + 1) // 2
        if sms_segments(text[:mid].rstrip() + "...") <= max_segments:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + "..."


# --- Templates --------------------------------------------------------------------------
@dataclass(frozen=True)
class Rendered:
    title: str
    body: str
    html: str
    sms: str
    push_body: str


def _render(event: str, part: str, context: dict[str, Any], fallback: str | None = None) -> str:
    try:
        return render_to_string(f"notifications/events/{event}/{part}", context).strip()
    except TemplateDoesNotExist:
        if fallback is None:
            raise
        return fallback


def render_event(
    event: str, context: dict[str, Any], *, language: str | None = None, channels: Iterable[str] | None = None
) -> Rendered:
    """Title, plain body, HTML body, SMS text and push text for `event`.

    `context` must already be passed through `safe_context`. Templates use structured keys
    when present (amount, currency, to, ...), else the caller's `body`, else a generic text.
    With `channels`, the HTML part is rendered only for e-mail and the SMS text only for
    SMS (empty otherwise): notify() runs inside callers' transactions, so it does no more
    than needed.
    """
    wanted = set(channels) if channels is not None else {"email", "sms"}
    ctx = {"bank_name": settings.BANK_NAME, "support_phone": settings.SUPPORT_PHONE, **context}
    with translation.override(language or settings.LANGUAGE_CODE):
        # A caller's own title wins (it knows the case); the template is the localized default.
        given = context.get("title")
        # An event added to events.py before its templates still renders (never breaks the caller).
        generic = event.replace("_", " ").capitalize()
        template_title = _render(event, "title.txt", ctx, fallback=generic)
        title = " ".join((given if isinstance(given, str) and given.strip() else template_title).split())
        body = _render(event, "body.txt", ctx, fallback=str(context.get("body") or ""))
        sms = (
            _render(event, "sms.txt", ctx, fallback=f"{settings.BANK_NAME}: {title}. {body}") if "sms" in wanted else ""
        )
        html = (
            render_to_string("notifications/email.html", {**ctx, "title": title, "body": body})
            if "email" in wanted
            else ""
        )
    return Rendered(
        title=title[:200],
        body=body,
        html=html,
        sms=fit_sms(sms, settings.NOTIFICATIONS_SMS_MAX_SEGMENTS) if sms else "",
        push_body=" ".join(body.split())[:240],
    )
