from transactions.models.adjustments import AdjustmentRequest, ReversalRequest
from transactions.models.ledger import Entry, Hold, Transaction
from transactions.models.limits import CustomerLimit, LimitUsage
from transactions.models.notices import LedgerNotice
from transactions.models.payees import Beneficiary, StandingOrder, StandingOrderExecution
from transactions.models.payments import (
    IncomingCredit,
    Payment,
    PaymentActionRequest,
    PaymentEvent,
    ReconciliationMismatch,
    ReconciliationRun,
    SettlementBatch,
)
from transactions.models.support import SupportMessage, SupportTicket

__all__ = [
    "AdjustmentRequest",
    "Beneficiary",
    "CustomerLimit",
    "Entry",
    "Hold",
    "IncomingCredit",
    "LedgerNotice",
    "LimitUsage",
    "Payment",
    "PaymentActionRequest",
    "PaymentEvent",
    "ReconciliationMismatch",
    "ReconciliationRun",
    "ReversalRequest",
    "SettlementBatch",
    "StandingOrder",
    "StandingOrderExecution",
    "SupportMessage",
    "SupportTicket",
    "Transaction",
]
