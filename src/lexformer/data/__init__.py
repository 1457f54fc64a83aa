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

Modules, one job each: :mod:`.corpus` (Document, Corpus, the split rule), :mod:`.text`
(decoding and cleaning text), :mod:`.cachedir` (the cache folder), :mod:`.external`
(running pip/apt-get/dpkg), :mod:`.shakespeare` and :mod:`.sword` (built-in sources;
:mod:`.sword_format` reads SWORD modules), :mod:`.user_files` (the user's files),
:mod:`.registry` (``CORPUS_SOURCES`` and ``load_corpus``), :mod:`.tokenizer`,
:mod:`.tokens` (token caches), :mod:`.batches`.
"""

from .batches import BatchSampler, eval_documents
from .cachedir import default_cache_dir, resolve_cache_dir
from .corpus import SPLITS, Corpus, Document, split_index
from .registry import (
    BUILTIN_CORPORA,
    CORPUS_SOURCES,
    CorpusSource,
    check_split,
    default_split,
    load_corpus,
    load_split_corpus,
    resolve_source,
)
from .sword import load_sword
from .sword_format import read_testament
from .text import strip_gutenberg, strip_osis
from .tokenizer import (
    ByteTokenizer,
    Tokenizer,
    build_tokenizer,
    load_tokenizer,
    train_bpe_tokenizer,
)
from .tokens import TokenizedCorpus, TokenizedSplit, get_tokenizer, tokenize_corpus
from .user_files import load_user_corpus

__all__ = [
    "BUILTIN_CORPORA",
    "CORPUS_SOURCES",
    "SPLITS",
    "BatchSampler",
    "ByteTokenizer",
    "Corpus",
    "CorpusSource",
    "Document",
    "TokenizedCorpus",
    "TokenizedSplit",
    "Tokenizer",
    "build_tokenizer",
    "check_split",
    "default_cache_dir",
    "default_split",
    "eval_documents",
    "get_tokenizer",
    "load_corpus",
    "load_split_corpus",
    "load_sword",
    "load_tokenizer",
    "load_user_corpus",
    "read_testament",
    "resolve_cache_dir",
    "resolve_source",
    "split_index",
    "strip_gutenberg",
    "strip_osis",
    "tokenize_corpus",
    "train_bpe_tokenizer",
]
