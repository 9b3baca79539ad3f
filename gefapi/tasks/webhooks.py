from celery import shared_task


@shared_task(name="webhooks.deliver", acks_late=True)
def deliver_webhook(delivery_id: str) -> None:
    from gefapi.services import webhook_service

    webhook_service.deliver(delivery_id)


@shared_task(name="webhooks.retry_due")
def retry_due_webhooks() -> None:
    from gefapi.services import webhook_service

    webhook_service.retry_due()
