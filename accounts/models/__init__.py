from accounts.models.bank_accounts import BankAccount
from accounts.models.users import User

__all__ = ["BankAccount", "User"]
