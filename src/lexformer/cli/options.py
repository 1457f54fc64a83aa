"""Parsing helpers shared by every subcommand: comma-separated lists checked at parse time,
so a bad value ends in argparse's usage line and exit code 2 before any work starts."""

from __future__ import annotations

import argparse


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


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


def checkpoint_corpus(ckpt, override: str | None) -> str:
    """The corpus to evaluate on: --corpus, else the one the checkpoint was trained on."""
    return override or ckpt.meta.get("corpus", {}).get("name", "shakespeare")
