"""Task arguments and results to JSON values and back, by the function's type hints.

Why here and not in ``_payload``: the payload rules (what jsonb accepts:
finite numbers, no NUL, size) stay in one place, ``_payload.encode_payload``;
this module only turns dataclasses, pydantic models and enums into JSON
values first, and turns JSON values back into the types a task's signature
asks for, naming the field that does not fit.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import sys
import types
import typing
from typing import Any

from pgqrs._errors import PayloadError

_PRIMITIVES = (str, int, float, bool, type(None))


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")


def _pydantic_base() -> type | None:
    """pydantic.BaseModel when pydantic is imported (pgqrs never imports it itself)."""
    module = sys.modules.get("pydantic")
    return getattr(module, "BaseModel", None) if module is not None else None


def to_json(value: Any, where: str) -> Any:
    """``value`` as JSON values (dict, list, str, int, float, bool, None).

    Dataclasses become objects of their fields, pydantic models their
    ``model_dump(mode="json")``, enums their value. Anything else is a
    PayloadError naming ``where`` (e.g. ``send_email argument 'to'``) and
    the path inside it. Numbers are checked later, by the payload encoder.
    """
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value, where)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, enum.Enum):
                k = k.value
            if not isinstance(k, str):
                raise PayloadError(
                    f"{where} has a key of type {_type_name(k)} ({k!r:.40}): JSON object keys "
                    "are strings"
                )
            out[k] = to_json(v, f"{where}[{k!r:.40}]")
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_json(getattr(value, f.name), f"{where}.{f.name}")
            for f in dataclasses.fields(value)
        }
    base = _pydantic_base()
    if base is not None and isinstance(value, base):
        try:
            return typing.cast(Any, value).model_dump(mode="json")
        except Exception as exc:  # pydantic's PydanticSerializationError and kin
            raise PayloadError(f"{where} (a {_type_name(value)}) cannot be dumped: {exc}") from None
    raise PayloadError(
        f"{where} is of type {_type_name(value)}, which a task cannot send: use a JSON value "
        "(dict, list, str, int, float, bool, None), a dataclass, an enum or a pydantic model "
        "(e.g. send a datetime as .isoformat() text, or inside a pydantic model)"
    )


def hints_of(func: Any) -> dict[str, Any]:
    """The resolved type hints of ``func`` (string annotations too)."""
    try:
        return typing.get_type_hints(func)
    except Exception:  # an annotation naming something undefined: decode without it
        return {}


def from_json(value: Any, hint: Any, where: str) -> Any:
    """``value`` (decoded JSON) as the type ``hint`` asks for; PayloadError naming
    ``where`` when it does not fit. Unknown or absent hints take the value as is."""
    if hint is Any or hint is inspect.Parameter.empty or hint is object:
        return value
    if hint is None or hint is type(None):
        if value is not None:
            raise _mismatch(value, "None", where)
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return from_json(value, arg, where)
            except PayloadError as exc:
                errors.append(str(exc))
        raise PayloadError(errors[0] if len(errors) == 1 else f"{where} fits none of {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise PayloadError(f"{where} is {value!r:.60}, expected one of {list(args)!r}")
        return value
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable, set, frozenset):
        if not isinstance(value, list):
            raise _mismatch(value, "a list", where)
        item = args[0] if args else Any
        items = [from_json(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return origin(items) if origin in (set, frozenset) else items
    if origin is tuple:
        if not isinstance(value, list):
            raise _mismatch(value, "a list (for a tuple)", where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise PayloadError(f"{where} has {len(value)} items, the tuple type {len(args)}")
        return tuple(
            from_json(v, args[i] if args else Any, f"{where}[{i}]") for i, v in enumerate(value)
        )
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise _mismatch(value, "an object", where)
        item = args[1] if len(args) == 2 else Any
        return {k: from_json(v, item, f"{where}[{k!r:.40}]") for k, v in value.items()}
    if origin is not None:  # Annotated, generics we do not know: the value as is
        return value
    if not isinstance(hint, type):
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _mismatch(value, "a bool", where)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _mismatch(value, "an int", where)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _mismatch(value, "a number", where)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _mismatch(value, "a string", where)
        return value
    if issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise PayloadError(
                f"{where} is {value!r:.60}, not a value of {hint.__qualname__}"
            ) from None
    if dataclasses.is_dataclass(hint):
        return _dataclass(value, hint, where)
    base = _pydantic_base()
    if base is not None and issubclass(hint, base):
        try:
            return typing.cast(Any, hint).model_validate(value)
        except Exception as exc:  # pydantic.ValidationError
            raise PayloadError(f"{where} is not a valid {hint.__qualname__}: {exc}") from None
    if hint in (dict, list) and not isinstance(value, hint):
        raise _mismatch(value, f"a {hint.__name__}", where)
    return value


def _dataclass(value: Any, cls: type, where: str) -> Any:
    if not isinstance(value, dict):
        raise _mismatch(value, f"an object (for {cls.__qualname__})", where)
    hints = hints_of(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in value if k not in fields]
    if unknown:
        raise PayloadError(
            f"{where} has field(s) {', '.join(map(repr, unknown))} that {cls.__qualname__} "
            "does not have"
        )
    missing = [
        name
        for name, f in fields.items()
        if name not in value
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise PayloadError(
            f"{where} lacks field(s) {', '.join(map(repr, missing))} of {cls.__qualname__}"
        )
    kwargs = {k: from_json(v, hints.get(k, Any), f"{where}.{k}") for k, v in value.items()}
    return cls(**kwargs)


def _mismatch(value: Any, expected: str, where: str) -> PayloadError:
    return PayloadError(f"{where} is {_type_name(value)} {value!r:.60}, expected {expected}")
