from celery import shared_task
from flask import current_app

from gefapi.email import Message, sender_from_config


@shared_task(
    name="email.send",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def send_email(messages: list[dict]) -> None:
    sender_from_config(current_app.config).send([Message(**m) for m in messages])


@shared_task(name="email.recovery")
def send_recovery(ref: str, legacy: bool) -> None:
    """Password recovery, out of the request so that its answer and its time are the same for
    every address."""
    from gefapi.services import user_service

    user_service.send_recovery(ref, legacy=legacy)
