from marshmallow import EXCLUDE, Schema, fields

from gefapi.schemas.common import QuerySchema, ResourceSchema, Timestamp


class WebhookSettingSchema(ResourceSchema):
    url = fields.String(metadata={"description": "Told of every status change of your executions"})
    secret = fields.String(metadata={"description": "Signs every delivery (HMAC-SHA256)"})
    updated_at = Timestamp()


class WebhookUpdateSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    url = fields.Url(require_tld=False, schemes={"http", "https"}, allow_none=True, required=True)


class WebhookDeliverySchema(ResourceSchema):
    id = fields.UUID()
    execution_id = fields.UUID()
    url = fields.String()
    event = fields.String()
    state = fields.String()
    attempts = fields.Integer()
    last_status_code = fields.Integer()
    last_error = fields.String()
    next_attempt_at = Timestamp()
    created_at = Timestamp()
    delivered_at = Timestamp()


class DeliveryListArgs(QuerySchema):
    execution_id = fields.UUID()
