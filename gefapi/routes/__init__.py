"""HTTP layer: parse, call one service, dump."""

import flask_smorest
from marshmallow import Schema, fields
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from gefapi.jsonprovider import loads_body

# (endpoint, method) pairs that take multipart uploads instead of JSON.
MULTIPART_ENDPOINTS: set[tuple[str, str]] = set()
# (endpoint, method) pairs whose body is raw bytes the view streams (artifact uploads).
RAW_BODY_ENDPOINTS: set[tuple[str, str]] = set()


class Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req):
        """webargs decodes the body itself: hostile JSON must be its 400, not a 500."""
        if not is_json_request(req):
            return core.missing
        return loads_body(req.get_data(cache=True))


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser()

    def arguments(self, schema, *args, **kwargs):
        """One schema instance per route: webargs would build one from a class per request."""
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)

    def documents(self, schema: type[Schema], *, many: bool = False, paginated: bool = False):
        """Document the `{"data": ...}` success body without dumping through it."""
        return self.alt_response(
            200, schema=envelope_schema(schema, many=many, paginated=paginated), success=True
        )


_ENVELOPES: dict[tuple, type[Schema]] = {}


def envelope_schema(schema: type[Schema], *, many: bool, paginated: bool) -> type[Schema]:
    key = (schema, many, paginated)
    if key not in _ENVELOPES:
        attrs = {"data": fields.List(fields.Nested(schema)) if many else fields.Nested(schema)}
        if paginated:
            attrs.update(page=fields.Integer(), per_page=fields.Integer(), total=fields.Integer())
        name = schema.__name__.removesuffix("Schema") + ("List" if many else "") + "Envelope"
        _ENVELOPES[key] = Schema.from_dict(attrs, name=name)
    return _ENVELOPES[key]
