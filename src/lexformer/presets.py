"""Named training presets: a model shape plus a budget in tokens.

* ``smoke``  — about a minute on a 2-core CPU; what the tests and ``reproduce --preset smoke``
  use. Too small to show anything but that the pipeline works.
* ``tiny``   — the reproduction's default on a 2-core CPU (see docs/reproduction.md for how
  it was chosen): large enough to model the corpus, small enough that five schemes train in
  the reproduction's time budget.
* ``paper``  — the paper's model (24 layers, d_model 1024, 16 heads, d_ff 4096, L = 1024), for
  GPU users; its budget is a placeholder to set with ``--tokens``.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "smoke": {
        "model": {"n_layer": 2, "n_head": 4, "d_model": 64, "d_ff": 256, "train_length": 64},
        "train": {"batch_size": 8, "tokens": 8 * 64 * 60, "lr": 3e-3, "warmup_steps": 10,
                   "eval_interval": 30, "eval_batches": 4, "checkpoint_interval": 30},
        "tokenizer": {"kind": "bpe", "vocab_size": 512},
    },
    "tiny": {
        "model": {"n_layer": 4, "n_head": 8, "d_model": 256, "d_ff": 1024, "train_length": 256},
        # 600 steps × 16 × 256 = 2.46 M tokens (~1.9 epochs of Shakespeare's train split);
        # bf16 autocast: ~1.5× the fp32 step rate on this CPU (docs/benchmarks.md).
        "train": {"batch_size": 16, "tokens": 16 * 256 * 600, "lr": 1e-3, "warmup_steps": 100,
                  "dtype": "bf16", "eval_interval": 100, "eval_batches": 8,
                  "checkpoint_interval": 100},
        "tokenizer": {"kind": "bpe", "vocab_size": 4096},
    },
    "paper": {
        "model": {"n_layer": 24, "n_head": 16, "d_model": 1024, "d_ff": 4096, "train_length": 1024},
        "train": {"batch_size": 8, "grad_accum": 64, "tokens": 512 * 1024 * 50_000, "lr": 3e-4,
                   "warmup_steps": 1000, "schedule": "polynomial", "eval_interval": 1000,
                   "eval_batches": 16, "checkpoint_interval": 1000},
        "tokenizer": {"kind": "bpe", "vocab_size": 32000},
    },
}
