from transactions.models.adjustments import AdjustmentRequest, ReversalRequest
from transactions.models.ledger import Entry, Hold, Transaction
from transactions.models.limits import CustomerLimit, LimitUsage
from transactions.models.notices import LedgerNotice
from transactions.models.payees import Beneficiary, StandingOrder, StandingOrderExecution

__all__ = [
    "AdjustmentRequest",
    "Beneficiary",
    "CustomerLimit",
    "Entry",
    "Hold",
    "LedgerNotice",
    "LimitUsage",
    "ReversalRequest",
    "StandingOrder",
    "StandingOrderExecution",
    "Transaction",
]
