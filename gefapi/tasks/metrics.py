from celery import shared_task


@shared_task(name="metrics.probe_engine")
def probe_engine() -> None:
    from gefapi.services import metrics_service

    metrics_service.probe_engine()
