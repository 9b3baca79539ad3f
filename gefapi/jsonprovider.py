"""Response bodies encoded by orjson: list pages are tens to hundreds of kilobytes."""

import orjson
from flask.json.provider import DefaultJSONProvider

OPTIONS = (
    orjson.OPT_SORT_KEYS  # as Flask's encoder does
    | orjson.OPT_NON_STR_KEYS  # per-item validation errors are keyed by index
    | orjson.OPT_PASSTHROUGH_DATETIME  # anything unusual goes to Flask's default()
)


class OrjsonProvider(DefaultJSONProvider):
    def dumps(self, obj, **kwargs) -> str:
        if kwargs:  # a caller's own json.dumps options (indent, ...)
            return super().dumps(obj, **kwargs)
        try:
            return orjson.dumps(obj, default=self.default, option=OPTIONS).decode()
        except TypeError:  # integers beyond 64 bits in stored params or results
            return super().dumps(obj)
