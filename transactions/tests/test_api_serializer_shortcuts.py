"""TransferInput.validated / TransferOutput.represent give what a fresh DRF serializer gives.

The transfer endpoint reuses one bound set of serializer fields per class (see
bankcore/api/serializers.py); these prove the answers, and every error, are unchanged.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from rest_framework import serializers

from accounts.models import BankAccount
from transactions.api.serializers import StandingOrderInput, TransferInput, TransferOutput
from transactions.models import Transaction

IBAN = "DE89370400440532013000"
SOURCE = "0192b7a4-1c2d-7e3f-8a9b-0c1d2e3f4a5b"


def _errors(serializer_class, data):
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return None, serializer.validated_data
    return serializer.errors, None


GOOD = {"source_account": SOURCE, "destination": IBAN, "amount": "12.50", "currency": "EUR"}


@pytest.mark.parametrize(
    "data",
    [
        GOOD,
        {**GOOD, "description": "  Rent share  ", "step_up_token": " tok "},
        {**GOOD, "description": "   ", "step_up_token": ""},
        {**GOOD, "destination": "de89 3704 0044 0532 0130 00", "source_account": SOURCE.upper()},
        {**GOOD, "source_account": SOURCE.replace("-", "")},
        {**GOOD, "description": "Miete für März", "unknown": [1, 2]},
        {**GOOD, "amount": "1000"},
        {**GOOD, "source_account": 12345},
    ],
)
def test_valid_input_gives_the_serializers_validated_data(data):
    errors, expected = _errors(TransferInput, data)
    assert errors is None
    assert TransferInput.validated(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        {},
        [],
        "text",
        None,
        {**GOOD, "source_account": "not-a-uuid"},
        {**GOOD, "source_account": 12.5},
        {**GOOD, "source_account": None},
        {**GOOD, "destination": "DE00370400440532013000"},
        {**GOOD, "destination": ""},
        {**GOOD, "destination": 42},
        {**GOOD, "amount": 12.5},
        {**GOOD, "amount": "1.005"},
        {**GOOD, "amount": "0"},
        {**GOOD, "currency": "XXX"},
        {**GOOD, "currency": None},
        {**GOOD, "description": "x" * 141},
        {**GOOD, "description": "nul\x00"},
        {**GOOD, "description": None},
        {**GOOD, "step_up_token": "t" * 513},
        {key: value for key, value in GOOD.items() if key != "amount"},
    ],
)
def test_invalid_input_raises_exactly_the_serializers_errors(data):
    errors, _ = _errors(TransferInput, data)
    assert errors is not None
    with pytest.raises(serializers.ValidationError) as raised:
        TransferInput.validated(data)
    assert raised.value.detail == errors


def test_standing_order_validate_errors_still_come_from_the_serializer():
    data = {**GOOD, "frequency": "weekly", "day": 9, "start_date": "2026-01-10", "end_date": "2026-01-01"}
    errors, _ = _errors(StandingOrderInput, data)
    with pytest.raises(serializers.ValidationError) as raised:
        StandingOrderInput.validated(data)
    assert raised.value.detail == errors and set(errors) == {"day", "end_date"}
    good = {**data, "day": 3, "end_date": None}
    assert StandingOrderInput.validated(good) == _errors(StandingOrderInput, good)[1]


@pytest.mark.parametrize(
    "created_at",
    [datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)],
)
@pytest.mark.parametrize("description", ["Rent", ""])
def test_output_is_the_serializers_data(created_at, description):
    transfer = Transaction(
        id=uuid.uuid4(),
        kind="transfer",
        status="posted",
        currency="EUR",
        amount=1250,
        description=description,
        source_account_id=uuid.uuid4(),
        destination_account=BankAccount(id=uuid.uuid4(), iban=IBAN, currency="EUR"),
        created_at=created_at,
    )
    assert TransferOutput.represent(transfer) == TransferOutput(transfer).data
    transfer.source_account_id = None
    transfer.description = None
    assert TransferOutput.represent(transfer) == TransferOutput(transfer).data
