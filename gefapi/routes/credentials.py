"""Earth Engine and openEO credentials per user, under /api/v1/user/<user>/… (`me`, or any
user for ADMIN+), and the OAuth callback the provider sends the browser back to."""

import html

import click
from flask import Response
from flask.views import MethodView
from flask_jwt_extended import current_user

from gefapi.auth import login_required
from gefapi.errors import PermissionDenied
from gefapi.models import Role
from gefapi.routes import Blueprint
from gefapi.schemas.common import envelope
from gefapi.schemas.credentials import (
    GeeCredentialsSchema,
    GeeOAuthCallbackArgs,
    GeeOAuthCallbackSchema,
    GeeOAuthInitiateSchema,
    GeeOAuthStartSchema,
    GeeProjectSchema,
    GeeServiceAccountSchema,
    GeeTestResultSchema,
    OpenEOCredentialsSchema,
    OpenEOCredentialsSetSchema,
)
from gefapi.services import (
    credentials_service,
    gee_credentials_service,
    openeo_credentials_service,
    user_service,
)

blp = Blueprint(
    "credentials",
    __name__,
    url_prefix="/api/v1",
    description="Earth Engine and openEO credentials per user (secrets are never answered)",
    cli_group="credentials",
)

USER_REF = "`me`, or (ADMIN) a user's id or email."


def gee_answer(status: dict):
    """A status in the contract's shapes (timestamps as in CONTRACT section 1)."""
    return envelope(GeeCredentialsSchema().dump(status))


def openeo_answer(status: dict):
    return envelope(OpenEOCredentialsSchema().dump(status))


def _target(user_ref: str, *, change: bool = False):
    """Whose credentials: ADMINs read anyone's; changing another administrator's is a
    SUPERADMIN's, as changing their account is (CONTRACT section 4)."""
    target = user_service.resolve(user_ref, by=current_user)
    if (
        change
        and target.id != current_user.id
        and target.is_admin
        and not current_user.has_role(Role.SUPERADMIN)
    ):
        raise PermissionDenied("Only a SUPERADMIN may change another administrator's credentials")
    return target


# Earth Engine ------------------------------------------------------------------------------


@blp.route("/user/<user_ref>/gee-credentials")
class GeeCredentials(MethodView):
    @login_required
    @blp.documents(GeeCredentialsSchema)
    def get(self, user_ref):
        """Whether Earth Engine credentials are set, their type and the cloud project"""
        return gee_answer(gee_credentials_service.status(_target(user_ref)))

    @login_required
    @blp.documents(GeeCredentialsSchema)
    def delete(self, user_ref):
        """Remove the Earth Engine credentials and cloud project"""
        return gee_answer(gee_credentials_service.remove(_target(user_ref, change=True)))


@blp.route("/user/<user_ref>/gee-credentials/project")
class GeeProject(MethodView):
    @login_required
    @blp.arguments(GeeProjectSchema)
    @blp.documents(GeeCredentialsSchema)
    def patch(self, body, user_ref):
        """Set the Google Cloud project Earth Engine runs under (GEE_CLOUD_PROJECT)"""
        target = _target(user_ref, change=True)
        return gee_answer(gee_credentials_service.set_project(target, body["cloud_project"]))


@blp.route("/user/<user_ref>/gee-service-account")
class GeeServiceAccount(MethodView):
    @login_required
    @blp.arguments(GeeServiceAccountSchema)
    @blp.documents(GeeCredentialsSchema)
    def post(self, body, user_ref):
        """Use a service-account key for Earth Engine (replaces any OAuth credentials)"""
        target = _target(user_ref, change=True)
        key = body["service_account_key"]
        return gee_answer(gee_credentials_service.set_service_account(target, key))


@blp.route("/user/<user_ref>/gee-credentials/test")
class GeeTest(MethodView):
    @login_required
    @blp.documents(GeeTestResultSchema)
    @blp.alt_response(409, response="Conflict")
    def post(self, user_ref):
        """Check the credentials with the provider: 400 gee_credentials_invalid if refused"""
        return envelope(gee_credentials_service.test(_target(user_ref)))


@blp.route("/user/me/gee-oauth/initiate")
class GeeOAuthInitiate(MethodView):
    @login_required
    @blp.arguments(GeeOAuthInitiateSchema)
    @blp.documents(GeeOAuthStartSchema)
    @blp.alt_response(409, response="Conflict")
    def post(self, _body):
        """Start connecting a Google account: open `auth_url` in a browser"""
        return envelope(gee_credentials_service.initiate(current_user))


@blp.route("/user/me/gee-oauth/callback")
class GeeOAuthCallbackMe(MethodView):
    @login_required
    @blp.arguments(GeeOAuthCallbackSchema)
    @blp.documents(GeeCredentialsSchema)
    @blp.alt_response(409, response="Conflict")
    def post(self, body):
        """Finish connecting with the provider's `code` and the caller's own `state`"""
        status = gee_credentials_service.complete(body["code"], body["state"], user=current_user)
        return gee_answer(status)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p></body></html>"""


@blp.route("/gee-oauth/callback")
class GeeOAuthCallback(MethodView):
    @blp.arguments(GeeOAuthCallbackSchema)
    @blp.documents(GeeCredentialsSchema)
    @blp.alt_response(409, response="Conflict")
    def post(self, body):
        """Finish connecting; the user is the one who started with this `state`"""
        return gee_answer(gee_credentials_service.complete(body["code"], body["state"]))

    @blp.arguments(GeeOAuthCallbackArgs, location="query")
    @blp.alt_response(200, description="A page saying the account is connected", success=True)
    @blp.doc(
        responses={
            "400": {
                "description": "Invalid query (JSON), or access not granted (an HTML page)",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
                    "text/html": {"schema": {"type": "string"}},
                },
            }
        }
    )
    def get(self, args):
        """Where the provider sends the browser back (the default redirect URI)"""
        if args.get("error") or not args.get("code"):
            gee_credentials_service.abandon(args["state"])
            reason = html.escape(args.get("error") or "no authorization code")
            page = PAGE.format(title="Not connected", text=f"Access was not granted ({reason}).")
            return Response(page, status=400, mimetype="text/html")
        gee_credentials_service.complete(args["code"], args["state"])
        text = "Your Google account is connected to Trends.Earth. You can close this window."
        return Response(PAGE.format(title="Connected", text=text), mimetype="text/html")


# openEO ------------------------------------------------------------------------------------


@blp.route("/user/<user_ref>/openeo-credentials")
class OpenEOCredentials(MethodView):
    @login_required
    @blp.documents(OpenEOCredentialsSchema)
    def get(self, user_ref):
        """Whether openEO credentials are set, and their type"""
        return openeo_answer(openeo_credentials_service.status(_target(user_ref)))

    @login_required
    @blp.arguments(OpenEOCredentialsSetSchema)
    @blp.documents(OpenEOCredentialsSchema)
    def post(self, body, user_ref):
        """Set openEO credentials (`basic` or `oidc_refresh_token`), replacing any"""
        target = _target(user_ref, change=True)
        return openeo_answer(openeo_credentials_service.set_credentials(target, body))

    @login_required
    @blp.documents(OpenEOCredentialsSchema)
    def delete(self, user_ref):
        """Remove the openEO credentials"""
        return openeo_answer(openeo_credentials_service.remove(_target(user_ref, change=True)))


# Operators ---------------------------------------------------------------------------------


@blp.cli.command("reencrypt")
def reencrypt() -> None:
    """Re-encrypt every stored credential under the first CREDENTIALS_ENCRYPTION_KEYS key."""
    counts = credentials_service.reencrypt_all()
    click.echo(f"Re-encrypted {counts['reencrypted']} stored credentials.")
    if counts["unreadable"]:
        raise click.ClickException(
            f"{counts['unreadable']} stored credentials cannot be decrypted with any configured "
            "key; they were left as they are (their owners must set them again)"
        )
