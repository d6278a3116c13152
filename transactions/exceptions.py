"""Ledger and transfer errors, each carrying its API code (mapped once by bankcore.api.errors)."""

from __future__ import annotations

from bankcore.api.exceptions import BankError, BusinessRuleViolation, NotFound
from bankcore.permissions import MakerCheckerViolation


class InsufficientFunds(BusinessRuleViolation):
    code = "insufficient_funds"
    default_message = "The account does not have enough available funds."


class AccountFrozen(BusinessRuleViolation):
    code = "account_frozen"
    default_message = "The account is frozen or closed and cannot move money."


class CurrencyMismatch(BusinessRuleViolation):
    code = "currency_mismatch"
    default_message = "The currency does not match the account's currency."


class SameAccount(BusinessRuleViolation):
    code = "same_account"
    default_message = "Source and destination are the same account."


class LimitExceeded(BusinessRuleViolation):
    code = "limit_exceeded"
    default_message = "The transfer exceeds your limits."


class AlreadyReversed(BusinessRuleViolation):
    code = "already_reversed"
    default_message = "This transaction has already been reversed."


class MakerCannotApprove(MakerCheckerViolation):
    default_message = "An adjustment must be approved by a different staff member than the one who proposed it."


class ReversalAlreadyProposed(BusinessRuleViolation):
    code = "reversal_already_proposed"
    default_message = "A reversal of this transaction is already waiting for approval."


class AdjustmentNotPending(BusinessRuleViolation):
    code = "adjustment_not_pending"
    default_message = "The adjustment has already been decided."


class AccountNotFound(NotFound):
    default_message = "No such account."


class UnknownDestination(BankError):
    """400: the destination IBAN is well formed but no active account at this bank has it."""

    status_code = 400
    code = "invalid_request"
    default_message = "The request is invalid."


class LedgerUnbalanced(Exception):
    """A programming error: legs that do not sum to zero per currency. Never reaches a client as 4xx."""


class PaymentNotCancellable(BusinessRuleViolation):
    code = "payment_not_cancellable"
    default_message = "Only a pending payment can be cancelled; this one has left the bank or ended."


class PaymentNotFound(NotFound):
    default_message = "No such payment."


class TicketNotFound(NotFound):
    default_message = "No such support ticket."


class TicketClosed(BusinessRuleViolation):
    code = "ticket_closed"
    default_message = "This support ticket is closed."


class InvalidPayment(BankError):
    """400 with per-field details: a creditor or date the gateway would refuse."""

    status_code = 400
    code = "invalid_request"
    default_message = "The payment is invalid."


class EntryNotFound(NotFound):
    default_message = "No such entry."
