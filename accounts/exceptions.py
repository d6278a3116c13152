"""Identity errors, each with its stable API code (see shared/API.md)."""

from __future__ import annotations

from bankcore.api.exceptions import BankError, Conflict


class InvalidCredentials(BankError):
    """Any failed authentication factor. Deliberately never says which one, or whether the e-mail exists."""

    status_code = 401
    code = "invalid_credentials"
    default_message = "The credentials are not valid."


class MfaRequired(BankError):
    status_code = 401
    code = "mfa_required"
    default_message = "A second factor is required: send the mfa_token with a TOTP or backup code."


class AccountLocked(BankError):
    status_code = 403
    code = "account_locked"
    default_message = "Too many failed attempts. The account is temporarily locked."


class StepUpRequired(BankError):
    status_code = 403
    code = "step_up_required"
    default_message = "This operation needs a step-up token bound to its amount and payee."


class TotpAlreadyEnabled(Conflict):
    code = "totp_already_enabled"
    default_message = "Two-factor authentication is already enabled; remove it first."


class SessionRevoked(BankError):
    status_code = 401
    code = "not_authenticated"
    default_message = "This session has ended. Log in again."
