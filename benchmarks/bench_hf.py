"""lexformer.hf window methods on a random Llama shaped like SmolLM2-135M, against full SDPA.

    python benchmarks/bench_hf.py [--quick] [--context L] [--layers N] [--lengths 4096,...]
                                  [--methods full,blockwise,...] [--gen-contexts 2048,32768]
                                  [--gen-tokens N] [--rounds N] [--threads T]

The model is a randomly initialised ``LlamaForCausalLM`` with SmolLM2-135M's layer shapes
(hidden 576, MLP 1536, 9 query / 3 key-value heads of 64, RoPE base 100000) but only
``--layers`` layers (default 1 instead of 30: every layer costs the same, so ratios do not
depend on the count) and the declared context ``--context`` (default 8192, SmolLM2's), from
which every method takes its default knobs (blockwise h = L/2, sinks window L − 4, …).

Two measurements, each method run in the same process so the ratios are side by side:

* prefill: one forward pass of the base model (hidden states, no logits, no cache) per
  method and length; the table gives seconds, time(longest) / time(shortest) (linear work
  gives longest / shortest, quadratic its square) and time(full) / time(method) at the
  middle length;
* generation (blockwise and sinks, ``--gen-contexts``): after a prefill of C tokens into the
  bounded window cache (:func:`lexformer.hf.cache.window_cache`), the median seconds of one
  decoding step of one token, and its ratio between the largest and the smallest C.

Measurements run one after another (``--rounds`` times each, the minimum is kept) rather
than interleaved: at 32k one forward pass takes tens of seconds. With one thread (the
default here) the figures are CPU seconds of this process, not wall seconds: on a machine
shared with other jobs a single-threaded run's CPU time hardly moves when it waits for a
core, its wall time does (by 5× on the project's machines). Each measurement also records
its wall time and the fraction of it during which runnable tasks waited for a CPU (Linux
PSI). Never run on a real pretrained model here: the machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common as C
import torch

from lexformer.hf import use_method
from lexformer.hf.cache import window_cache
from lexformer.hf.methods import get_method, resolve_settings

VOCAB = 49152
ALL_METHODS = ("full", "blockwise", "sliding", "sinks", "blockwise+sinks", "lambda",
               "self-extend")
GEN_METHODS = ("blockwise", "sinks")


def smollm2_shaped_llama(layers: int, context: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=layers, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, rope_theta=100000.0,
                         max_position_embeddings=context, tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def random_ids(n: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(n))


def timed(fn) -> dict:
    """One call: ``seconds`` (CPU seconds with one thread, else wall), ``wall_s``, ``stall``
    (fraction of the wall time runnable tasks waited for a CPU)."""
    p0, t0, c0 = C.psi_cpu_stall_us(), time.perf_counter(), time.process_time()
    fn()
    p1, t1, c1 = C.psi_cpu_stall_us(), time.perf_counter(), time.process_time()
    stall = (p1 - p0) / 1e6 / (t1 - t0) if p0 is not None and p1 is not None else float("nan")
    single = torch.get_num_threads() == 1
    return {"seconds": c1 - c0 if single else t1 - t0, "wall_s": t1 - t0, "stall": stall}


def best_of(fn, rounds: int) -> dict:
    return {**min((timed(fn) for _ in range(rounds)), key=lambda r: r["seconds"]),
            "rounds": rounds}


@torch.no_grad()
def prefill(model, method: str, n: int, rounds: int) -> dict:
    ids = random_ids(n)

    def run():
        with use_method(model, method):
            model.base_model(input_ids=ids, use_cache=False)
    return best_of(run, rounds)


@torch.no_grad()
def decode_step(model, method: str, context: int, length: int, new_tokens: int) -> dict:
    """Median seconds of one cached decoding step after a prefill of ``length`` tokens."""
    ids = random_ids(length + new_tokens)
    steps = []
    with use_method(model, method):
        cache = window_cache(model, resolve_settings(method, context, None))
        model.base_model(input_ids=ids[:, :length], past_key_values=cache, use_cache=True)
        for t in range(length, length + new_tokens):
            steps.append(timed(lambda t=t: model.base_model(
                input_ids=ids[:, t:t + 1], past_key_values=cache, use_cache=True)))
    held = max(layer.keys.shape[-2] for layer in cache.layers)
    return {key: statistics.median(r[key] for r in steps)
            for key in ("seconds", "wall_s", "stall")} | {"keys_held": held}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="context 1024, lengths 1k/4k/8k, generation at 512 and 8k")
    ap.add_argument("--context", type=int, default=None, help="declared context L (8192)")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--lengths", default=None, help="comma-separated (4096,16384,32768)")
    ap.add_argument("--methods", default=",".join(ALL_METHODS))
    ap.add_argument("--gen-contexts", default=None,
                    help="comma-separated (2048,32768); '' for none")
    ap.add_argument("--gen-tokens", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    quick = args.quick
    context = args.context or (1024 if quick else 8192)
    lengths = [int(x) for x in (args.lengths or ("1024,4096,8192" if quick
                                                 else "4096,16384,32768")).split(",") if x]
    gen_default = "512,8192" if quick else "2048,32768"
    gen_contexts = [int(x) for x in (gen_default if args.gen_contexts is None
                                     else args.gen_contexts).split(",") if x]
    methods = [m for m in args.methods.split(",") if m]
    model = smollm2_shaped_llama(args.layers, context)
    clock = "CPU" if torch.get_num_threads() == 1 else "wall"
    print(f"random Llama with SmolLM2-135M's shapes, {args.layers} layers (not 30), declared "
          f"context {context}, {torch.get_num_threads()} thread(s), {clock} seconds",
          flush=True)

    times: dict[str, dict[int, dict]] = {}
    for n in lengths:
        for method in methods:
            longest = get_method(method).longest(context, None)
            if longest is not None and n > longest:
                continue  # past the longest input it scores (SelfExtend's positions under L)
            times.setdefault(method, {})[n] = r = prefill(model, method, n, args.rounds)
            print(f"prefill {method:>16} {n:>6}: {r['seconds']:8.2f} s "
                  f"(wall {r['wall_s']:.2f} s, stall {r['stall']:.2f})", flush=True)

    gen: dict[str, dict[int, dict]] = {}
    for method in [m for m in GEN_METHODS if m in methods and gen_contexts]:
        for n in gen_contexts:
            gen.setdefault(method, {})[n] = r = decode_step(model, method, context, n,
                                                            args.gen_tokens)
            print(f"decode  {method:>16} {n:>6}: {r['seconds'] * 1e3:8.2f} ms/token "
                  f"({r['keys_held']} keys held, wall {r['wall_s'] * 1e3:.2f} ms, stall "
                  f"{r['stall']:.2f})", flush=True)

    short, long_ = min(lengths), max(lengths)
    mid = sorted(lengths)[len(lengths) // 2]
    summary, rows = [], []
    for method, by_n in times.items():
        growth = (by_n[long_]["seconds"] / by_n[short]["seconds"]
                  if long_ in by_n and short in by_n else float("nan"))
        # past the window a linear method doubles with n: this ratio shows it where the
        # shortest length is still inside the window (4k < L = 8192)
        tail = (by_n[long_]["seconds"] / by_n[mid]["seconds"]
                if long_ in by_n and mid in by_n and mid != long_ else float("nan"))
        versus = (times["full"][mid]["seconds"] / by_n[mid]["seconds"]
                  if "full" in times and mid in times["full"] and mid in by_n else float("nan"))
        rows.append([method, *(by_n[n]["seconds"] if n in by_n else float("nan")
                               for n in lengths), growth, tail, versus])
        if method != "full" and growth == growth:
            summary.append(C.target(f"{method} prefill time {long_} / {short} tokens (L = "
                                    f"{context})", growth, f"<= {long_ // short + 1}",
                                    growth <= long_ // short + 1))
        if method == "blockwise" and versus == versus:
            summary.append(C.target(f"full SDPA / blockwise prefill time at {mid} tokens "
                                    f"(L = {context})", versus, ">= 3", versus >= 3))
    print(f"\nprefill {clock} seconds ({args.layers} layers, L = {context})")
    print(C.markdown_table(["method", *map(str, lengths), f"{long_} / {short}",
                            f"{long_} / {mid}", f"full / method at {mid}"], rows))
    if gen:
        lo, hi = min(gen_contexts), max(gen_contexts)
        gen_rows = []
        for method, by_n in gen.items():
            ratio = by_n[hi]["seconds"] / by_n[lo]["seconds"]
            gen_rows.append([method, *(by_n[n]["seconds"] * 1e3 for n in gen_contexts),
                             ratio])
            summary.append(C.target(f"{method} decode step at {hi} / at {lo} context "
                                    f"(L = {context})", ratio, "<= 1.2", ratio <= 1.2))
        print(f"\ndecoding {clock} ms per token after a prefill of C tokens ({args.layers} "
              "layers)")
        print(C.markdown_table(["method", *(f"C = {n}" for n in gen_contexts),
                                f"{hi} / {lo}"], gen_rows))
    C.print_summary(summary)
    path = C.write_results("bench_hf", {
        "quick": quick, "environment": C.environment(), "layers": args.layers,
        "context": context, "clock": clock, "summary": summary, "prefill": times, "decode": gen})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
