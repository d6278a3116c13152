"""Staff screens. One module per area so each stays readable."""

from accounts.admin import bank_accounts, legacy_links, users  # noqa: F401 - registers the ModelAdmins
