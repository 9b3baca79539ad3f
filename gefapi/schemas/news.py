"""/api/v1/news and /api/v1/admin/news."""

from flask import current_app
from marshmallow import Schema, ValidationError, fields, pre_load, validate

from gefapi.models import NewsType, Role
from gefapi.schemas.common import QueryDateTime, QuerySchema, ResourceSchema, Timestamp

LANGUAGE_RE = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$"
MAX_MESSAGE_CHARS = 20_000
NEWS_TYPES = [news_type.value for news_type in NewsType]
ROLES = [role.value for role in Role]
# The names each client generation used for the same platforms.
PLATFORM_ALIASES = {
    "qgis_plugin": "qgis_plugin",
    "app": "qgis_plugin",
    "plugin": "qgis_plugin",
    "web": "web",
    "webapp": "web",
    "api_ui": "api_ui",
    "api-ui": "api_ui",
}


def max_message_chars() -> int:
    return int(current_app.config.get("NEWS_MAX_MESSAGE_CHARS", MAX_MESSAGE_CHARS))


def _language(**kwargs):
    return fields.String(
        validate=validate.Regexp(LANGUAGE_RE, error="Not a language code (e.g. en, pt-BR)."),
        **kwargs,
    )


class MessageLength(validate.Validator):
    """At most NEWS_MAX_MESSAGE_CHARS characters (read when validating, so it can be set)."""

    def __call__(self, value):
        limit = max_message_chars()
        if len(value) > limit:
            raise ValidationError(f"Longer than {limit} characters.")
        return value


class NameList(fields.Field):
    """A list of names, or one comma-separated string of them (the admin UI sends that);
    null or an empty list means "all"."""

    def __init__(self, choices: dict[str, str], **kwargs):
        super().__init__(allow_none=True, **kwargs)
        self.choices = choices

    def _deserialize(self, value, attr, data, **kwargs):
        if value is None:
            return []
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValidationError("Must be a list of names or a comma-separated string.")
        names = []
        for item in value:
            name = item.strip()
            if not name:
                continue
            if name not in self.choices:
                raise ValidationError(f"Unknown name {name[:40]!r}: one of {self._allowed()}.")
            if self.choices[name] not in names:
                names.append(self.choices[name])
        return names

    def _allowed(self) -> str:
        return ", ".join(sorted(set(self.choices.values())))


class TolerantBody(Schema):
    """Unknown fields ignored, `""` = not given (CONTRACT section 1)."""

    class Meta:
        unknown = "exclude"

    @pre_load
    def _blank_is_missing(self, data, **kwargs):
        if not isinstance(data, dict):
            return data
        return {key: value for key, value in data.items() if value != ""}


class NewsTranslationBody(TolerantBody):
    title = fields.String(required=True, validate=validate.Length(min=1, max=255))
    message = fields.String(required=True, validate=[validate.Length(min=1), MessageLength()])
    link_text = fields.String(allow_none=True, validate=validate.Length(max=100))


class NewsBody(TolerantBody):
    title = fields.String(validate=validate.Length(min=1, max=255))
    message = fields.String(
        validate=[validate.Length(min=1), MessageLength()],
        metadata={
            "description": "Markdown; raw HTML and links other than http(s)/mailto are "
            "refused (400)."
        },
    )
    language = _language(
        metadata={"description": "Language of title and message; the fallback (default en)"}
    )
    link_url = fields.String(
        allow_none=True,
        validate=validate.Length(max=2000),
        metadata={"description": "http(s) or mailto; `{token}`, `{lang}` placeholders kept"},
    )
    link_text = fields.String(allow_none=True, validate=validate.Length(max=100))
    news_type = fields.String(validate=validate.OneOf(NEWS_TYPES))
    priority = fields.Integer(validate=validate.Range(min=-1000, max=1000))
    target_platforms = NameList(
        PLATFORM_ALIASES,
        metadata={"description": "qgis_plugin, web, api_ui (list or comma-separated); empty = all"},
    )
    target_roles = NameList(
        {role: role for role in ROLES},
        metadata={"description": "USER, ADMIN, SUPERADMIN; empty = everyone, anonymous too"},
    )
    min_version = fields.String(allow_none=True, validate=validate.Length(max=32))
    max_version = fields.String(allow_none=True, validate=validate.Length(max=32))
    publish_at = QueryDateTime(metadata={"description": "Date or datetime (naive = UTC)"})
    expires_at = QueryDateTime(allow_none=True)
    is_active = fields.Boolean()
    translations = fields.Dict(
        keys=_language(),
        values=fields.Nested(NewsTranslationBody, allow_none=True),
        metadata={"description": "language -> {title, message, link_text}; null removes one"},
    )

    @pre_load
    def _legacy_names(self, data, **kwargs):
        """The admin UI sends the window as start_date / end_date."""
        if isinstance(data, dict):
            for old, new in (("start_date", "publish_at"), ("end_date", "expires_at")):
                if old in data and new not in data:
                    data = {**data, new: data[old]}
        return data


class NewsCreateBody(NewsBody):
    title = fields.String(required=True, validate=validate.Length(min=1, max=255))
    message = fields.String(required=True, validate=[validate.Length(min=1), MessageLength()])


class NewsUpdateBody(NewsBody):
    """Every field optional: only those given change."""


class NewsTranslationsBody(TolerantBody):
    translations = fields.Dict(
        required=True,
        keys=_language(),
        values=fields.Nested(NewsTranslationBody, allow_none=True),
    )


class NewsSchema(ResourceSchema):
    """A news item as the clients show it, in the language asked for when translated."""

    id = fields.UUID()
    title = fields.String()
    message = fields.String(metadata={"description": "The markdown source"})
    message_html = fields.String(metadata={"description": "Rendered and sanitized HTML"})
    language = fields.String(metadata={"description": "The language of title and message"})
    link_url = fields.String()
    link_text = fields.String()
    news_type = fields.String()
    priority = fields.Integer()
    publish_at = Timestamp()
    expires_at = Timestamp()
    created_at = Timestamp()
    updated_at = Timestamp()


class NewsTranslationSchema(Schema):
    language = fields.String()
    title = fields.String()
    message = fields.String()
    message_html = fields.String()
    link_text = fields.String(allow_none=True)
    updated_at = Timestamp()


class NewsAdminSchema(NewsSchema):
    target_platforms = fields.List(fields.String())
    target_roles = fields.List(fields.String())
    min_version = fields.String()
    max_version = fields.String()
    is_active = fields.Boolean()
    created_by_id = fields.UUID()
    # The admin UI's edit form reads the window under these names.
    start_date = fields.Method("_start_date", metadata={"type": "string", "format": "date"})
    end_date = fields.Method("_end_date", metadata={"type": "string", "format": "date"})
    translations = fields.Method("_translations")

    def _start_date(self, item):
        return item.publish_at.date().isoformat() if item.publish_at else None

    def _end_date(self, item):
        return item.expires_at.date().isoformat() if item.expires_at else None

    def _translations(self, item) -> dict:
        schema = NewsTranslationSchema()
        return {t.language: schema.dump(t) for t in item.translations}


class _BlankQuery(QuerySchema):
    @pre_load
    def _blank_is_missing(self, data, **kwargs):
        return {key: value for key, value in data.items() if value != ""}


class NewsLanguageArgs(_BlankQuery):
    lang = _language(metadata={"description": "Wanted language; others fall back"})


class NewsListArgs(NewsLanguageArgs):
    platform = fields.String(
        validate=validate.Length(max=64),
        metadata={"description": "qgis_plugin, web or api_ui (older names accepted)"},
    )
    version = fields.String(
        validate=validate.Length(max=64), metadata={"description": "The client's version"}
    )
    page = fields.Integer(validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(validate=validate.Range(min=1, max=100))
    sort = fields.String(validate=validate.Length(max=200))


class AdminNewsListArgs(_BlankQuery):
    platform = fields.String(validate=validate.Length(max=64))
    page = fields.Integer(validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(validate=validate.Range(min=1, max=100))
    sort = fields.String(validate=validate.Length(max=200))
    include_inactive = fields.Boolean(load_default=True)
    include_expired = fields.Boolean(load_default=True)
