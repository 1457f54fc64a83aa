"""Length-extension methods for pretrained Hugging Face RoPE models.

``open_hf_model(spec)`` loads a transformers model folder, a ``.gguf`` file or a built-in
model (``smollm2``) as a :class:`lexformer.lm.LanguageModel` whose ``attention=`` takes any
name in ``HF_METHODS``: full attention, the paper's blockwise attention, sliding window,
StreamingLLM sinks, LM-Infinite, SelfExtend, blockwise with sinks, and transformers' RoPE
rescalings (PI, dynamic NTK, YaRN, Llama 3). ``use_method`` / ``patch_model`` apply a method
to any loaded model so that ``model.generate`` runs with it — with the method's bounded KV
cache unless the call passes its own; ``window_cache(model, settings)``
builds that cache by hand (``resolve_settings(method, L, options)``).

Needs the ``hf`` extra (transformers, gguf, accelerate); importing this package does not
import transformers until a model is loaded or patched.
"""

from .lm import HFLanguageModel, open_hf_model
from .loading import BUILTIN_MODELS, is_hf_spec
from .methods import HF_METHODS, MethodOptions, resolve_settings
from .patch import patch_model, use_method


def window_cache(model, settings):
    """:func:`lexformer.hf.cache.window_cache` (imported when called: it needs transformers)."""
    from .cache import window_cache as build

    return build(model, settings)


__all__ = ["BUILTIN_MODELS", "HF_METHODS", "HFLanguageModel", "MethodOptions", "is_hf_spec",
           "open_hf_model", "patch_model", "resolve_settings", "use_method", "window_cache"]
