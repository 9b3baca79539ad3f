"""/api/v1/user"""

from flask import current_app
from flask.views import MethodView
from flask_jwt_extended import current_user

from gefapi.auth import caller, login_required, optional_login, require_role, token_is_fresh
from gefapi.extensions import limiter
from gefapi.models import Role
from gefapi.pages import reset_password_page
from gefapi.routes import Blueprint
from gefapi.schemas.common import (
    FieldSelectionArgs,
    LegacyArgs,
    MessageSchema,
    envelope,
    list_filters,
)
from gefapi.schemas.user import (
    ChangePasswordSchema,
    ResetPasswordSchema,
    UserCreateSchema,
    UserListArgs,
    UserSchema,
    UserUpdateMeSchema,
    UserUpdateSchema,
)
from gefapi.services import user_service

blp = Blueprint("users", __name__, url_prefix="/api/v1/user", description="Accounts")


def _is_legacy(args) -> bool:
    return args.get("legacy", "true").lower() != "false"


def _dump(user, args=None) -> dict:
    args = args or {}
    return envelope(UserSchema.for_request(args.get("include"), args.get("exclude")).dump(user))


recovery_limit = limiter.limit(
    lambda: current_app.config["RATE_LIMIT_PASSWORD_RECOVERY"],
    scope="password-recovery",
    methods=["POST"],
)


@blp.route("")
class Users(MethodView):
    @optional_login
    @limiter.limit(lambda: current_app.config["RATE_LIMIT_USER_CREATION"], scope="user-creation")
    @blp.arguments(LegacyArgs, location="query")
    @blp.arguments(UserCreateSchema)
    @blp.documents(UserSchema)
    def post(self, args, body):
        """Register an account"""
        user = user_service.register(body, by=caller(), legacy=_is_legacy(args))
        return _dump(user)

    @login_required
    @blp.arguments(UserListArgs, location="query")
    @blp.documents(UserSchema, many=True, paginated=True)
    def get(self, args):
        """List accounts (ADMIN)"""
        require_role(current_user, Role.ADMIN)
        schema = UserSchema.for_request(args.get("include"), args.get("exclude"), many=True)
        page = user_service.list_users(**list_filters(args))
        return envelope(schema.dump(page.items), **page.meta())


@blp.route("/me")
class Me(MethodView):
    @login_required
    @blp.arguments(FieldSelectionArgs, location="query")
    @blp.documents(UserSchema)
    def get(self, args):
        """The caller's account"""
        return _dump(current_user, args)

    @login_required
    @blp.arguments(UserUpdateMeSchema)
    @blp.documents(UserSchema)
    def patch(self, body):
        """Update the caller's profile (or password, with a fresh login)"""
        user = user_service.update_me(current_user, body, fresh_login=token_is_fresh())
        return _dump(user)

    @login_required
    @blp.documents(UserSchema)
    def delete(self):
        """Delete the caller's account"""
        return _dump(user_service.delete(current_user, by=current_user))


@blp.route("/me/change-password")
class ChangePassword(MethodView):
    @login_required
    @blp.arguments(ChangePasswordSchema)
    @blp.documents(UserSchema)
    def patch(self, body):
        """Change the caller's password"""
        user = user_service.change_password(
            current_user, body["old_password"], body["new_password"]
        )
        return _dump(user)


@blp.route("/reset-password")
class ResetPassword(MethodView):
    decorators = [recovery_limit]

    @blp.alt_response(200, content_type="text/html", success=True,
                      description="A form that posts the new password to this path")  # fmt: skip
    def get(self):
        """The page the emailed link opens (`?token=`): choose a new password"""
        return reset_password_page()

    @blp.arguments(ResetPasswordSchema)
    @blp.documents(UserSchema)
    def post(self, body):
        """Choose a new password with an emailed token"""
        return _dump(user_service.reset_password(body["token"], body["password"]))


@blp.route("/<user_ref>/recover-password")
class RecoverPassword(MethodView):
    decorators = [recovery_limit]

    @blp.arguments(LegacyArgs, location="query")
    @blp.documents(MessageSchema)
    def post(self, args, user_ref):
        """Email a reset link (or, for legacy callers, a temporary password)"""
        message = user_service.recover_password(user_ref, legacy=_is_legacy(args))
        return envelope({"message": message})


@blp.route("/<user_ref>")
class UserByRef(MethodView):
    @login_required
    @blp.arguments(FieldSelectionArgs, location="query")
    @blp.documents(UserSchema)
    def get(self, args, user_ref):
        """One account: `me`, a UUID or an email (ADMIN for others)"""
        return _dump(user_service.resolve(user_ref, by=current_user), args)

    @login_required
    @blp.arguments(UserUpdateSchema)
    @blp.documents(UserSchema)
    def patch(self, body, user_ref):
        """Update an account (ADMIN: USER profiles; SUPERADMIN: anything)"""
        target = user_service.resolve(user_ref, by=current_user)
        return _dump(user_service.update_user(target, body, by=current_user))

    @login_required
    @blp.documents(UserSchema)
    def delete(self, user_ref):
        """Delete an account (SUPERADMIN, or yourself)"""
        target = user_service.resolve(user_ref, by=current_user)
        return _dump(user_service.delete(target, by=current_user))
