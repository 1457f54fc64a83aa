"""Dataclasses whose fields check themselves: types from the annotations, JSON in and out.

:func:`check_field_types` (called from ``__post_init__``) checks every field against its
annotation — int, float, bool, str, ``Literal``, ``X | None``, tuples, dicts, nested
dataclasses — and :func:`build_dataclass` builds one from a JSON dict, refusing unknown and
missing fields by name. :func:`option` is the field metadata that makes a field a
command-line option (read by ``lexformer.cli.options``).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Literal, get_args

from .errors import LexformerError


def option(flag: str, help: str = "", **extra: Any) -> dict[str, Any]:
    """Field metadata: the field is the command-line option ``flag`` (see
    ``lexformer.cli.options.add_dataclass_options``). ``extra``: ``metavar``, ``choices``
    (where the annotation does not give them) and ``parse`` (a parser of the option's text
    that raises LexformerError, where the annotation's type cannot parse it)."""
    unknown = set(extra) - {"metavar", "choices", "parse"}
    if unknown:
        raise TypeError(f"option() got unknown metadata {sorted(unknown)}")
    return {"cli": flag, "help": help, **extra}


def invalid(where: str, message: str) -> LexformerError:
    """``invalid training config: optim.lr (--lr) must be > 0, got -1.0``."""
    return LexformerError(f"invalid {where}: {message}")


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass (they are strings under PEP 563)."""
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(value matches ``tp``, the value in its canonical form). ints are accepted for
    floats and lists for tuples, as JSON gives them back; bools are never numbers."""
    origin, args = typing.get_origin(tp), get_args(tp)
    if origin is Literal:
        return value in args, value
    if origin in (typing.Union, types.UnionType):
        for member in args:
            ok, canonical = _coerce(value, member)
            if ok:
                return True, canonical
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is Any:
        return True, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            return False, value
        items = [_coerce(v, a) for v, a in zip(value, args)]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp), value
    raise TypeError(f"no type check for {tp!r}")  # a programming error, not a user one


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if isinstance(tp, type) and tp not in _TYPE_NAMES:
        return f"a {tp.__name__}"
    return _TYPE_NAMES.get(tp) or str(tp).replace("typing.", "")


def _label(obj: Any, name: str, prefix: str) -> str:
    """``optim.lr (--lr)``: the field's path, and its option when it has one."""
    flag = next(f.metadata.get("cli") for f in dataclasses.fields(obj) if f.name == name)
    return f"{prefix}{name}" + (f" ({flag})" if flag else "")


def check_field_types(obj: Any, where: str, prefix: str = "") -> None:
    """Check every field of the dataclass ``obj`` against its annotation (and store the
    canonical form: float for an int given to a float field, tuple for a list)."""
    for f in dataclasses.fields(obj):
        tp = hints(type(obj))[f.name]
        value = getattr(obj, f.name)
        ok, canonical = _coerce(value, tp)
        if not ok:
            raise invalid(where, f"{_label(obj, f.name, prefix)} must be {_describe(tp)}, "
                                 f"got {value!r}")
        if canonical is not value:
            object.__setattr__(obj, f.name, canonical)


def positive_ints(obj: Any, where: str, prefix: str, *names: str) -> None:
    """Each named field of ``obj`` must be an int (not a bool) above zero."""
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise invalid(where, f"{_label(obj, name, prefix)} must be a positive integer, "
                                 f"got {value!r}")


def build_dataclass(cls: type, data: Any, where: str, prefix: str = "") -> Any:
    """``cls`` from a JSON dict: unknown or missing fields are refused by name, nested
    dataclass fields are built from their own dicts, types are checked by ``cls`` itself."""
    if not isinstance(data, dict):
        raise invalid(where, f"{prefix.rstrip('.') or 'the config'} must be a JSON object, "
                             f"got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise invalid(where, f"unknown field(s) {', '.join(prefix + u for u in unknown)}; "
                             f"known fields: {', '.join(sorted(fields))}")
    missing = sorted(set(fields) - set(data))
    if missing:
        raise invalid(where, f"missing field(s) {', '.join(prefix + m for m in missing)}")
    values = {}
    for name, value in data.items():
        tp = hints(cls)[name]
        if dataclasses.is_dataclass(tp):
            value = build_dataclass(tp, value, where, f"{prefix}{name}.")
        values[name] = value
    return cls(**values)


def leaf_paths(cls: type, prefix: str = "") -> list[str]:
    """Dotted paths of every non-dataclass field, nested dataclasses walked in field order."""
    paths = []
    for f in dataclasses.fields(cls):
        tp = hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            paths += leaf_paths(tp, f"{prefix}{f.name}.")
        else:
            paths.append(prefix + f.name)
    return paths


__all__ = ["build_dataclass", "check_field_types", "hints", "invalid", "leaf_paths", "option",
           "positive_ints"]
