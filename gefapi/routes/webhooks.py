"""/api/v1/webhook: the caller's webhook URL and signing secret, and their deliveries."""

from flask.views import MethodView
from flask_jwt_extended import current_user

from gefapi.auth import login_required
from gefapi.routes import Blueprint
from gefapi.schemas.common import envelope
from gefapi.schemas.webhook import (
    DeliveryListArgs,
    WebhookDeliverySchema,
    WebhookSettingSchema,
    WebhookUpdateSchema,
)
from gefapi.services import webhook_service

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhook", description="Webhooks")
SETTING, DELIVERIES = WebhookSettingSchema(), WebhookDeliverySchema(many=True)


@blp.route("", strict_slashes=False)
class Webhook(MethodView):
    @login_required
    @blp.documents(WebhookSettingSchema)
    def get(self):
        """Your webhook URL (null when none) and the secret that signs every delivery"""
        return envelope(SETTING.dump(webhook_service.read_setting(current_user)))

    @login_required
    @blp.arguments(WebhookUpdateSchema)
    @blp.documents(WebhookSettingSchema)
    def put(self, body):
        """Set (or clear with null) the URL told of every status change of your executions"""
        return envelope(SETTING.dump(webhook_service.set_url(current_user, body["url"])))

    @login_required
    @blp.documents(WebhookSettingSchema)
    def delete(self):
        """Clear the URL (OGC subscribers keep working)"""
        return envelope(SETTING.dump(webhook_service.set_url(current_user, None)))


@blp.route("/secret")
class Secret(MethodView):
    @login_required
    @blp.documents(WebhookSettingSchema)
    def post(self):
        """A new signing secret (the old one stops at once)"""
        return envelope(SETTING.dump(webhook_service.rotate_secret(current_user)))


@blp.route("/deliveries")
class Deliveries(MethodView):
    @login_required
    @blp.arguments(DeliveryListArgs, location="query")
    @blp.documents(WebhookDeliverySchema, many=True)
    def get(self, args):
        """Your latest 100 deliveries (`execution_id` filters): state, attempts, last answer"""
        rows = webhook_service.list_deliveries(current_user, **args)
        return envelope(DELIVERIES.dump(rows))
