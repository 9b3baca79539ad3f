"""Response bodies encoded by orjson: list pages are tens to hundreds of kilobytes. Request
bodies decoded by the standard library, with hostile input turned into a decode error."""

import json

import orjson
from flask.json.provider import DefaultJSONProvider

OPTIONS = (
    orjson.OPT_SORT_KEYS  # as Flask's encoder does
    | orjson.OPT_NON_STR_KEYS  # per-item validation errors are keyed by index
    | orjson.OPT_PASSTHROUGH_DATETIME  # anything unusual goes to Flask's default()
)
HOSTILE_JSON = "JSON nested too deeply or holding a number too long"


def guarded_loads(loads, data, **kwargs):
    """`loads(data)`, where nesting past the recursion limit and integers past Python's digit
    limit raise JSONDecodeError like any other malformed body, so every caller answers 400."""
    try:
        return loads(data, **kwargs)
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError):
        raise json.JSONDecodeError(HOSTILE_JSON, "<request body>", 0) from None


def holds_nul(document) -> bool:
    """Whether a decoded JSON document holds a NUL character (PostgreSQL cannot store one) in
    any string or key."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class OrjsonProvider(DefaultJSONProvider):
    def dumps(self, obj, **kwargs) -> str:
        if kwargs:  # a caller's own json.dumps options (indent, ...)
            return super().dumps(obj, **kwargs)
        try:
            return orjson.dumps(obj, default=self.default, option=OPTIONS).decode()
        except TypeError:  # integers beyond 64 bits in stored params or results
            return super().dumps(obj)

    def loads(self, s, **kwargs):
        return guarded_loads(super().loads, s, **kwargs)
