"""Email senders: SMTP when SMTP_HOST is set, else a console sender that logs the message."""

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    text: str | None = None
    html: str | None = None

    def as_email(self, sender: str) -> EmailMessage:
        email = EmailMessage()
        email["From"] = sender
        email["To"] = self.to
        email["Subject"] = self.subject
        email.set_content(self.text or "")
        if self.html:
            email.add_alternative(self.html, subtype="html")
        return email


class ConsoleSender:
    def __init__(self, sender: str):
        self.sender = sender

    def send(self, messages: list[Message]) -> None:
        for message in messages:
            log.warning(
                "Email (console sender) to %s: %s\n%s",
                message.to,
                message.subject,
                message.text or message.html,
            )


class SmtpSender:
    def __init__(self, config):
        self.sender = config["EMAIL_FROM"]
        self.host, self.port = config["SMTP_HOST"], config["SMTP_PORT"]
        self.user, self.password = config.get("SMTP_USER"), config.get("SMTP_PASSWORD")
        self.ssl, self.starttls = config.get("SMTP_SSL"), config.get("SMTP_STARTTLS")

    def send(self, messages: list[Message]) -> None:
        """One connection per batch."""
        smtp_class = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        with smtp_class(self.host, self.port, timeout=30) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password or "")
            for message in messages:
                smtp.send_message(message.as_email(self.sender))


def sender_from_config(config):
    if config.get("SMTP_HOST"):
        return SmtpSender(config)
    return ConsoleSender(config["EMAIL_FROM"])
