"""A pretrained model's tokenizer in the shape lexformer's token cache expects.

:func:`lexformer.data.tokenize_corpus` keys its cache by the tokenizer's JSON and stores ids
by ``vocab_size``; a transformers fast tokenizer carries a ``tokenizers.Tokenizer`` (its
``backend_tokenizer``) that gives both. Corpus documents are encoded without special tokens
(no BOS/EOS inserted into the text), as :meth:`lexformer.hf.HFLanguageModel.encode` does, so
the tokens scored are the text's own.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..data.tokenizer import Tokenizer
from ..errors import LexformerError


class PretrainedTokenizer(Tokenizer):
    """The ``tokenizers.Tokenizer`` behind a transformers tokenizer, adding no special
    tokens; its cache identity is the tokenizer's full JSON (vocabulary, merges, rules)."""

    kind = "pretrained"

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]


def corpus_tokenizer(hf_tokenizer) -> PretrainedTokenizer:
    """``hf_tokenizer`` (a transformers fast tokenizer) as a :class:`PretrainedTokenizer`."""
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise LexformerError(f"{type(hf_tokenizer).__name__} is not a fast (tokenizers-backed) "
                             "tokenizer; lexformer needs one to tokenize a corpus")
    return PretrainedTokenizer(backend)


__all__ = ["PretrainedTokenizer", "corpus_tokenizer"]
