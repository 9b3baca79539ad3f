from marshmallow import fields, post_load, validate

from gefapi.models import Role
from gefapi.schemas.common import ListArgs, QuerySchema, ResourceSchema, StrictSchema, Timestamp

SECTORS = (
    "gov_environment",
    "gov_agriculture",
    "gov_land_management",
    "gov_other",
    "international_org",
    "ngo_development",
    "ngo_community",
    "ngo_conservation",
    "ngo_other",
    "academic",
    "consulting",
    "private_agri_forestry",
    "private_other",
    "independent_researcher",
    "student",
    "other",
)
GENDER_IDENTITIES = ("woman", "man", "non_binary", "self_describe", "prefer_not_to_say")
PURPOSES_OF_USE = (
    "reporting",
    "academic_research",
    "policy_planning",
    "land_restoration",
    "project_monitoring",
    "environmental_assessment",
    "agriculture_forestry",
    "teaching_education",
    "conservation_planning",
    "commercial",
    "community_initiatives",
    "other",
)
ROLES = [role.value for role in Role]


def _text(max_length: int, min_length: int | None = None, **kwargs):
    return fields.String(validate=validate.Length(min=min_length, max=max_length), **kwargs)


def _choice(values, **kwargs):
    return fields.String(validate=validate.OneOf(values), allow_none=True, **kwargs)


class UserSchema(ResourceSchema):
    id = fields.UUID()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    country = fields.String()
    institution = fields.String()
    role_title = fields.String()
    sector = fields.String()
    sector_other = fields.String()
    gender_identity = fields.String()
    gender_identity_description = fields.String()
    gee_license_acknowledged = fields.Boolean()
    purpose_of_use = fields.String()
    purpose_of_use_other = fields.String()
    email_notifications_enabled = fields.Boolean()
    email_subscription_news = fields.Boolean()
    email_subscription_engagement = fields.Boolean()
    email_subscription_system_updates = fields.Boolean()
    is_in_mailing_list = fields.Boolean()
    is_plugin_user = fields.Boolean()
    max_concurrent_executions = fields.Integer()
    deleted = fields.Boolean()
    created_at = Timestamp()
    updated_at = Timestamp()
    last_login_at = Timestamp()


class ProfileSchema(StrictSchema):
    """Fields a user may set on their own account."""

    name = _text(120, min_length=1)
    country = _text(120, allow_none=True)
    institution = _text(255, allow_none=True)
    role_title = _text(255, allow_none=True)
    sector = _choice(SECTORS)
    sector_other = _text(255, allow_none=True)
    gender_identity = _choice(GENDER_IDENTITIES)
    gender_identity_description = _text(255, allow_none=True)
    gee_license_acknowledged = fields.Boolean()
    purpose_of_use = _choice(PURPOSES_OF_USE)
    purpose_of_use_other = _text(2000, allow_none=True)
    email_notifications_enabled = fields.Boolean()
    email_subscription_news = fields.Boolean()
    email_subscription_engagement = fields.Boolean()
    email_subscription_system_updates = fields.Boolean()
    is_in_mailing_list = fields.Boolean()


class UserCreateSchema(ProfileSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = _text(
        120,
        min_length=1,
        metadata={"description": "Default: the part of the email before the @ (CONTRACT 4)"},
    )
    password = fields.String(validate=validate.Length(max=128))
    role = fields.String(validate=validate.OneOf(ROLES))

    @post_load
    def _default_name(self, data, **kwargs):
        """The original admin UI creates users without a name."""
        if data.get("name") is None:
            data["name"] = data["email"].rsplit("@", 1)[0][:120]
        return data


class UserUpdateMeSchema(ProfileSchema):
    # Never raised or restored through one's own profile (CONTRACT 2, 4: fixes W3).
    REFUSED = frozenset({"role", "max_concurrent_executions", "deleted", "is_plugin_user"})
    # The plugin sends the email back unchanged; a different one is refused by the service.
    email = fields.Email()
    # The original web UI changes the password this way (needs a fresh login).
    password = fields.String(validate=validate.Length(max=128))
    repeatPassword = fields.String(validate=validate.Length(max=128))


class UserUpdateSchema(ProfileSchema):
    """What administrators may change on someone's account."""

    REFUSED = frozenset({"password", "deleted", "is_plugin_user"})

    email = fields.Email()
    role = fields.String(validate=validate.OneOf(ROLES))
    max_concurrent_executions = fields.Integer(allow_none=True, validate=validate.Range(min=1))


class UserListArgs(ListArgs):
    role = fields.String(validate=validate.OneOf(ROLES))
    email = fields.String()
    include_deleted = fields.Boolean()


class LoginSchema(StrictSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class RefreshSchema(StrictSchema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=512))


class RefreshArgs(QuerySchema):
    rotate = fields.Boolean()
    legacy = fields.String()


class LogoutSchema(StrictSchema):
    refresh_token = fields.String(validate=validate.Length(max=512))


class ResetPasswordSchema(StrictSchema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=512))
    password = fields.String(required=True, validate=validate.Length(max=128))


class ChangePasswordSchema(StrictSchema):
    old_password = fields.String(required=True, validate=validate.Length(max=1024))
    new_password = fields.String(required=True, validate=validate.Length(max=128))


class TokenPairSchema(StrictSchema):
    access_token = fields.String()
    refresh_token = fields.String()
    user_id = fields.String()
    expires_in = fields.Integer()


class UserSummarySchema(ResourceSchema):
    """A user as embedded in scripts and executions."""

    id = fields.UUID()
    name = fields.String()
    email = fields.String()
    institution = fields.String()
    country = fields.String()
