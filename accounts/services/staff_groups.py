"""The staff groups bankcore ships: who may do what in the admin.

Kept by code: `migrate` (post_migrate) creates the groups and sets each one's
permissions to exactly this list, so a change here reaches every installation and a
permission added to these groups by hand is taken away again. Local variations go in
groups of their own. Maker and checker permissions sit in different groups, and the
database refuses a request approved by its own proposer in any case.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import DEFAULT_DB_ALIAS, transaction

_VIEW_CUSTOMERS = [
    "accounts.view_user",
    "accounts.view_device",
    "accounts.view_loginsession",
    "accounts.view_bankaccount",
    "accounts.view_twofactorresetrequest",
]
_VIEW_LEDGER = [
    "transactions.view_transaction",
    "transactions.view_entry",
    "transactions.view_hold",
    "transactions.view_beneficiary",
    "transactions.view_standingorder",
    "transactions.view_customerlimit",
    "transactions.view_adjustmentrequest",
    "transactions.view_reversalrequest",
    "transactions.view_payment",
    "transactions.view_paymentevent",
    "transactions.view_settlementbatch",
    "transactions.view_incomingcredit",
    "transactions.view_paymentactionrequest",
    "transactions.view_reconciliationrun",
    "transactions.view_categoryrule",
    "transactions.view_reconciliationmismatch",
]
_VIEW_SUPPORT = ["transactions.view_supportticket", "transactions.view_supportmessage"]
_VIEW_APP_CONFIG = ["bankcore.view_appversionpolicy", "bankcore.view_featureflag"]
_VIEW_NOTIFICATIONS = [
    "notifications.view_notification",
    "notifications.view_delivery",
    "notifications.view_deadletter",
    "notifications.view_incident",
    "notifications.view_maintenancewindow",
]

STAFF_GROUPS: dict[str, list[str]] = {
    # The help desk: finds customers, locks a stolen login, proposes a 2FA reset, resends a message,
    # works the ticket queue (reply, assign, close).
    "support": [
        *_VIEW_CUSTOMERS,
        *_VIEW_SUPPORT,
        *_VIEW_APP_CONFIG,
        "transactions.reply_ticket",
        "transactions.assign_ticket",
        "transactions.close_ticket",
        "transactions.view_transaction",
        "transactions.view_entry",
        "transactions.view_beneficiary",
        "transactions.view_standingorder",
        *_VIEW_NOTIFICATIONS,
        "accounts.lock_user",
        "accounts.revoke_devices",
        "accounts.reset_two_factor",
        "notifications.resend_delivery",
    ],
    # Back office: proposes reversals and adjustments, freezes, sets limits, runs incidents,
    # manages the apps' supported versions and feature flags.
    "operations": [
        *_VIEW_CUSTOMERS,
        *_VIEW_LEDGER,
        *_VIEW_NOTIFICATIONS,
        *_VIEW_SUPPORT,
        *_VIEW_APP_CONFIG,
        "bankcore.add_appversionpolicy",
        "bankcore.change_appversionpolicy",
        "bankcore.add_featureflag",
        "bankcore.change_featureflag",
        "accounts.change_bankaccount",
        "accounts.freeze_account",
        "accounts.set_overdraft",
        "transactions.reverse_transaction",
        "transactions.add_adjustmentrequest",
        "transactions.add_customerlimit",
        "transactions.change_customerlimit",
        "transactions.retry_payment",
        "transactions.resolve_suspense",
        "transactions.add_categoryrule",
        "transactions.change_categoryrule",
        "transactions.delete_categoryrule",
        "notifications.resend_delivery",
        "notifications.manage_incident",
        "notifications.add_maintenancewindow",
        "notifications.change_maintenancewindow",
        "django_celery_beat.view_periodictask",
    ],
    # Second line: the checker of every maker-checker request, reads the audit log, freezes and locks.
    "compliance": [
        *_VIEW_CUSTOMERS,
        *_VIEW_LEDGER,
        *_VIEW_NOTIFICATIONS,
        "bankcore.view_auditevent",
        "accounts.approve_two_factor_reset",
        "accounts.lock_user",
        "accounts.freeze_account",
        "transactions.approve_reversal",
        "transactions.approve_adjustment",
        "transactions.approve_payment_action",
    ],
}


def staff_groups_sync(*, using: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Create the STAFF_GROUPS and set each one's permissions to exactly its list. Idempotent; atomic.

    Raises LookupError naming a listed permission that does not exist (a typo must not
    silently leave a group without a right). Returns each group's permission count.
    """
    with transaction.atomic(using=using):
        counts = {}
        for name, labels in STAFF_GROUPS.items():
            wanted = sorted(set(labels))
            permissions = []
            for label in wanted:
                app_label, codename = label.split(".", 1)
                permission = (
                    Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename).first()
                )
                if permission is None:
                    raise LookupError(f"staff group {name!r}: no permission {label!r}")
                permissions.append(permission)
            group, _ = Group.objects.using(using).get_or_create(name=name)
            group.permissions.set(permissions)
            counts[name] = len(permissions)
    return counts


def sync_staff_groups_after_migrate(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate receiver: the permissions of every app first (auth makes them app by app), then the groups."""
    state_apps = kwargs.get("apps", global_apps)
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using, apps=state_apps)
    staff_groups_sync(using=using)
