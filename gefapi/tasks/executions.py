from celery import shared_task

from gefapi.tasks.scripts import RETRY


@shared_task(name="executions.dispatch", acks_late=True, **RETRY)
def dispatch_execution(execution_id: str) -> None:
    from gefapi.services import dispatch_service

    dispatch_service.dispatch(execution_id)


@shared_task(name="executions.stop", acks_late=True, **RETRY)
def stop_execution(execution_id: str) -> None:
    from gefapi.services import dispatch_service

    dispatch_service.stop(execution_id)


@shared_task(name="executions.reconcile")
def reconcile_executions() -> None:
    from gefapi.services import dispatch_service

    dispatch_service.reconcile()


@shared_task(name="executions.dispatch_waiting")
def dispatch_waiting() -> None:
    from gefapi.services import dispatch_service

    dispatch_service.dispatch_waiting()


@shared_task(name="tokens.purge_expired")
def purge_expired_tokens() -> None:
    from gefapi.services import auth_service

    auth_service.purge_expired()
