from accounts.models.bank_accounts import BankAccount
from accounts.models.contacts import ContactChange
from accounts.models.devices import Device, DeviceChallenge
from accounts.models.legacy import LegacyAccount, LegacyCustomer
from accounts.models.legacy_links import LegacyAccountLink
from accounts.models.sessions import LoginSession, MfaChallenge
from accounts.models.staff_requests import TwoFactorResetRequest
from accounts.models.step_up import StepUpToken
from accounts.models.two_factor import TotpAuthenticator
from accounts.models.users import User

__all__ = [
    "BankAccount",
    "ContactChange",
    "Device",
    "DeviceChallenge",
    "LegacyAccount",
    "LegacyAccountLink",
    "LegacyCustomer",
    "LoginSession",
    "MfaChallenge",
    "StepUpToken",
    "TotpAuthenticator",
    "TwoFactorResetRequest",
    "User",
]
