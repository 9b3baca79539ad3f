import unicodedata

from marshmallow import ValidationError, fields, validate, validates_schema

from gefapi.schemas.common import StrictSchema

MAX_LISTED_RECIPIENTS = 10_000


class Recipients(fields.Field):
    """ "mailing_list", "all", or a non-empty list of user ids / emails."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value in ("mailing_list", "all"):
            return value
        if (
            isinstance(value, list)
            and 0 < len(value) <= MAX_LISTED_RECIPIENTS
            and all(isinstance(item, str) and 0 < len(item) <= 254 for item in value)
        ):
            return value
        raise ValidationError(
            'Use "mailing_list", "all" or a list of 1 to '
            f"{MAX_LISTED_RECIPIENTS} user ids or emails."
        )


def single_line(value: str) -> None:
    """A header value: a CR or LF would end the header (or start a new one), and the worker
    refuses to send such a message, after the request said it was queued."""
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in value):
        raise ValidationError("Must be one line, without control characters.")


class EmailSendSchema(StrictSchema):
    subject = fields.String(required=True, validate=[validate.Length(min=1, max=255), single_line])
    text = fields.String(validate=validate.Length(max=200_000))
    html = fields.String(validate=validate.Length(max=500_000))
    recipients = Recipients(required=True)

    @validates_schema
    def _needs_a_body(self, data, **kwargs):
        if not data.get("text") and not data.get("html"):
            raise ValidationError("Give text, html or both.", field_name="text")


class EmailQueuedSchema(StrictSchema):
    queued = fields.Integer()
