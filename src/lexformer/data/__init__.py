"""Data: corpora, tokenizers, token caches, training batches and evaluation documents.

Typical use::

    from lexformer.data import (BatchSampler, eval_documents, get_tokenizer, load_corpus,
                                tokenize_corpus)

    corpus = load_corpus("shakespeare")                 # or a path to your own text
    tokenizer = get_tokenizer(corpus, "bpe", 4096)      # trained on train, cached
    tokens = tokenize_corpus(corpus, tokenizer)         # memory-mapped token cache
    sampler = BatchSampler(tokens.splits["train"].tokens, seq_len=256, batch_size=16, seed=0)
    inputs, targets = sampler.next_batch()
    docs = eval_documents(tokens.splits["test"], 4096)  # first 4096 tokens of long docs
"""

from .batches import BatchSampler, eval_documents
from .corpora import (
    BUILTIN_CORPORA,
    SPLITS,
    Corpus,
    Document,
    default_cache_dir,
    load_corpus,
    load_user_corpus,
    resolve_cache_dir,
    split_index,
    strip_gutenberg,
)
from .sword import load_sword, read_testament, strip_osis
from .tokenizer import (
    ByteTokenizer,
    Tokenizer,
    build_tokenizer,
    load_tokenizer,
    train_bpe_tokenizer,
)
from .tokens import TokenizedCorpus, TokenizedSplit, get_tokenizer, tokenize_corpus

__all__ = [
    "BUILTIN_CORPORA",
    "SPLITS",
    "BatchSampler",
    "ByteTokenizer",
    "Corpus",
    "Document",
    "TokenizedCorpus",
    "TokenizedSplit",
    "Tokenizer",
    "build_tokenizer",
    "default_cache_dir",
    "eval_documents",
    "get_tokenizer",
    "load_corpus",
    "load_sword",
    "load_tokenizer",
    "load_user_corpus",
    "read_testament",
    "resolve_cache_dir",
    "split_index",
    "strip_gutenberg",
    "strip_osis",
    "tokenize_corpus",
    "train_bpe_tokenizer",
]
