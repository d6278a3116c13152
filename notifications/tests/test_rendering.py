"""Templates render with whatever context callers pass, never show account numbers, and SMS fit."""

from __future__ import annotations

import pytest

from notifications.events import Event
from notifications.rendering import fit_sms, is_gsm7, mask_account, render_event, safe_context, sms_segments


def test_account_numbers_are_masked_to_the_last_four_anywhere_in_the_context():
    shown = safe_context(
        {
            "iban": "DE89370400440532013000",
            "body": "Sent from DE89 3704 0044 0532 0130 00 today",
            "account_number": "12345678901",
            "counterparty": {"name": "Bob", "account": "GB33BUKB20201555555555"},
            "amount": {"amount": "12.50", "currency": "EUR"},
            "reference": "invoice 12345678",
            "to": "0012345678",
        }
    )
    assert shown["iban"] == "****3000"
    assert shown["body"] == "Sent from ****3000 today"
    assert shown["account_number"] == "****8901"
    assert shown["counterparty"] == {"name": "Bob", "account": "****5555"}
    assert shown["amount"] == "12.50 EUR"
    assert shown["to"] == "****5678"
    assert shown["reference"] == "invoice 12345678"  # not an account field: a reference stays readable
    assert mask_account("1234") == "1234"


@pytest.mark.parametrize("event", list(Event))
def test_every_event_renders_without_any_context(event):
    rendered = render_event(event.value, {})
    assert rendered.title
    assert "None" not in rendered.body and "None" not in rendered.sms
    assert sms_segments(rendered.sms) <= 3


def test_structured_transfer_context_renders_amount_and_masked_counterparty():
    shown = safe_context({"amount": "1,250.00", "currency": "EUR", "to": "DE89370400440532013000"})
    rendered = render_event(Event.TRANSFER_SENT.value, shown)
    assert rendered.body == "You sent 1,250.00 EUR to ****3000."
    assert "0532013000" not in rendered.html + rendered.sms + rendered.push_body


def test_caller_title_and_body_are_used_when_no_structured_fields():
    rendered = render_event(Event.LOW_BALANCE.value, safe_context({"title": "Low balance", "body": "Only 3.00 left"}))
    assert (rendered.title, rendered.body) == ("Low balance", "Only 3.00 left")


def test_html_part_escapes_customer_text():
    rendered = render_event(Event.PRODUCT_NEWS.value, {"message": "<script>x</script>"})
    assert "<script>" not in rendered.html
    assert rendered.body == "<script>x</script>"  # the plain part is plain text


def test_gsm7_segments_counted_like_a_carrier():
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2
    assert sms_segments("a" * 306) == 2 and sms_segments("a" * 307) == 3
    assert sms_segments("€" * 80) == 1  # extension characters take two septets
    assert sms_segments("€" * 81) == 2
    assert not is_gsm7("Привет") and sms_segments("ж" * 70) == 1 and sms_segments("ж" * 71) == 2


def test_long_sms_is_shortened_to_the_segment_budget_and_typography_kept_gsm7():
    text = fit_sms("It\u2019s down \u2013 " + "word " * 300, 2)
    assert text.endswith("...")
    assert sms_segments(text) == 2
    assert is_gsm7(text)


def test_an_event_without_templates_still_renders_from_the_callers_text():
    rendered = render_event("brand_new_event", {"body": "Something happened."})
    assert (rendered.title, rendered.body) == ("Brand new event", "Something happened.")
