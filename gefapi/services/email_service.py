"""What we email, and bulk mail from administrators. Sending happens in Celery tasks."""

import uuid

from flask import current_app
from sqlalchemy import func, select

from gefapi.errors import ValidationError
from gefapi.extensions import db
from gefapi.models import User
from gefapi.queue import enqueue


def _queue(messages: list[dict]) -> None:

    batch = current_app.config["EMAIL_BATCH_SIZE"]
    for start in range(0, len(messages), batch):
        enqueue("email.send", messages[start : start + batch])


def _message(user: User, subject: str, text: str, html: str | None = None) -> dict:
    return {"to": user.email, "subject": subject, "text": text, "html": html}


def _link(raw_token: str) -> str:
    return current_app.config["PASSWORD_RESET_URL"].format(token=raw_token)


def send_welcome_with_password(user: User, password: str) -> None:
    _queue(
        [
            _message(
                user,
                "Welcome to Trends.Earth",
                f"Hello {user.name},\n\nYour account is ready.\n\n"
                f"Email: {user.email}\nPassword: {password}\n\n"
                "Please change this password after your first login.\n",
            )
        ]
    )


def send_account_setup_link(user: User, raw_token: str) -> None:
    hours = current_app.config["ACCOUNT_SETUP_HOURS"]
    _queue(
        [
            _message(
                user,
                "Welcome to Trends.Earth: choose your password",
                f"Hello {user.name},\n\nChoose the password of your new account here "
                f"(the link works for {hours} hours):\n\n{_link(raw_token)}\n",
            )
        ]
    )


def send_password_reset_link(user: User, raw_token: str) -> None:
    hours = current_app.config["PASSWORD_RESET_HOURS"]
    _queue(
        [
            _message(
                user,
                "Reset your Trends.Earth password",
                f"Hello {user.name},\n\nSomeone asked to reset your password. If it was "
                f"you, choose a new one here (the link works for {hours} hour(s)):\n\n"
                f"{_link(raw_token)}\n\nOtherwise ignore this email.\n",
            )
        ]
    )


def send_temporary_password(user: User, password: str) -> None:
    hours = current_app.config["PASSWORD_RESET_HOURS"]
    _queue(
        [
            _message(
                user,
                "Your new Trends.Earth password",
                f"Hello {user.name},\n\nYou can log in with this password for the next "
                f"{hours} hour(s): {password}\n\nYour old password keeps working. If you "
                "did not ask for this, ignore this email.\n",
            )
        ]
    )


def send_execution_outcome(user: User, execution) -> None:
    word = "finished" if execution.status == "FINISHED" else "failed"
    task = (execution.params or {}).get("task_name") or str(execution.id)
    _queue(
        [
            _message(
                user,
                f"[trends.earth] Execution {word}",
                f"Hello {user.name},\n\nYour task {task!r} {word} at "
                f"{execution.end_date:%Y-%m-%d %H:%M} UTC.\n",
            )
        ]
    )


def send_bulk(*, subject: str, text: str | None, html: str | None, recipients) -> int:
    """`recipients`: "mailing_list", "all", or a list of user ids and emails."""
    users = _bulk_recipients(recipients)
    _queue([_message(user, subject, text or "", html) for user in users])
    db.session.commit()
    return len(users)


def _bulk_recipients(recipients) -> list[User]:
    query = select(User).where(~User.deleted)
    if recipients == "mailing_list":
        query = query.where(User.is_in_mailing_list)
    elif recipients != "all":
        ids, emails = _split_refs(recipients)
        query = query.where(User.id.in_(ids) | func.lower(User.email).in_(emails))
    return list(db.session.scalars(query.order_by(User.created_at)))


def _split_refs(refs: list[str]) -> tuple[list[uuid.UUID], list[str]]:
    ids, emails = [], []
    for ref in refs:
        try:
            ids.append(uuid.UUID(ref))
        except ValueError:
            if "@" not in ref:
                raise ValidationError(
                    "Recipients must be user ids or emails",
                    errors={"recipients": [f"Not a user id or email: {ref}"]},
                ) from None
            emails.append(ref.strip().lower())
    return ids, emails
