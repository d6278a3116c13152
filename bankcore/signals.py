"""Signals bankcore sends for the apps to act on (bankcore imports no app; apps connect here).

maintenance_changed(sender=MaintenanceMode, state=MaintenanceState, actor=...)
    Sent inside the transaction that switches maintenance mode on or off, so a receiver's
    writes (notifications: the status banner and the customers' announcement) commit or
    roll back with the switch itself.
"""

from __future__ import annotations

from django.dispatch import Signal

maintenance_changed = Signal()
