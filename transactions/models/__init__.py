from transactions.models.adjustments import AdjustmentRequest, ReversalRequest
from transactions.models.insights import (
    Category,
    CategoryRule,
    CounterpartyCategory,
    EntryCategory,
    InsightsPreference,
)
from transactions.models.ledger import Entry, Hold, Transaction
from transactions.models.legacy import LegacyRequest
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
    "Category",
    "CategoryRule",
    "CounterpartyCategory",
    "CustomerLimit",
    "Entry",
    "EntryCategory",
    "Hold",
    "IncomingCredit",
    "InsightsPreference",
    "LedgerNotice",
    "LegacyRequest",
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
