"""Turning payloads and headers into JSON text that jsonb will accept.

Checked before any round trip, so a bad payload costs nothing and loses
nothing: the caller gets a PayloadError naming the problem and the fix.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from collections.abc import Sequence
from typing import Any, cast

from psycopg.abc import Buffer
from psycopg.adapt import Loader

from pgqrs._errors import PayloadError

# A JSON escape for NUL or for a UTF-16 surrogate, preceded by an even number
# of backslashes (so it is an escape, not an escaped backslash).
_BAD_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_SURROGATE_PAIR = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")


#: The payload rules (docs/payloads.md), the same in the Rust crate
#: (src/payload.rs) and in the server (sql/functions/json_check.sql), so that
#: what one client stores every client reads:
#:
#: * arrays and objects nest at most MAX_DEPTH levels: serde_json stops at
#:   128, Python's decoder at its recursion limit (~1,000, less in a deep stack);
#: * every number is finite as a 64-bit float, so its magnitude is below
#:   ``2**1024 - 2**970`` (what rounds to the largest double): at most 309
#:   integer digits, far under Python's 4,300-digit limit for ``int``, and
#:   no number a Python decoder turns into ``inf``.
MAX_DEPTH = 64
#: Integer digits from which a number may be too large (1e308 has 309).
MAX_SAFE_DIGITS = 308
_LONG_DIGITS = re.compile(r"\d{309}")
#: Every byte but brackets (bytes.translate deletes them).
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
#: The innermost pairs, both kinds in one pass: one level a pass (two
#: replace() calls in turn would peel "{[]}" in one).
_INNER_PAIR = re.compile(rb"\[\]|\{\}")
_LONG_NUMBER = re.compile(r"(?<![\d.eE+-])-?\d{309,}(?:\.\d+)?(?:[eE][-+]?\d+)?")


def rule_problem(text: str) -> str | None:
    """What in the JSON ``text`` breaks the payload rules ("is nested ...",
    "holds the number ..."), or None.

    Cheap for the usual payload: text with at most MAX_DEPTH brackets cannot
    nest too deeply and text without 309 digits in a row cannot hold a number
    too large (PostgreSQL writes numbers without exponents; JSON text sent as
    is gets its exponents checked by ``encode_payload``), so only a large
    payload pays for a scan, in C-level passes.
    """
    n = len(text)
    deep = n > 2 * MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH
    long = n > MAX_SAFE_DIGITS and _LONG_DIGITS.search(text) is not None
    if not (deep or long):
        return None
    # What is outside strings: escaped backslashes and quotes dropped, every
    # other quote opens or closes a string.
    unescaped = text.replace("\\\\", "").replace('\\"', "") if "\\" in text else text
    outside = "".join(unescaped.split('"')[::2])
    if deep:
        # Only brackets, then peel the innermost pairs off, one level a pass.
        brackets = outside.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKET)
        if _nested_deeper(brackets, MAX_DEPTH):  # None (not JSON): the decoder will say so
            return (
                f"is nested deeper than {MAX_DEPTH} levels (the limit, so that every "
                "client can decode it)"
            )
    if long:
        for number in _LONG_NUMBER.findall(outside):
            if not math.isfinite(float(number)):
                return _too_large(number)
    return None


def _nested_deeper(brackets: bytes, limit: int) -> bool | None:
    """Whether ``brackets`` (only ``[]{}``) nest deeper than ``limit``: the
    innermost pairs peeled off, one level a pass. None: they do not pair up."""
    depth = 0
    while brackets:
        inner = _INNER_PAIR.sub(b"", brackets)
        if inner == brackets:
            return None
        brackets = inner
        depth += 1
        if depth > limit:
            return True
    return False


def _too_large(number: str) -> str:
    shown = number if len(number) <= 20 else f"{number[:12]}... ({len(number)} characters)"
    return (
        f"holds the number {shown}, beyond the range of a 64-bit float (the limit, so that "
        "every client reads it as a finite number); send it as a string"
    )


class _NotFinite(ValueError):
    pass


def _finite_float(text: str) -> float:
    """json.loads's parse_float for JSON text sent as is: 1e5000 would become inf."""
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(_too_large(text))
    return value


def _no_constant(text: str) -> Any:
    """json.loads accepts NaN and Infinity; JSON (and jsonb) does not."""
    raise _NotFinite(f"holds {text}, which is not JSON; send a finite number or a string")


class Undecodable:
    """Stands for a json/jsonb value this client cannot decode, or that breaks
    the payload rules (a row written by other means than pgqrs's functions).

    Decoding returns it instead of raising, so that one row never fails a
    whole result: a dequeue dead-letters the message (``PayloadError``) and
    delivers the others; listings show it in place of the value.
    """

    __slots__ = ("reason", "size")

    def __init__(self, reason: str, size: int) -> None:
        #: Why it cannot be read, e.g. "is nested deeper than 64 levels".
        self.reason = reason
        #: The JSON text's length, in characters.
        self.size = size

    def __repr__(self) -> str:
        return f"<undecodable JSON of {self.size} characters: {self.reason}>"


def encode_payload(payload: Any, max_bytes: int) -> str:
    """JSON text for ``payload``.

    A ``str`` is taken as JSON text already (the seed passes ``json.dumps(...)``);
    everything else is encoded with ``json.dumps``.
    """
    if isinstance(payload, str):
        # The rules first: a 5,000-digit integer or JSON nested 1,000 deep would
        # make json.loads itself fail, with a message that hides the reason.
        problem = rule_problem(payload)
        if problem is not None:
            raise PayloadError(f"payload {problem}") from None
        try:
            json.loads(payload, parse_float=_finite_float, parse_constant=_no_constant)
        except RecursionError:
            raise PayloadError(f"payload is nested deeper than {MAX_DEPTH} levels") from None
        except _NotFinite as exc:
            raise PayloadError(f"payload {exc}") from None
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


#: Payload types the batch encoder takes whole (exact types: a str is JSON
#: text, checked one by one; anything else may need its own error message).
_PLAIN_TYPES = frozenset({dict, list, tuple, int, float, bool, type(None)})
#: bytes.translate tables: every digit to b"0"; every byte but brackets and
#: quotes deleted.
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * (MAX_SAFE_DIGITS + 1)
_NOT_BRACKET_OR_QUOTE = bytes(b for b in range(256) if b not in b'[]{}"')


def encode_payloads(payloads: Sequence[Any], max_bytes: int) -> str:
    """One JSON array text holding ``payloads``, each checked as
    ``encode_payload`` checks it.

    Why: a batch's payloads are almost always small dicts; one encoder call
    for the whole batch and a few C-level passes over its bytes cost a
    fraction of a call and a check per payload (docs/performance.md). The
    rules hold for each payload when they hold for the array one level
    deeper: each payload's text is a part of it (so at most as many bytes,
    no NUL or lone surrogate escape). Anything else (JSON text given as a
    str, an unusual type, or a check that does not surely pass) goes payload
    by payload, so an error names the problem as ``encode_payload`` does."""
    if _PLAIN_TYPES.issuperset(map(type, payloads)):
        try:
            text = _ENCODER.encode(payloads if type(payloads) is list else list(payloads))
            data = text.encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            pass  # per payload: names the one that cannot be encoded
        else:
            if len(data) <= max_bytes and b"\\u" not in data and _array_within_rules(data):
                return text
    return "[" + ",".join([encode_payload(p, max_bytes) for p in payloads]) + "]"


def _array_within_rules(data: bytes) -> bool:
    """True when the JSON array ``data`` surely keeps the payload rules one
    level deeper (False: not sure, check each payload): no run of digits
    that could be a number too large, and arrays and objects, outside
    strings, nested at most MAX_DEPTH + 1 levels. Bytes methods only."""
    if len(data) > MAX_SAFE_DIGITS and _LONG_RUN in data.translate(_ZERO_DIGITS):
        return False
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH + 1:
        return True
    if b"\\" in data:  # escapes first: what is left of a backslash is harmless
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Brackets and quotes only; then drop the strings. Removing each '""'
    # keeps quotes paired (an empty string, or two strings joined with
    # nothing outside between them).
    brackets = data.translate(None, _NOT_BRACKET_OR_QUOTE).replace(b'""', b"")
    if b'"' in brackets:
        brackets = b"".join(brackets.split(b'"')[::2])
    return _nested_deeper(brackets, MAX_DEPTH + 1) is False


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
    json column's text, or an error to report).

    Never raises for the text's content: text that breaks the payload rules or
    cannot be decoded gives an ``Undecodable``, so that one row written by
    other means never fails a whole batch."""
    if data == b"{}" or data == "{}":
        return {}
    text = data if isinstance(data, str) else str(data, "utf-8")
    if len(text) > 2 * MAX_DEPTH and (problem := rule_problem(text)) is not None:
        return Undecodable(problem, len(text))
    try:
        return decode_sent(text)
    except RecursionError:
        return Undecodable(f"is nested deeper than {MAX_DEPTH} levels", len(text))
    except ValueError as exc:  # e.g. an integer over Python's digit limit
        return Undecodable(f"cannot be decoded ({exc})", len(text))


def decode_sent(text: str) -> Any:
    """The value of JSON ``text``, with no rule check: for text this client
    encoded and checked itself (the payload array of an enqueue, one level
    deeper than any payload, which the check would count), and the decoding
    step of ``decode_json``. Raises as the decoder does."""
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
    if size > 2 * MAX_DEPTH and (problem := rule_problem(text)) is not None:
        raise PayloadError(f"{what} {problem}")
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
