"""Tokenizers: byte-level BPE (HF ``tokenizers``) and raw UTF-8 bytes.

Both kinds are lossless: ``decode(encode(text)) == text`` for any text (the byte
tokenizer replaces invalid UTF-8 with U+FFFD when decoding arbitrary ids). Neither adds
special tokens: documents are concatenated as they are.

A tokenizer is saved as one ``tokenizer.json``: the HF tokenizer's own JSON for BPE, or
``{"kind": "bytes"}`` for bytes; :func:`load_tokenizer` tells them apart by content.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..config import TOKENIZER_KINDS
from ..errors import LexformerError
from ..fileio import atomic_write_text
from .corpus import Corpus

TOKENIZER_FILE = "tokenizer.json"


def _target(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path/tokenizer.json`` if ``path`` is a directory."""
    p = Path(path)
    return p / TOKENIZER_FILE if p.is_dir() else p


def check_kind(kind: str) -> None:
    """Refuse a tokenizer kind that is not one of ``config.TOKENIZER_KINDS``."""
    if kind not in TOKENIZER_KINDS:
        raise LexformerError(f"unknown tokenizer kind {kind!r}; use "
                             f"{' or '.join(repr(k) for k in TOKENIZER_KINDS)}")


class Tokenizer:
    """Byte-level BPE: a thin wrapper around a HF ``tokenizers.Tokenizer``."""

    kind = "bpe"

    def __init__(self, hf_tokenizer) -> None:
        self._tok = hf_tokenizer

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # encode_batch_fast (tokenizers >= 0.20) skips offsets: same ids, faster
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return [e.ids for e in encode(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def to_json(self) -> str:
        """The JSON that :meth:`save` writes (also part of cache keys)."""
        return self._tok.to_str()

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` (``path`` is the file, or a directory to put it in)."""
        target = _target(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, self.to_json())
        return target

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size})"


class ByteTokenizer(Tokenizer):
    """256 symbols: the UTF-8 bytes of the text."""

    kind = "bytes"

    def __init__(self) -> None:
        super().__init__(None)

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < 256]
        if bad:
            raise LexformerError(f"byte tokenizer ids must be in 0..255, got {bad[0]}; the ids "
                                 f"come from a model with a different vocabulary")
        data = bytes(ids)
        return data.decode("utf-8", errors="replace")

    def to_json(self) -> str:
        return json.dumps({"kind": "bytes"})


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 4096,
                        progress: bool = True) -> Tokenizer:
    """Train a byte-level BPE tokenizer (ByteLevel pre-tokenizer and decoder, no special
    tokens). Deterministic: the same texts give the same vocabulary and merges.

    ``vocab_size`` counts the 256 byte symbols; a small corpus may end with fewer tokens
    than asked (``Tokenizer.vocab_size`` is the real size). The trainer's progress bar shows
    only where :func:`lexformer.progress.bars_wanted` (``progress`` and a terminal).
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from ..progress import bars_wanted

    try:
        size = operator.index(vocab_size)
    except TypeError:
        size = -1
    if isinstance(vocab_size, bool) or size < 256:
        raise LexformerError(f"vocab_size must be an integer >= 256 for byte-level BPE, got "
                             f"{vocab_size!r}; use e.g. --vocab-size 4096")
    vocab_size = size
    if vocab_size > 2**31 - 1:
        raise LexformerError(f"vocab_size {vocab_size} is too large; use e.g. 4096")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=bars_wanted(progress),
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(tok)


def build_tokenizer(kind: str, corpus: Corpus, vocab_size: int = 4096,
                    progress: bool = True) -> Tokenizer:
    """A tokenizer of ``kind`` (``"bpe"`` or ``"bytes"``) for a corpus; BPE is trained on
    the ``train`` split only. ``vocab_size`` is ignored for bytes."""
    check_kind(kind)
    if kind == "bytes":
        return ByteTokenizer()
    docs = corpus.splits["train"]
    if not any(d.text for d in docs):
        raise LexformerError(
            f"corpus {corpus.name!r} has no training text to learn a BPE tokenizer from (it is "
            f"an evaluation-only corpus); train on another corpus or use --tokenizer bytes")
    return train_bpe_tokenizer((d.text for d in docs), vocab_size, progress)


def tokenizer_from_json(text: str, source: str = "tokenizer JSON") -> Tokenizer:
    """A tokenizer from the content of a ``tokenizer.json``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LexformerError(f"{source} is not valid JSON ({e.msg} at line {e.lineno}); "
                             f"save the tokenizer again") from None
    if isinstance(data, dict) and data.get("kind") == "bytes":
        return ByteTokenizer()
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        from tokenizers import Tokenizer as HFTokenizer

        try:
            return Tokenizer(HFTokenizer.from_str(text))
        except Exception as e:  # tokenizers raises its own Exception type
            raise LexformerError(f"{source} is not a tokenizer the tokenizers library can read "
                                 f"({str(e).splitlines()[0] if str(e) else e!r})") from None
    raise LexformerError(f'{source} is neither a byte tokenizer ({{"kind": "bytes"}}) nor a HF '
                         f"tokenizers JSON (no \"model\"); save the tokenizer again")


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a ``tokenizer.json`` (or the one in a directory) written by ``save``."""
    target = _target(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LexformerError(f"no tokenizer at {target}; give a tokenizer.json or the folder "
                             f"that holds it") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LexformerError(f"cannot read tokenizer {target}: {e}") from None
    return tokenizer_from_json(text, str(target))


__all__ = [
    "TOKENIZER_FILE", "ByteTokenizer", "Tokenizer", "build_tokenizer", "check_kind",
    "load_tokenizer", "tokenizer_from_json", "train_bpe_tokenizer",
]
