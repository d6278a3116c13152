"""Customers' accounts that still live on the legacy core: linking them, and their balances.

Balances are read through the connector (integrations.legacy, a 0100 inquiry), served from the
cache for LEGACY_BALANCE_CACHE_SECONDS, and remembered on the link row (`last_ledger`,
`last_available`, `as_of`) whenever the core answers. While the core does not answer (down,
timing out, circuit open) the last known balance is shown with `stale=True`; a list of accounts
never waits more than LEGACY_BALANCE_WAIT_SECONDS for the core in total.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from accounts.models import LegacyAccountLink
from bankcore.audit import audit_record
from integrations.legacy.client import default_client
from integrations.legacy.errors import LegacyDeclined, LegacyError
from integrations.legacy.messages import LegacyBalance

logger = logging.getLogger(__name__)
INVALID_ACCOUNT = "14"
_CACHE_PREFIX = "legacy:balance:"
# Threads that read balances for account lists (a process-wide pool: no thread per request).
_readers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="legacy-balance")


class LegacyAccountUnknown(ValueError):
    """The core does not know this account (response code 14), or it is closed."""


class LegacyAccountAlreadyLinked(ValueError):
    """The legacy account is linked already (to this or another customer)."""


def legacy_iban(account_number: str) -> str:
    """The IBAN of legacy account `account_number` (DE, LEGACY_BANK_CODE, the 10 digits)."""
    return str(IBAN.generate("DE", bank_code=settings.LEGACY_BANK_CODE, account_code=account_number))


def legacy_account_number_of(iban: str) -> str | None:
    """The core's account number when `iban` names an account on the legacy core, else None."""
    try:
        parsed = IBAN(iban)
    except (SchwiftyException, ValueError):
        return None
    if parsed.country_code != "DE" or parsed.bank_code != settings.LEGACY_BANK_CODE:
        return None
    return str(parsed.account_code)


@dataclass(frozen=True)
class LegacyAccountBalance:
    """What the app shows for one linked legacy account."""

    link: LegacyAccountLink
    ledger: int | None
    available: int | None
    as_of: datetime | None
    stale: bool
    status: str


def legacy_link_record_balance(*, account_number: str, balance: LegacyBalance) -> None:
    """Remember the balances the core just reported (only if newer than what the row has).
    One conditional UPDATE; runs in the caller's transaction (or autocommit)."""
    LegacyAccountLink.objects.filter(account_number=account_number).filter(
        Q(as_of__isnull=True) | Q(as_of__lt=balance.as_of)
    ).update(last_ledger=balance.ledger, last_available=balance.available, as_of=balance.as_of)
    cache.set(_cache_key(account_number), _cached(balance), settings.LEGACY_BALANCE_CACHE_SECONDS)


def legacy_account_link(
    *, customer: Any, account_number: str, actor: Any = None, name: str = "", kind: str = "current"
) -> LegacyAccountLink:
    """Link the legacy account `account_number` to `customer` (staff: admin or command).

    Asks the core first (0100): the account must exist and be open; its currency and balances
    are taken from the answer. Raises LegacyAccountUnknown (14), LegacyAccountAlreadyLinked, or
    the connector's LegacyError when the core does not answer. Atomic and audited.
    """
    account_number = account_number.strip()
    if not (account_number.isdigit() and len(account_number) == 10):
        raise LegacyAccountUnknown("A legacy account number has 10 digits.")
    if LegacyAccountLink.objects.filter(account_number=account_number).exists():
        raise LegacyAccountAlreadyLinked(f"Legacy account {account_number} is linked already.")
    try:
        balance = default_client().balance(account_number)
    except LegacyDeclined as exc:
        raise LegacyAccountUnknown(f"The legacy core does not know account {account_number} ({exc}).") from exc
    with transaction.atomic():
        link = LegacyAccountLink.objects.create(
            customer=customer,
            account_number=account_number,
            iban=legacy_iban(account_number),
            currency=balance.currency,
            name=name or f"Legacy account {account_number[-4:]}",
            kind=kind,
            last_ledger=balance.ledger,
            last_available=balance.available,
            as_of=balance.as_of,
        )
        audit_record(
            action="legacy_account.linked",
            actor=actor,
            target=link,
            details={"customer": str(customer.pk), "account_number": account_number, "currency": balance.currency},
        )
    cache.set(_cache_key(account_number), _cached(balance), settings.LEGACY_BALANCE_CACHE_SECONDS)
    return link


def customer_legacy_links(*, customer: Any) -> list[LegacyAccountLink]:
    return list(LegacyAccountLink.objects.filter(customer=customer).order_by("-created_at", "-id"))


def legacy_balances(*, links: list[LegacyAccountLink]) -> list[LegacyAccountBalance]:
    """Each link's balances: from the cache, else from the core (read concurrently), else the last
    known ones marked stale. Waits at most LEGACY_BALANCE_WAIT_SECONDS for the core in total;
    when the circuit is open the connector refuses at once, so a down core costs no wait.
    Fresh reads are remembered on the link rows."""
    if not links:
        return []
    cached = cache.get_many([_cache_key(link.account_number) for link in links])
    fresh: dict[str, LegacyBalance] = {}
    closed: set[str] = set()
    missing = [link for link in links if _cache_key(link.account_number) not in cached]
    if missing and settings.LEGACY_CORE_ADDRESS:
        client = default_client()
        futures: dict[Future[LegacyBalance], str] = {
            _readers.submit(client.balance, link.account_number): link.account_number for link in missing
        }
        deadline = time.monotonic() + settings.LEGACY_BALANCE_WAIT_SECONDS
        pending = set(futures)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            done, pending = wait(pending, timeout=remaining, return_when=FIRST_EXCEPTION)
            for future in done:
                number = futures[future]
                try:
                    fresh[number] = future.result()
                except LegacyDeclined as exc:
                    if exc.response_code == INVALID_ACCOUNT:
                        closed.add(number)
                except LegacyError as exc:
                    logger.info("legacy balance of %s unavailable: %s", number, exc)
        for number, balance in fresh.items():
            legacy_link_record_balance(account_number=number, balance=balance)
    result = []
    for link in links:
        key = _cache_key(link.account_number)
        status = LegacyAccountLink.Status.CLOSED if link.account_number in closed else link.status
        if link.account_number in fresh:
            b = fresh[link.account_number]
            result.append(LegacyAccountBalance(link, b.ledger, b.available, b.as_of, False, status))
        elif key in cached:
            ledger, available, as_of = cached[key]
            result.append(LegacyAccountBalance(link, ledger, available, datetime.fromisoformat(as_of), False, status))
        else:
            result.append(LegacyAccountBalance(link, link.last_ledger, link.last_available, link.as_of, True, status))
    return result


def customer_legacy_link(*, customer: Any, link_id: Any) -> LegacyAccountLink | None:
    """One of the customer's links, or None (also for another customer's id or a malformed id)."""
    try:
        return LegacyAccountLink.objects.filter(customer=customer, pk=link_id).first()
    except (ValueError, TypeError):
        return None


def _cache_key(account_number: str) -> str:
    return f"{_CACHE_PREFIX}{account_number}"


def _cached(balance: LegacyBalance) -> tuple[int, int, str]:
    return (balance.ledger, balance.available, balance.as_of.isoformat())
