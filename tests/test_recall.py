"""The ``recall`` method on a tiny random Llama (GQA) in float64: an independent dense
reference, the model itself within L, the key bound, a planted needle, generation, options."""

from __future__ import annotations

import copy
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_hf import sharp_llama  # noqa: E402

from lexformer.errors import LexformerError  # noqa: E402
from lexformer.hf import MethodOptions, open_hf_model  # noqa: E402
from lexformer.hf.methods import HF_METHODS, resolve_settings  # noqa: E402
from lexformer.hf.options import parse_method_options  # noqa: E402
from lexformer.hf.patch import use_method  # noqa: E402
from lexformer.hf.recall import forced_selection, recall_attention  # noqa: E402

CONTEXT = 64
VOCAB = 97
# h = 8, S = 3, b = 4, k = 5: S + k·b + 2h = 39 ≤ 64; a 150-token input crosses many blocks
OPTIONS = MethodOptions(block=8, sinks=3, recall_block=4, recall_blocks=5)
# float64 rounding is ~1e-16 relative; two layers of a few hundred operations each on logits
# of order 1 stay far below 1e-9, while one position off by one, or one wrong block, moves
# the logits by more than 1e-3 (checked below), so 1e-9 separates the two by 10^6
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(the model in float64, the model as loaded through open_hf_model with OPTIONS)."""
    model = sharp_llama(VOCAB, CONTEXT)
    folder = tmp_path_factory.mktemp("tiny-llama-recall")
    model.save_pretrained(folder)
    return copy.deepcopy(model).double(), open_hf_model(str(folder), options=OPTIONS)


def ids_of(length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, length), generator=torch.Generator().manual_seed(seed))


def forced(positions, n_candidates, k):
    """A fixed choice that no score would make: k distinct blocks drawn from the position."""
    return torch.stack([torch.randperm(n_candidates,
                                       generator=torch.Generator().manual_seed(int(p)))[:k]
                        for p in positions])


# --------------------------------------------------------------------------- reference
def turn(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate each (x[c], x[c + D/2]) plane of x (…, D) by positions (…) · inv_freq[c]."""
    angle = positions.double()[..., None] * inv_freq.double()
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = angle.cos(), angle.sin()
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


def reference_choice(q_raw, k_raw, s, i: int, w0: int, inv_freq) -> list[int]:
    """Quest's bound of each candidate block, its keys at 0..b−1 and the query heads q_raw
    (G, D) at i − w0 + b; the maximum over heads; the k best, in order."""
    S, b, n = s.sinks, s.recall_block, s.recall_blocks
    bounds = []
    for m in range((w0 - S) // b):
        keys = turn(k_raw[S + m * b:S + (m + 1) * b], torch.arange(b), inv_freq)
        lo, hi = keys.min(dim=0).values, keys.max(dim=0).values
        qs = turn(q_raw, torch.tensor(i - w0 + b), inv_freq)
        bounds.append(max(float(torch.maximum(qh * lo, qh * hi).sum()) for qh in qs))
    best = sorted(range(len(bounds)), key=lambda m: -bounds[m])[:n]
    return sorted(best)


def visible_keys(s, i: int, choice: list[int]) -> list[tuple[int, int]]:
    """(key, its position) for query i: every key within L; past L, sinks and the chosen
    blocks placed contiguously just before the window, then the window."""
    if i < s.context:
        return [(j, j) for j in range(i + 1)]
    h, S, b, n = s.block, s.sinks, s.recall_block, s.recall_blocks
    w0 = (i // h - 1) * h
    base = w0 - n * b
    keys = [(j, base - S + j) for j in range(S)]
    keys += [(S + m * b + t, base + r * b + t) for r, m in enumerate(choice) for t in range(b)]
    return keys + [(j, j) for j in range(w0, i + 1)]


def reference_attention(s, inv_freq, choose=None, seen=None):
    """Dense float64 attention, one query and one key head at a time: keys un-rotated from
    their own positions and rotated from scratch at the position the rule gives them."""

    def attend(module, q, k, v, attention_mask, scaling=None, **kwargs):
        B, Hq, T, _ = q.shape
        Hkv = k.shape[1]
        G = Hq // Hkv
        positions = torch.arange(T)
        q_raw = turn(q.double(), -positions, inv_freq)
        k_raw = turn(k.double(), -positions, inv_freq)
        out = torch.zeros(B, Hq, T, v.shape[-1], dtype=torch.float64)
        for kh in range(Hkv):
            heads = slice(kh * G, (kh + 1) * G)
            for i in range(T):
                w0 = (i // s.block - 1) * s.block
                choice = []
                if i >= s.context:
                    choice = (sorted(choose(torch.tensor([i]), (w0 - s.sinks) // s.recall_block,
                                            s.recall_blocks)[0].tolist()) if choose else
                              reference_choice(q_raw[0, heads, i], k_raw[0, kh], s, i, w0,
                                               inv_freq))
                keys = visible_keys(s, i, choice)
                if seen is not None:
                    seen.append(len(keys))
                idx = torch.tensor([j for j, _ in keys])
                moved = turn(k_raw[:, kh, idx], torch.tensor([p for _, p in keys]), inv_freq)
                scores = (q.double()[:, heads, i, None, :] * moved[:, None]).sum(-1) * scaling
                out[:, heads, i] = scores.softmax(-1) @ v.double()[:, kh, idx]
        return out.to(q.dtype).transpose(1, 2).contiguous(), None

    return attend


def logits(model, ids, name=None, options=OPTIONS):
    with torch.no_grad():
        if name is None:
            with use_method(model, "recall", options):
                return model(ids).logits
        previous = model.config._attn_implementation
        model.set_attn_implementation(name)
        try:
            return model(ids).logits
        finally:
            model.set_attn_implementation(previous)


# --------------------------------------------------------------------------- tests
def test_matches_dense_reference_with_its_own_selection(tiny):
    model = tiny[0]
    s = resolve_settings("recall", CONTEXT, OPTIONS)
    inv_freq = model.model.rotary_emb.inv_freq
    transformers.AttentionInterface.register("test-recall-reference",
                                             reference_attention(s, inv_freq))
    ids = ids_of(150)
    got = logits(model, ids)
    want = logits(model, ids, "test-recall-reference")
    assert (got - want).abs().max().item() <= TOLERANCE
    with torch.no_grad():
        full = model(ids).logits
    assert (got - full).abs().max().item() > 1e-3  # past L the method really changed attention
    assert (got[:, :CONTEXT] - full[:, :CONTEXT]).abs().max().item() <= TOLERANCE


def test_matches_dense_reference_with_a_forced_selection(tiny):
    """The same blocks imposed on both: what is left to agree on is where they are placed."""
    model = tiny[0]
    s = resolve_settings("recall", CONTEXT, OPTIONS)
    inv_freq = model.model.rotary_emb.inv_freq
    transformers.AttentionInterface.register("test-recall-forced",
                                             reference_attention(s, inv_freq, forced))
    ids = ids_of(150)
    chosen = logits(model, ids)
    with forced_selection(forced):
        got = logits(model, ids)
    want = logits(model, ids, "test-recall-forced")
    assert (got - want).abs().max().item() <= TOLERANCE
    assert (got - chosen).abs().max().item() > 1e-3  # the forced choice is not the scored one


def test_a_position_off_by_one_is_caught(tiny, monkeypatch):
    """The reference with the recalled blocks one position too far disagrees by far more
    than the tolerance: agreement above is not the product of an insensitive test."""
    model = tiny[0]
    s = resolve_settings("recall", CONTEXT, OPTIONS)
    inv_freq = model.model.rotary_emb.inv_freq
    exact = visible_keys

    def shifted(s_, i, choice):
        return [(j, p - (s_.sinks <= j < s_.block * (i // s_.block - 1)))
                for j, p in exact(s_, i, choice)]

    monkeypatch.setattr(sys.modules[__name__], "visible_keys", shifted)
    transformers.AttentionInterface.register("test-recall-shifted",
                                             reference_attention(s, inv_freq, forced))
    ids = ids_of(150)
    with forced_selection(forced):
        got = logits(model, ids)
    want = logits(model, ids, "test-recall-shifted")
    assert (got - want).abs().max().item() > 1e-3


@pytest.mark.parametrize("length", [40, CONTEXT])
def test_within_the_context_it_is_the_model(tiny, length):
    lm = tiny[1]
    ids = ids_of(length)
    with torch.no_grad():
        full = lm.model(ids).logits
        with use_method(lm.model, "recall", OPTIONS):
            got = lm.model(ids).logits
    assert got.dtype == torch.float32
    assert (got - full).abs().max().item() <= 1e-4


def test_a_query_sees_at_most_the_bound(tiny):
    """v = identity: each output row is the attention weights, whose non-zeros count the
    keys the query scored; the reference's visible lists are counted too."""
    s = resolve_settings("recall", CONTEXT, OPTIONS)
    T = 150
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(1, 4, T, T, generator=gen, dtype=torch.float64)
    k = torch.randn(1, 2, T, T, generator=gen, dtype=torch.float64)
    v = torch.eye(T, dtype=torch.float64).expand(1, 2, T, T)
    inv_freq = 1.0 / 10000 ** (torch.arange(0, T, 2, dtype=torch.float64) / T)
    out = recall_attention(q, k, v, s, 0.1, inv_freq)
    counts = (out != 0).sum(-1)  # (1, 4, T)
    bound = s.sinks + s.recall_blocks * s.recall_block + 2 * s.block
    for i in range(T):
        want = i + 1 if i < CONTEXT else bound - 2 * s.block + i % s.block + s.block + 1
        assert counts[0, :, i].tolist() == [want] * 4
    assert int(counts[0, :, CONTEXT:].max()) <= bound
    seen = []
    attend = reference_attention(s, inv_freq, forced, seen)
    attend(None, q, k, v, None, scaling=0.1)
    assert max(seen[CONTEXT:T]) <= bound and len(seen) == 2 * T


def test_a_planted_needle_is_recalled():
    """Raw queries all point along the slowest RoPE channel pair and one far block's keys
    lie along it too, the other keys are small noise: that block is the one recalled."""
    s = resolve_settings("recall", CONTEXT, MethodOptions(block=8, sinks=3, recall_block=4,
                                                          recall_blocks=1))
    T = D = 150
    inv_freq = 1.0 / 10000 ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    gen = torch.Generator().manual_seed(4)
    direction = torch.zeros(D, dtype=torch.float64)
    direction[D // 2 - 1] = direction[D - 1] = 1.0
    q_raw = direction.expand(1, 4, T, D)
    k_raw = 0.05 * torch.randn(1, 2, T, D, generator=gen, dtype=torch.float64)
    needle = range(s.sinks + 2 * s.recall_block, s.sinks + 3 * s.recall_block)  # block 2
    k_raw[..., needle, :] = 5 * direction
    positions = torch.arange(T)
    q, k = turn(q_raw, positions, inv_freq), turn(k_raw, positions, inv_freq)
    v = torch.eye(T, dtype=torch.float64).expand(1, 2, T, T)
    out = recall_attention(q, k, v, s, 0.1, inv_freq)
    for i in range(CONTEXT, T):
        w0 = (i // s.block - 1) * s.block
        want = [*range(s.sinks), *needle, *range(w0, i + 1)]
        assert (out[0, :, i] != 0).nonzero()[:, 1].view(4, -1).tolist() == [want] * 4


def test_cached_generation_equals_full_passes(tiny):
    """Across L: the prompt fits, the new tokens run past it into recalled blocks."""
    lm = tiny[1]
    prompt = ids_of(60, seed=2)
    got = lm.greedy(prompt, 40, "recall")
    seq = prompt
    with torch.no_grad(), use_method(lm.model, "recall", OPTIONS):
        for _ in range(40):
            nxt = lm.model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat((seq, nxt), dim=1)
    assert torch.equal(got, seq[:, 60:])


def test_one_scoring_pass_equals_its_pieces(tiny):
    """Causal: scoring 150 tokens at once gives each position what the prefix ending there
    gives (a selection made per query block from its later queries would not)."""
    model = tiny[0]
    ids = ids_of(150)
    whole = logits(model, ids)
    for n in (65, 101, 130):
        assert (logits(model, ids[:, :n])[:, -1] - whole[:, n - 1]).abs().max() <= TOLERANCE


def test_bad_options_are_refused_in_one_line():
    with pytest.raises(LexformerError, match=r"= 76 must not exceed the declared context L \(64"
                       ) as e:
        resolve_settings("recall", 64, MethodOptions(block=16, recall_blocks=5, recall_block=8))
    assert "\n" not in str(e.value)
    with pytest.raises(LexformerError, match="recall_blocks must be positive"):
        resolve_settings("recall", 64, MethodOptions(recall_blocks=0))
    assert parse_method_options("recall_blocks=3,recall-block=8") == MethodOptions(
        recall_blocks=3, recall_block=8)


def test_provisional_defaults_are_pinned():
    m = HF_METHODS["recall"]
    assert m.kind == "window" and not m.quadratic and not m.extend_default
    for L, (h, S, b, k) in {8192: (2048, 4, 64, 63), 2048: (512, 4, 64, 15),
                            64: (16, 4, 64, 0), 8: (2, 4, 64, 0)}.items():
        s = resolve_settings("recall", L, None)
        assert (s.block, s.sinks, s.recall_block, s.recall_blocks) == (h, S, b, k)
        assert s.sinks + s.recall_blocks * s.recall_block + 2 * s.block <= L
    # an explicit h changes how many blocks fit
    assert resolve_settings("recall", 8192, MethodOptions(block=1024)).recall_blocks == 95


def test_one_layer_call_matches_the_reference():
    """One attention call on random q, k, v (no model to damp a difference): rounding only."""
    s = resolve_settings("recall", CONTEXT, OPTIONS)
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, h, 150, 16, generator=gen, dtype=torch.float64)
               for h in (4, 2, 2))
    inv_freq = 1.0 / 10000 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    got = recall_attention(q, k, v, s, 0.25, inv_freq)
    want = reference_attention(s, inv_freq)(None, q, k, v, None, scaling=0.25)[0]
    assert (got - want.transpose(1, 2)).abs().max().item() <= TOLERANCE


def test_a_batch_is_its_sequences_one_by_one():
    """Each sequence of a batch chooses its own blocks (per key head and query)."""
    s = resolve_settings("recall", CONTEXT, OPTIONS)
    gen = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, h, 150, 16, generator=gen, dtype=torch.float64)
               for h in (4, 2, 2))
    inv_freq = 1.0 / 10000 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    both = recall_attention(q, k, v, s, 0.25, inv_freq)
    for i in range(2):
        alone = recall_attention(q[i:i + 1], k[i:i + 1], v[i:i + 1], s, 0.25, inv_freq)
        assert (both[i:i + 1] - alone).abs().max().item() <= TOLERANCE
