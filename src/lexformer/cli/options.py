"""Parsing helpers shared by every subcommand: the parser whose errors are one line
(:class:`OneLineErrorParser`), comma-separated lists checked at parse time, so a bad value
ends in one line and exit code 2 before any work starts; and options generated from a config
dataclass's fields (:func:`add_dataclass_options`)."""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import functools
import sys
import types
import typing


class OneLineErrorParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are the CLI's one line, ``lexformer: error:
    ...`` and exit code 2, like every other bad input: argparse's own usage block buried the
    one line that matters under a dozen lines of option names. ``--help`` still prints the
    usage. Subparsers inherit the class (argparse builds them with the parent's type)."""

    def error(self, message: str):
        command = self.prog.removeprefix("lexformer").strip()
        hint = f" (lexformer {command} --help lists the options)" if command else ""
        print(f"lexformer: error: {' '.join(message.splitlines())}{hint}", file=sys.stderr)
        sys.exit(2)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default after its help, except where there is none to show (None,
    a flag's False) or the help already says it: "(default: None)" teaches nothing."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False) or "default" in text:
            return text
        return super()._get_help_string(action)


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def seed_type(text: str) -> int:
    """argparse type of every --seed: an integer in 0 … MAX_SEED, the range every generator a
    command seeds accepts (numpy's legacy seeding stops at 2**32 − 1)."""
    from ..config import MAX_SEED

    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must lie in 0 … {MAX_SEED}, got {seed}")
    return seed


def name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def attention_modes(text: str) -> list[str]:
    """Comma-separated attention modes, checked at parse time (before any work)."""
    from ..config import ATTENTION_MODES

    modes = name_list(text)
    bad = [m for m in modes if m not in ATTENTION_MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(
            f"unknown attention mode(s) {', '.join(bad) or '(none)'}; choose from "
            + ", ".join(ATTENTION_MODES))
    return modes


def add_placement_options(parser: argparse.ArgumentParser) -> None:
    """--device and --dtype, for the commands that open a model with ``open_model`` (their
    names are checked at parse time; the pair by :func:`check_placement`)."""
    from ..hf.placement import DEVICE_OPTION_HELP, DTYPE_OPTION_HELP, parse_device, parse_dtype

    parser.add_argument("--device", type=_argparse_type(parse_device), metavar="DEVICE",
                        help=DEVICE_OPTION_HELP)
    parser.add_argument("--dtype", type=_argparse_type(parse_dtype), metavar="DTYPE",
                        help=DTYPE_OPTION_HELP)


def check_placement(args) -> None:
    """The --device and --dtype pair (fp16 on the CPU, auto's choice), before any loading."""
    if args.device is not None or args.dtype is not None:
        from ..hf.placement import resolve_placement

        resolve_placement(args.device, args.dtype)


# --------------------------------------------------------------------------- dataclass options
def _metadata(cls: type, name: str) -> dict:
    """The option metadata of field ``name``: its own, else that of the nearest base class
    declaring it (a subclass that only changes a default keeps the base's option)."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and "cli" in f.metadata:
            return dict(f.metadata)
    return {}


def _option_fields(cls: type, prefix: str = ""):
    """(dotted path, field, type, metadata) of every field of ``cls`` (nested dataclasses
    included) whose metadata names a command-line option."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _option_fields(tp, f"{prefix}{f.name}.")
        elif meta := _metadata(cls, f.name):
            yield prefix + f.name, f, tp, meta


def _value_type(tp: type) -> tuple[type | None, tuple | None]:
    """The argparse ``type`` and ``choices`` for a field annotation (``X | None`` → X;
    a sequence of str or int → a comma-separated list)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is typing.Literal:
        return None, typing.get_args(tp)
    if typing.get_origin(tp) in (collections.abc.Sequence, list, tuple):
        return {int: int_list, str: name_list}[typing.get_args(tp)[0]], None
    return tp, None


def _argparse_type(parse):
    """``parse`` as an argparse type: its LexformerError becomes argparse's usage line."""
    from ..errors import LexformerError

    @functools.wraps(parse)
    def wrapped(text: str):
        try:
            return parse(text)
        except LexformerError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return wrapped


def _help(meta: dict, field: dataclasses.Field, show_default: bool) -> str:
    """The help text, with the field's default appended as ``HelpFormatter`` would show it
    (the option itself has none: an option left out stays out of the namespace)."""
    text, default = meta["help"], field.default
    if (show_default and text and "default" not in text and default is not dataclasses.MISSING
            and not isinstance(default, bool) and default not in (None, False)):
        return f"{text} (default: {default})"
    return text


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, prefix: str = "",
                          show_defaults: bool = False) -> None:
    """One option per field of ``cls`` that carries ``lexformer.config.option`` metadata:
    Literal fields give ``choices``, bool fields a flag (``store_false`` where the field is
    True by default, as ``--no-progress``), sequences of int or str a comma-separated list.
    An option left out stays out of the namespace (so the preset's or the settings' default
    holds); its ``dest`` is the field's dotted path. ``show_defaults``: the help states the
    field's default (for settings whose defaults are the command's). An option already in
    ``parser`` (a field shared by two settings classes) is not added again."""
    taken = {flag for action in parser._actions for flag in action.option_strings}
    for path, f, tp, meta in _option_fields(cls, prefix):
        if meta["cli"] in taken:
            continue
        kwargs: dict = {"dest": path, "default": argparse.SUPPRESS,
                        "help": _help(meta, f, show_defaults)}
        value_type, choices = _value_type(tp)
        if value_type is bool:
            kwargs["action"] = "store_false" if f.default is True else "store_true"
        elif "parse" in meta:
            kwargs["type"] = _argparse_type(meta["parse"])
        elif choices is not None or "choices" in meta:
            kwargs["choices"] = meta.get("choices", choices)
        else:
            kwargs["type"] = value_type
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        parser.add_argument(meta["cli"], **kwargs)


def overrides_from_args(args: argparse.Namespace, cls: type, prefix: str = "") -> dict:
    """``{dotted field path: value}`` for the options of ``cls`` given on the command line
    (the prefix is removed from the paths)."""
    return {path[len(prefix):]: getattr(args, path)
            for path, *_ in _option_fields(cls, prefix) if hasattr(args, path)}
