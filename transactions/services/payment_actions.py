"""Staff actions on stuck payments, under maker-checker: one staff member proposes, another approves.

- cancel: end the payment without it leaving the bank (hold released, limit usage given back).
  Only while it is `pending`: once batched, its pain.001 is written and may be on its way to
  the gateway, so cancelling it here could pay the creditor AND give the customer the money
  back. A batched or submitted payment that is stuck is re-driven with `retry` instead; if the
  gateway rejects it, settlement releases the hold.
- retry: re-drive settlement now - the settlement sweep (transactions.tasks.sweep_settlement,
  sent by name after COMMIT) resubmits stuck batches (the gateway deduplicates by message id)
  and fetches outstanding reports. Safe to repeat; it moves no money by itself.

The permissions are checked here, not only in the admin: `transactions.retry_payment` to
propose, `transactions.approve_payment_action` to decide; the database refuses a request
decided by its own proposer (check constraint) and a second pending request per payment.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from bankcore.api.exceptions import BusinessRuleViolation
from bankcore.audit import audit_record
from bankcore.celery import app
from bankcore.permissions import MakerCheckerViolation, RequestNotPending, require_staff_permission
from transactions.exceptions import PaymentNotCancellable
from transactions.models import Payment, PaymentActionRequest
from transactions.services.payments import payment_for_update, payment_release

PROPOSE_PERMISSION = "transactions.retry_payment"
APPROVE_PERMISSION = "transactions.approve_payment_action"
# Sent by name: services never import transactions.tasks (which imports the services).
SWEEP_TASK = "transactions.tasks.sweep_settlement"


class PaymentActionNotAllowed(BusinessRuleViolation):
    code = "payment_action_not_allowed"
    default_message = "This action does not apply to the payment in its current status."


class PaymentActionAlreadyProposed(BusinessRuleViolation):
    code = "payment_action_already_proposed"
    default_message = "An action on this payment is already waiting for approval."


class MakerCannotApprovePaymentAction(MakerCheckerViolation):
    default_message = "A payment action must be approved by a different staff member than the one who proposed it."


def _check_applies(*, payment: Payment, action: str) -> None:
    if action == PaymentActionRequest.Action.CANCEL and payment.status != Payment.Status.PENDING:
        raise PaymentActionNotAllowed(
            "Only a pending payment can be cancelled; a batched or submitted one is retried.",
            details={"status": payment.status},
        )
    if action == PaymentActionRequest.Action.RETRY and payment.status not in Payment.OPEN_STATUSES:
        raise PaymentActionNotAllowed(
            "The payment is finished; there is nothing to retry.", details={"status": payment.status}
        )


def payment_action_propose(*, payment_id: UUID | str, action: str, reason: str, actor: Any) -> PaymentActionRequest:
    """Record a proposal (maker); nothing happens to the payment yet. Atomic, audited.

    Raises StaffPermissionDenied, PaymentNotFound, PaymentActionNotAllowed (cancel of a payment
    past pending, retry of a finished one) or PaymentActionAlreadyProposed.
    """
    require_staff_permission(actor=actor, permission=PROPOSE_PERMISSION)
    if action not in PaymentActionRequest.Action.values:
        raise PaymentActionNotAllowed(f"Unknown action {action!r}.")
    reason = (reason or "").strip()
    if not reason:
        raise PaymentActionNotAllowed("A reason is required.")
    try:
        with transaction.atomic():
            payment = payment_for_update(payment_id=payment_id)
            _check_applies(payment=payment, action=action)
            proposal = PaymentActionRequest.objects.create(
                payment=payment, action=action, reason=reason[:255], proposed_by=actor
            )
            audit_record(
                action=f"payment_action.{action}.proposed",
                actor=actor,
                target=payment,
                details={"request": str(proposal.pk), "reason": reason[:255]},
            )
    except IntegrityError:
        raise PaymentActionAlreadyProposed() from None
    return proposal


def _pending_for_update(request_id: UUID | str) -> PaymentActionRequest:
    proposal = PaymentActionRequest.objects.select_for_update(of=("self",)).filter(pk=request_id).first()
    if proposal is None or proposal.status != PaymentActionRequest.Status.PENDING:
        raise RequestNotPending()
    return proposal


def payment_action_approve(*, request_id: UUID | str, actor: Any) -> PaymentActionRequest:
    """Approve a proposal (checker, not its maker) and carry it out, once. Atomic, audited.

    Locks the request, then the payment. cancel: payment_release(status=cancelled) if the payment
    is still pending (else PaymentNotCancellable, and the request stays pending for a reject).
    retry: the settlement sweep is sent after COMMIT. A second approval finds the request
    decided (RequestNotPending).
    """
    require_staff_permission(actor=actor, permission=APPROVE_PERMISSION)
    with transaction.atomic():
        proposal = _pending_for_update(request_id)
        if proposal.proposed_by_id == actor.pk:
            raise MakerCannotApprovePaymentAction()
        payment = payment_for_update(payment_id=proposal.payment_id)
        if proposal.action == PaymentActionRequest.Action.CANCEL:
            if payment.status != Payment.Status.PENDING:
                raise PaymentNotCancellable(details={"status": payment.status})
            payment_release(payment=payment, status=Payment.Status.CANCELLED, actor=actor)
        else:
            if payment.status not in Payment.OPEN_STATUSES:
                raise PaymentActionNotAllowed(details={"status": payment.status})
            transaction.on_commit(lambda: app.send_task(SWEEP_TASK))
        proposal.status = PaymentActionRequest.Status.DONE
        proposal.decided_by = actor
        proposal.decided_at = timezone.now()
        proposal.save(update_fields=["status", "decided_by", "decided_at"])
        audit_record(
            action=f"payment_action.{proposal.action}.approved",
            actor=actor,
            target=payment,
            details={"request": str(proposal.pk), "proposed_by": str(proposal.proposed_by_id)},
        )
    return proposal


def payment_action_reject(*, request_id: UUID | str, actor: Any) -> PaymentActionRequest:
    """Turn a proposal down (checker, not its maker); nothing happens to the payment. Atomic, audited."""
    require_staff_permission(actor=actor, permission=APPROVE_PERMISSION)
    with transaction.atomic():
        proposal = _pending_for_update(request_id)
        if proposal.proposed_by_id == actor.pk:
            raise MakerCannotApprovePaymentAction()
        proposal.status = PaymentActionRequest.Status.REJECTED
        proposal.decided_by = actor
        proposal.decided_at = timezone.now()
        proposal.save(update_fields=["status", "decided_by", "decided_at"])
        audit_record(
            action=f"payment_action.{proposal.action}.rejected",
            actor=actor,
            target=proposal,
            details={"payment": str(proposal.payment_id)},
        )
    return proposal
