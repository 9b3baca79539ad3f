"""Fields and schemas shared by every resource."""

import functools
from datetime import UTC, datetime

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from gefapi.errors import ValidationError as AppValidationError


def timestamp(value: datetime) -> str:
    """CONTRACT section 1's form: naive UTC, six fractional digits. (isoformat takes less than
    half of strftime's time, and a list page formats hundreds of these.)"""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds")


class Timestamp(fields.String):
    """Naive UTC with six fractional digits, always (CONTRACT section 1). Documented as a
    string with a pattern: without an offset it is not an RFC 3339 date-time."""

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "metadata",
            {
                "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$",
                "example": "2022-12-05T12:42:27.164465",
            },
        )
        super().__init__(**kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else timestamp(value)


class QueryDateTime(fields.Field):
    """A date or datetime in a query string, as naive UTC.

    `+` in an unencoded offset arrives as a space (the CLI sends such), so it is restored.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        text = str(value).strip().replace(" ", "+")
        if "T" not in text and len(text) > 10 and text[10] == "+":
            text = text[:10] + "T" + text[11:]
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError("Not a valid date or datetime.") from None
        if parsed.tzinfo is not None:
            try:
                parsed = parsed.astimezone(UTC).replace(tzinfo=None)
            except OverflowError:  # 0001-01-01T00:00+05:00 is before datetime.min in UTC
                parsed = datetime.min if parsed.year == 1 else datetime.max
        return parsed


class StrictSchema(Schema):
    """Request bodies, read tolerantly (CONTRACT section 1): unknown keys are ignored and `""` for
    an optional field is that field not given (the admin UIs post fields of their own and `""`
    for every blank select). Known fields with a wrong type or value are still a 400.

    REFUSED names fields of the resource that this body may not set (a user's own `role`, an
    execution's `user_id`): those are a 400 naming the field, never silently dropped, so a
    client never believes a change was made.
    """

    REFUSED: frozenset[str] = frozenset()

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _tolerate(self, data, **kwargs):
        if not isinstance(data, dict):
            return data  # the field checks refuse it
        refused = sorted(name for name in self.REFUSED & data.keys() if data[name] != "")
        if refused:
            raise ValidationError({name: ["This field may not be set here."] for name in refused})
        return {key: value for key, value in data.items() if not self._blank_optional(key, value)}

    def _blank_optional(self, key: str, value) -> bool:
        if value != "":
            return False
        field = next(
            (f for name, f in self.load_fields.items() if (f.data_key or name) == key), None
        )
        return (
            field is not None
            and not field.required
            and not isinstance(field, fields.Raw)  # any JSON: "" is a value there
        )


class QuerySchema(Schema):
    """Query strings: clients add keys of their own (`legacy`, cache busters)."""

    class Meta:
        unknown = "exclude"


class FieldSelectionArgs(QuerySchema):
    include = fields.String()
    exclude = fields.String()


class ListArgs(FieldSelectionArgs):
    page = fields.Integer(validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(validate=validate.Range(min=1, max=100))
    sort = fields.String()


class LegacyArgs(QuerySchema):
    legacy = fields.String()


def list_filters(args: dict) -> dict:
    """A list request's arguments for the service: everything but the field selection."""
    return {key: value for key, value in args.items() if key not in ("include", "exclude")}


def split_names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


class ResourceSchema(Schema):
    """Dump schema whose OPTIONAL fields appear only when named in `include`.

    ALIASES maps an include/exclude name to the fields it stands for.
    """

    OPTIONAL: frozenset[str] = frozenset()
    ALIASES: dict[str, tuple[str, ...]] = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():  # dumped values may be null (and are documented so)
            field.allow_none = True

    @classmethod
    def expand(cls, value: str | None) -> set[str]:
        """The declared fields that include/exclude names. Unknown names are ignored (CONTRACT
        section 1: the admin UI asks for fields of the legacy server's), so they never name an
        internal attribute either: only declared fields are ever dumped."""
        names = set()
        for name in split_names(value):
            names.update(cls.ALIASES.get(name, (name,)))
        return names & cls._declared_fields.keys()

    @classmethod
    def for_request(cls, include: str | None = None, exclude: str | None = None, many=False):
        drop = (set(cls.OPTIONAL) - cls.expand(include)) | cls.expand(exclude)
        return _schema(cls, tuple(sorted(drop)), many)


@functools.lru_cache(maxsize=512)
def _schema(cls: type[Schema], exclude: tuple[str, ...], many: bool) -> Schema:
    """Schemas are stateless once built, and building one per request costs as much as a dump.
    The key holds only declared field names (expand drops others), so the cache stays small."""
    return cls(exclude=exclude, many=many)


def envelope(data, **extra) -> dict:
    return {"data": data, **extra}


def validation_error(field: str, message: str) -> AppValidationError:
    return AppValidationError(message, errors={field: [message]})


class MessageSchema(Schema):
    msg = fields.String()
    message = fields.String()


# What te_schemas' ScriptStatus knows, and so every answer holds (CONTRACT 5).
ANSWERED_STATUSES = ("BUILDING", "SUCCESS", "FAIL")


class ScriptStatusField(fields.String):
    """A script's status as clients see it: a build still queued (PENDING, stored by older
    releases) is already BUILDING (CONTRACT 5; te_schemas refuses any other value)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {"enum": list(ANSWERED_STATUSES)})
        super().__init__(**kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return "BUILDING" if value in (None, "PENDING") else str(value)


class Description(fields.String):
    """Always a string, `""` when none: te_schemas' RemoteScript refuses null (CONTRACT 5)."""

    def _serialize(self, value, attr, obj, **kwargs):
        return "" if value is None else str(value)
