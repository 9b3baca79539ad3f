from celery import shared_task


@shared_task(name="executions.dispatch", acks_late=True)
def dispatch_execution(execution_id: str) -> None:
    from gefapi.services import dispatch_service

    dispatch_service.dispatch(execution_id)


@shared_task(name="executions.stop", acks_late=True)
def stop_execution(execution_id: str) -> None:
    from gefapi.services import dispatch_service

    dispatch_service.stop(execution_id)
