"""Status changes of executions and what follows them: the status-log row, the owner's email,
webhooks, and cancellation (on request, or when a user or a script is deleted). Below the
services that call it, so that none of them needs another for these."""

from sqlalchemy import select

from gefapi.extensions import db
from gefapi.models import Execution, ExecutionStatus, User
from gefapi.models.execution import UNFINISHED_STATUSES
from gefapi.queue import enqueue
from gefapi.services import email_service, webhook_service


def transition(execution: Execution, status: ExecutionStatus, detail: str | None = None) -> None:
    """Move the execution and write its status-log row; notify the owner of the outcome. No
    commit: the caller's transaction holds both."""
    log = execution.transition_to(status)
    if log is None:
        return
    log.detail = detail
    db.session.add(log)
    webhook_service.on_status_change(execution)  # who asked to be told: sent after commit
    if status in (ExecutionStatus.FINISHED, ExecutionStatus.FAILED):
        _notify_owner(execution)


def _notify_owner(execution: Execution) -> None:
    owner = db.session.get(User, execution.user_id)
    if owner is not None and owner.email_notifications_enabled and not owner.deleted:
        email_service.send_execution_outcome(owner, execution)


def cancel_active(*, reason: str, user_id=None, script_id=None) -> int:
    """Cancel every unfinished execution of a user or of a script (being deleted), with
    `reason`. No commit: the caller's transaction holds the deletion and the cancellations."""
    condition = Execution.user_id == user_id if user_id else Execution.script_id == script_id
    executions = db.session.scalars(
        select(Execution)
        .where(condition, Execution.status.in_(UNFINISHED_STATUSES))
        # One lock order everywhere: the totals' rows by user (see the trigger), then by id.
        .order_by(Execution.user_id, Execution.id)
        .with_for_update()
    ).all()
    for execution in executions:
        request_cancel(execution, reason)
    return len(executions)


def request_cancel(execution: Execution, reason: str) -> None:
    """Before dispatch: straight to CANCELLED. After: CANCELLING, and the stop task ends it
    with `reason`."""
    if execution.status == ExecutionStatus.PENDING and execution.backend_handle is None:
        transition(execution, ExecutionStatus.CANCELLED, detail=f"{reason}, before dispatch")
    elif execution.status != ExecutionStatus.CANCELLING:
        transition(execution, ExecutionStatus.CANCELLING, detail=reason)
        enqueue("executions.stop", str(execution.id))
