"""A tiny random Llama with its own byte-level BPE tokenizer, saved as a Hugging Face model
folder, and a small text corpus whose test documents are long enough for it: what the
``eval --model`` and ``extend`` tests run on (no network, no hub). Shared by
``test_eval_hf.py`` and ``test_extend.py`` (import it as ``from tiny_hf import ...``)."""

from __future__ import annotations

import random
from pathlib import Path

CONTEXT = 64
#: the corpus has this many files; files 0, 7 and 14 form the test split
N_FILES = 15
TEST_FILES = (0, 7, 14)
WORDS = ("the king and queen went to the castle where a storm was rising over hills of "
         "green while bells rang in towers and old men told tales of war and love").split()


def write_corpus(folder: Path, words_per_file: int = 500) -> Path:
    """``N_FILES`` text files of seeded random words (sorted names: doc index = file index)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for i in range(N_FILES):
        text = " ".join(rng.choice(WORDS) for _ in range(words_per_file))
        (folder / f"doc{i:02d}.txt").write_text(text + "\n")
    return folder


def write_model(folder: Path, corpus: Path, seed: int = 0,
                rope_parameters: dict | None = None) -> Path:
    """A 2-layer Llama (declared context ``CONTEXT``) and a byte-level BPE tokenizer trained on
    ``corpus``, saved to ``folder`` as transformers would save any model. ``rope_parameters``:
    the model's own RoPE scaling (e.g. native ``llama3``), transformers' default if None."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(p) for p in sorted(corpus.glob("*.txt"))], trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok)
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        max_position_embeddings=CONTEXT, eos_token_id=None, bos_token_id=None,
        pad_token_id=None, **({"rope_parameters": rope_parameters} if rope_parameters else {}))
    model = transformers.LlamaForCausalLM(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def sharp_llama(vocab: int = 97, context: int = 64):
    """A seeded 2-layer random Llama (GQA: 4 query heads, 2 key heads, head_dim 16) with its
    q/k weights ×4, so attention is sharp and positions matter: what the window methods'
    references are checked on (``test_hf``, ``test_recall``, ``test_prefix_eval``)."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=context, eos_token_id=None, bos_token_id=None,
        pad_token_id=None)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(4)
            layer.self_attn.k_proj.weight.mul_(4)
    return model
