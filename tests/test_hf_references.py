"""Independent float64 references for the HF window methods, written from each paper and its
authors' code (not from ``lexformer.hf.plans``), the defaults pinned, and a model with native
RoPE scaling (Llama 3.1's ``llama3``) kept as it is.

Each reference says, for every (query i, key j) pair, whether the key is seen and at which
query / key *positions* the two are rotated; a dense float64 attention registered with
transformers then runs the tiny Llama with it, against lexformer's own methods in fp32.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_hf import CONTEXT, write_corpus, write_model  # noqa: E402

from lexformer.errors import LexformerError  # noqa: E402
from lexformer.hf import HF_METHODS, open_hf_model  # noqa: E402
from lexformer.hf.methods import resolve_settings  # noqa: E402
from lexformer.hf.patch import use_method  # noqa: E402
from lexformer.hf.rope_scaling import check_rescalable  # noqa: E402

L = CONTEXT
#: the papers' defaults, as lexformer must keep them (each changed value must fail a test)
SINKS = 4  # StreamingLLM: four initial tokens as attention sinks (Xiao et al., §3.2)
N_GLOBAL = 100  # LM-Infinite: n_global = 100 tokens, n_local = L, distance limit L
GROUP, NEIGHBOURS = 8, L // 4  # SelfExtend: G = 8 with a neighbour window w = L/4
BLOCK = L // 2  # BCA: blocks of half the training length
LLAMA3 = {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": L // 4,
          "rope_theta": 10000.0}


def streaming_cache(T: int, sinks: int, size: int) -> list[list[int]]:
    """StreamingLLM's cache as its authors' loop keeps it: token by token, the newest token
    appended, then the oldest non-sink entry evicted while the cache holds more than
    ``size``; a query sees the cache, each key at its index inside it."""
    cache: list[int] = []
    seen = []
    for i in range(T):
        cache.append(i)
        while len(cache) > size:
            del cache[sinks]
        seen.append(list(cache))
    return seen


def positions(method: str, T: int) -> list[dict[int, tuple[int, int]]]:
    """For each query i: {key j: (query position, key position)} of the keys it sees."""
    rows = []
    caches = streaming_cache(T, SINKS, L) if method == "sinks" else None
    for i in range(T):
        row = {}
        for j in range(i + 1):
            if method == "sinks":
                kept = caches[i]
                if j in kept:
                    row[j] = (kept.index(i), kept.index(j))
            elif method == "lambda":  # Λ-shaped: global or local; the distance limited to L
                if j < N_GLOBAL or i - j < L:
                    row[j] = (j + min(i - j, L), j)
            elif method == "self-extend":  # neighbour attention, else grouped positions
                if i - j < NEIGHBOURS:
                    row[j] = (i, j)
                else:
                    row[j] = (i // GROUP + NEIGHBOURS - NEIGHBOURS // GROUP, j // GROUP)
            elif method == "blockwise":  # the query's block and the one before it
                if j // BLOCK >= i // BLOCK - 1:
                    row[j] = (i, j)
            else:
                raise AssertionError(method)
        rows.append(row)
    return rows


def rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """RoPE in transformers' half layout: plane (x[k], x[k + D/2]) turned by angle[..., k]."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * angle.cos() - b * angle.sin(), b * angle.cos() + a * angle.sin()), -1)


def dense_reference(method: str, inv_freq: torch.Tensor):
    """A float64 attention function: queries and keys (which the model rotated at i and j)
    turned on to the reference's positions, unseen keys masked, one softmax per query."""

    def attend(module, q, k, v, attention_mask, scaling=None, **kwargs):
        T = q.shape[-2]
        rows = positions(method, T)
        seen = torch.zeros(T, T, dtype=torch.bool)
        shift_q = torch.zeros(T, T, dtype=torch.float64)
        shift_k = torch.zeros(T, T, dtype=torch.float64)
        for i, row in enumerate(rows):
            for j, (pq, pk) in row.items():
                seen[i, j], shift_q[i, j], shift_k[i, j] = True, pq - i, pk - j
        freq = inv_freq.double()
        rep = q.shape[1] // k.shape[1]
        qq = rotate(q.double()[:, :, :, None, :], shift_q[..., None] * freq)  # (B,H,T,T,D)
        kk = rotate(k.double().repeat_interleave(rep, 1)[:, :, None], shift_k[..., None] * freq)
        scores = (qq * kk).sum(-1) * (scaling if scaling is not None else module.scaling)
        probs = scores.masked_fill(~seen, float("-inf")).softmax(-1)
        out = probs @ v.double().repeat_interleave(rep, 1)
        return out.to(q.dtype).transpose(1, 2).contiguous(), None

    return attend


@pytest.fixture(scope="module", params=["default", "llama3"])
def tiny(request, tmp_path_factory):
    """The tiny Llama of tiny_hf (plain RoPE, or native llama3 scaling), q/k sharpened so
    that positions matter, loaded through open_hf_model with the default options."""
    root = tmp_path_factory.mktemp(f"tiny-{request.param}")
    rope = LLAMA3 if request.param == "llama3" else None
    folder = write_model(root / "model", write_corpus(root / "corpus", 100), rope_parameters=rope)
    lm = open_hf_model(str(folder))
    with torch.no_grad():
        for layer in lm.model.model.layers:
            layer.self_attn.q_proj.weight.mul_(4)
            layer.self_attn.k_proj.weight.mul_(4)
    return lm


def ids_of(lm, T: int) -> torch.Tensor:
    vocab = lm.model.config.vocab_size
    return torch.randint(0, vocab, (1, T), generator=torch.Generator().manual_seed(3))


def fp32_bound(logits: torch.Tensor) -> float:
    """fp32 rounding (ε = 1.2e-7) grows with the reduction lengths (≤ 256 keys, ≤ 64 hidden
    units, 2 layers): a few hundred ε relative to the logits' size; 1e3·ε·max|logit| bounds it
    with room, while a moved key or a changed default shifts logits by far more (> 1e-3)."""
    return 1e3 * torch.finfo(torch.float32).eps * max(1.0, logits.abs().max().item())


@pytest.mark.parametrize("method", ["sinks", "lambda", "self-extend", "blockwise"])
def test_default_methods_match_the_papers(tiny, method):
    """At 200 tokens every default matters: the sinks and the window past L, the 100 global
    tokens beyond the local window, G and w, the block h."""
    from transformers import AttentionInterface

    ids = ids_of(tiny, 200)
    with use_method(tiny.model, method, None), torch.no_grad():
        ours = tiny.model(ids).logits
    name = f"test-paper-{method}"
    AttentionInterface.register(name, dense_reference(method, tiny.model.model.rotary_emb.inv_freq))
    previous = tiny.model.config._attn_implementation
    tiny.model.set_attn_implementation(name)
    try:
        with torch.no_grad():
            reference = tiny.model(ids).logits
    finally:
        tiny.model.set_attn_implementation(previous)
    with torch.no_grad():
        full = tiny.model(ids).logits
    assert (reference - full).abs().max().item() > 1e-3  # the reference is not plain attention
    assert (ours - reference).abs().max().item() <= fp32_bound(reference), method


def test_defaults_are_the_papers():
    for context in (64, 8192):
        s = resolve_settings("sinks", context, None)
        assert (s.sinks, s.window) == (4, context - 4)
        s = resolve_settings("lambda", context, None)
        assert (s.global_tokens, s.local_window, s.distance_cap) == (100, context, context)
        s = resolve_settings("self-extend", context, None)
        assert (s.group, s.neighbours) == (8, context // 4)
        assert resolve_settings("blockwise", context, None).block == context // 2
        s = resolve_settings("blockwise+sinks", context, None)
        assert (s.block, s.sinks) == (context // 2, 4)


def test_full_keeps_native_scaling_bit_identical(tiny):
    ids = ids_of(tiny, 100)
    with torch.no_grad():
        plain = tiny.model(ids).logits
        with use_method(tiny.model, "full", None, length=100):
            assert torch.equal(tiny.model(ids).logits, plain)


@pytest.mark.parametrize("method", ["sliding", "sinks", "lambda"])
def test_window_methods_promising_the_model_inside_l_keep_it(tiny, method):
    """Inside L these defaults see every key at its own distance (W = L, S + W = L,
    n_local = L): the model as loaded, native scaling included."""
    ids = ids_of(tiny, L)
    full = tiny.token_nll(ids, "full")
    assert (tiny.token_nll(ids, method) - full).abs().max().item() <= fp32_bound(full)


def test_rescalings_on_native_scaling_compose_or_are_refused(tiny):
    native = tiny.model.config.rope_parameters.get("rope_type", "default")
    ids = ids_of(tiny, 2 * L)
    for method in (m for m, spec in HF_METHODS.items() if spec.kind == "rope"):
        if native == "default":  # composes: the rescaling on the model's θ
            tiny.token_nll(ids, method)
            continue
        with pytest.raises(LexformerError, match="natively") as e:
            tiny.token_nll(ids, method)
        assert "\n" not in str(e.value) and native in str(e.value)
        with pytest.raises(LexformerError, match="natively"):  # up front, before a sweep
            check_rescalable(tiny.model.config, method)
    check_rescalable(tiny.model.config, "sinks")


def test_pi_composes_with_native_linear_scaling():
    from lexformer.hf.rope_scaling import scaled_rope_parameters

    base = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    assert scaled_rope_parameters("pi", base, L, 3.0) == {"rope_type": "linear", "factor": 6.0,
                                                          "rope_theta": 10000.0}
    with pytest.raises(LexformerError, match="natively"):
        scaled_rope_parameters("yarn", base, L, 3.0)
