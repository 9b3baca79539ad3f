from celery import shared_task


@shared_task(name="scripts.build", acks_late=True)
def build_script(build_id: str) -> None:
    from gefapi.services import build_service

    build_service.build(build_id)
