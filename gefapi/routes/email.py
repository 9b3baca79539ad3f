"""/api/v1/email: administrators write to users."""

from flask.views import MethodView
from flask_jwt_extended import current_user

from gefapi.auth import login_required, require_role
from gefapi.models import Role
from gefapi.routes import Blueprint
from gefapi.schemas.common import envelope
from gefapi.schemas.email import EmailQueuedSchema, EmailSendSchema
from gefapi.services import email_service

blp = Blueprint("email", __name__, url_prefix="/api/v1/email", description="Email to users")


@blp.route("")
class Email(MethodView):
    @login_required
    @blp.arguments(EmailSendSchema)
    @blp.documents(EmailQueuedSchema)
    def post(self, body):
        """Send an email to the mailing list, everybody, or listed users (ADMIN)"""
        require_role(current_user, Role.ADMIN)
        queued = email_service.send_bulk(
            subject=body["subject"],
            text=body.get("text"),
            html=body.get("html"),
            recipients=body["recipients"],
        )
        return envelope({"queued": queued})
