"""lexformer.hf window attention on a tiny random Llama: linear in n, and against full SDPA.

    python benchmarks/bench_hf.py [--quick] [--rounds N] [--threads T]

A randomly initialised LlamaForCausalLM (2 layers, 4 query / 2 kv heads of 16, hidden 64,
declared context L = 1024, so blockwise blocks of h = 512) runs one forward pass of its base
model (hidden states, no logits) under

* ``blockwise`` at 4k and at 32k tokens (quick: 1k and 8k): time ratio 32k / 4k; linear
  attention cost gives 8, quadratic 64;
* ``blockwise`` against the model's own ``full`` attention (transformers' SDPA) at 16k
  (quick: 4k): time ratio full / blockwise.

Contenders of each comparison are interleaved round by round (``_common.interleaved``) and
ratios are per-round paired medians. Never run on a real pretrained model here: the machine
is shared.
"""

from __future__ import annotations

import argparse

import _common as C
import torch

from lexformer.hf import use_method

CONTEXT = 1024


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16, max_position_embeddings=CONTEXT)
    return LlamaForCausalLM(config).eval()


def forward_fn(model, n: int, method: str):
    ids = torch.randint(0, 256, (1, n), generator=torch.Generator().manual_seed(n))

    @torch.no_grad()
    def run():
        with use_method(model, method):
            return model.base_model(input_ids=ids, use_cache=False).last_hidden_state
    return run


def compare(model, cases: dict[str, tuple[int, str]], rounds: int) -> dict:
    fns = {name: forward_fn(model, n, method) for name, (n, method) in cases.items()}
    return C.interleaved(fns, rounds=rounds, warmup=1, min_sample_s=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    model = tiny_llama()
    short, long_, mid = (1024, 8192, 4096) if args.quick else (4096, 32768, 16384)

    scaling = compare(model, {"short": (short, "blockwise"), "long": (long_, "blockwise")},
                      args.rounds)
    versus = compare(model, {"blockwise": (mid, "blockwise"), "full": (mid, "full")},
                     args.rounds)
    growth = C.paired_ratio(scaling, "long", "short")
    speedup = C.paired_ratio(versus, "full", "blockwise")
    summary = [
        C.target(f"blockwise time {long_} / {short} tokens", growth,
                 f"≈ {long_ // short} (linear), well under {(long_ // short) ** 2}",
                 growth < (long_ // short) * 1.5),
        C.target(f"full SDPA / blockwise time at {mid} tokens", speedup, "> 1", speedup > 1),
    ]
    print(C.markdown_table(["comparison", "median s (a)", "median s (b)", "ratio"], [
        [f"blockwise {long_} vs {short}", f"{scaling['long']['median_s']:.3f}",
         f"{scaling['short']['median_s']:.3f}", f"{growth:.2f}"],
        [f"full vs blockwise at {mid}", f"{versus['full']['median_s']:.3f}",
         f"{versus['blockwise']['median_s']:.3f}", f"{speedup:.2f}"],
    ]))
    C.print_summary(summary)
    path = C.write_results("bench_hf", {
        "quick": args.quick, "environment": C.environment(), "summary": summary,
        "scaling": C.strip_raw(scaling), "versus_full": C.strip_raw(versus),
        "contention": C.contention(versus)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
