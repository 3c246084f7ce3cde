"""Turning payloads and headers into JSON text that jsonb will accept.

Checked before any round trip, so a bad payload costs nothing and loses
nothing: the caller gets a PayloadError naming the problem and the fix.
"""

from __future__ import annotations

import json
import json.scanner
import re
from typing import Any, cast

from psycopg.abc import Buffer
from psycopg.adapt import Loader

from pgqrs._errors import PayloadError

# A JSON escape for NUL or for a UTF-16 surrogate, preceded by an even number
# of backslashes (so it is an escape, not an escaped backslash).
_BAD_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_SURROGATE_PAIR = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def encode_payload(payload: Any, max_bytes: int) -> str:
    """JSON text for ``payload``.

    A ``str`` is taken as JSON text already (the seed passes ``json.dumps(...)``);
    everything else is encoded with ``json.dumps``.
    """
    if isinstance(payload, str):
        try:
            json.loads(payload)
        except RecursionError:
            raise PayloadError("payload is JSON text nested too deeply to store") from None
        except ValueError as exc:
            shown = payload if len(payload) <= 40 else payload[:37] + "..."
            raise PayloadError(
                f"payload {shown!r} is a str but not JSON text ({exc}); a str payload is sent "
                f"as JSON as it is: to send a plain string, pass json.dumps({shown!r})"
            ) from None
        text = payload
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        raise PayloadError(
            "payload is bytes: decode it to JSON text first, or wrap it (e.g. base64) in a dict"
        )
    else:
        text = _dumps(payload, "payload")
    return _check(text, "payload", max_bytes)


def encode_headers(headers: Any, max_bytes: int) -> str | None:
    """JSON text for a headers mapping, or None when there are none."""
    if headers is None:
        return None
    if not isinstance(headers, dict) or not all(isinstance(k, str) for k in headers):
        raise PayloadError("headers must be a dict with str keys")
    return _check(_dumps(headers, "headers"), "headers", max_bytes)


def encode_json(value: Any, what: str, max_bytes: int) -> str | None:
    """JSON text for an optional result or error value."""
    if value is None:
        return None
    return _check(_dumps(value, what), what, max_bytes)


#: One encoder for every payload: ``json.dumps`` with options builds a new
#: JSONEncoder on each call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


_DECODER = json.JSONDecoder()
_DECODE = _DECODER.decode
#: The decoder's C scanner: what ``decode`` runs after its whitespace regex
#: and before its trailing check, both needless on PostgreSQL's jsonb output.
_SCAN = json.scanner.make_scanner(cast(Any, _DECODER))


def decode_json(data: str | Buffer) -> Any:
    """json/jsonb column text to a value, as ``json.loads`` would, with less
    per-call work (~1 us a message, measured): the empty object (every
    message's default headers) without parsing; otherwise the decoder's scanner
    alone, falling back to the whole decoder (leading or trailing whitespace, a
    json column's text, or an error to report)."""
    if data == b"{}" or data == "{}":
        return {}
    text = data if isinstance(data, str) else str(data, "utf-8")
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return _DECODE(text)
    return value if end == len(text) else _DECODE(text)


class JsonTextLoader(Loader):
    """psycopg loader of json and jsonb text results, with ``decode_json``:
    psycopg's own copies each value to bytes and adds a call per value."""

    def load(self, data: Buffer) -> Any:
        return decode_json(data)


def _dumps(value: Any, what: str) -> str:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        found = _unencodable(value)
        problem = f"{what}{found[0]} {found[1]}" if found else f"{what} ({exc})"
        raise PayloadError(
            f"{problem}: it cannot be encoded as JSON; use dict, list, str, int, float, "
            "bool or None (no NaN or Infinity)"
        ) from None
    except RecursionError:
        raise PayloadError(f"{what} is nested too deeply to encode as JSON") from None


_JSON_KEYS = (str, int, float, bool, type(None))


def _unencodable(value: Any) -> tuple[str, str] | None:
    """Where the encoder failed, and why: ``("['rows'][3]['when']", "is a datetime")``.

    Run only after a failure, so the common case pays nothing; json's own
    message names the type but not where it is, in a payload of thousands of
    values. Depth-first, in the encoder's order, without recursion.
    """
    stack: list[tuple[str, Any, frozenset[int]]] = [("", value, frozenset())]
    while stack:
        path, v, parents = stack.pop()
        if isinstance(v, (str, int, bool)) or v is None:
            continue
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                return path, f"is {v!r}"
            continue
        if id(v) in parents:
            return path, f"is an enclosing {type(v).__name__} again (a circular reference)"
        if isinstance(v, dict):
            inner = parents | {id(v)}
            children = []
            for k, item in v.items():
                if not isinstance(k, _JSON_KEYS):
                    return path, f"has a key of type {type(k).__name__} ({k!r:.40})"
                children.append((f"{path}[{k!r:.40}]", item, inner))
            stack.extend(reversed(children))
        elif isinstance(v, (list, tuple)):
            inner = parents | {id(v)}
            stack.extend((f"{path}[{i}]", item, inner) for i, item in reversed(list(enumerate(v))))
        else:
            kind = f"{type(v).__module__}.{type(v).__qualname__}".removeprefix("builtins.")
            return path, f"is of type {kind}"
    return None


def _check(text: str, what: str, max_bytes: int) -> str:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise PayloadError(
            f"{what} contains a lone UTF-16 surrogate, which PostgreSQL cannot store; "
            "clean the string (e.g. .encode('utf-8', 'replace').decode())"
        ) from None
    if size > max_bytes:
        raise PayloadError(
            f"{what} is {size} bytes of JSON, over the limit of {max_bytes} bytes; store large "
            "data elsewhere and enqueue a reference, or raise Config.max_payload_bytes"
        )
    if "\\u" in text:
        for match in _BAD_ESCAPE.finditer(text):
            if match[1] == "0000":
                raise PayloadError(
                    f"{what} contains a NUL character (\\u0000), which PostgreSQL's jsonb "
                    "cannot store; remove it or encode the data (e.g. base64)"
                )
            start = match.end() - 6
            if not _SURROGATE_PAIR.match(text, start) and not _SURROGATE_PAIR.match(
                text, max(0, start - 6)
            ):
                raise PayloadError(
                    f"{what} contains a lone UTF-16 surrogate escape, which PostgreSQL cannot "
                    "store; clean the string first"
                )
    return text
