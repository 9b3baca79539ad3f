from celery import shared_task


@shared_task(name="artifacts.purge")
def purge_artifacts() -> None:
    """Delete expired artifacts and those of deleted executions: files, then rows."""
    from gefapi.services import artifact_service

    artifact_service.purge()
