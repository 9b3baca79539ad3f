from celery import shared_task

from gefapi.executors.base import BackendUnavailable

RETRY = {"autoretry_for": (BackendUnavailable,), "retry_backoff": True, "max_retries": 20}


@shared_task(name="scripts.build", acks_late=True, **RETRY)
def build_script(build_id: str) -> None:
    from gefapi.services import build_service

    build_service.build(build_id)
