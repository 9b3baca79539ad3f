"""Response bodies encoded by orjson: list pages are tens to hundreds of kilobytes. Request
bodies decoded by the standard library, with hostile input turned into a decode error."""

import json
import math
import re

import orjson
from flask.json.provider import DefaultJSONProvider

OPTIONS = (
    orjson.OPT_SORT_KEYS  # as Flask's encoder does
    | orjson.OPT_NON_STR_KEYS  # per-item validation errors are keyed by index
    | orjson.OPT_PASSTHROUGH_DATETIME  # anything unusual goes to Flask's default()
)
HOSTILE_JSON = "JSON nested too deeply, or with a number out of range (NaN, Infinity, too long)"
# A float can only overflow with a 3-digit exponent or hundreds of digits: only then is each
# float checked (a Python call per float costs half again the parse).
MAYBE_OUT_OF_RANGE = re.compile(r"[eE]\+?0*[1-9]\d{2}|\d{300}")


def guarded_loads(loads, data, **kwargs):
    """`loads(data)`, where nesting past the recursion limit and integers past Python's digit
    limit raise JSONDecodeError like any other malformed body, so every caller answers 400."""
    try:
        return loads(data, **kwargs)
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError):
        raise json.JSONDecodeError(HOSTILE_JSON, "<request body>", 0) from None


def _not_json(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def loads_body(data: str | bytes):
    """A request body (or configuration.json) as PostgreSQL's jsonb can store it: also NaN,
    Infinity and numbers past the float range, which Python reads, raise JSONDecodeError."""
    if isinstance(data, bytes | bytearray):
        try:
            data = data.decode(json.detect_encoding(data), "surrogatepass")
        except UnicodeDecodeError:
            raise json.JSONDecodeError("Not UTF-8, UTF-16 or UTF-32 text", "<body>", 0) from None
    options = {"parse_constant": _not_json}
    if MAYBE_OUT_OF_RANGE.search(data):
        options["parse_float"] = _finite_float
    return guarded_loads(json.loads, data, **options)


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
        if kwargs:  # a caller's own json.loads options
            return guarded_loads(super().loads, s, **kwargs)
        return loads_body(s)
