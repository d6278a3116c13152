from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import authenticated_client
from transactions.tests.factories import CustomerFactory
from transactions.tests.gateway_fixture import gateway, gateway_simulator, settlement_worker  # noqa: F401 - fixtures


@pytest.fixture
def customer(db):
    return CustomerFactory()


@pytest.fixture
def other_customer(db):
    return CustomerFactory()


def client_for(user) -> APIClient:
    """An API client carrying the real JWT access token of a real login session of `user`."""
    return authenticated_client(user)


@pytest.fixture
def customer_client(customer):
    return client_for(customer)


def send_pending_notices() -> int:
    """What the Celery task does after COMMIT: turn queued ledger alerts into notifications."""
    from datetime import timedelta

    from transactions.services.notices import notices_sweep

    return notices_sweep(older_than=timedelta(0))
