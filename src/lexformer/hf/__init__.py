"""Length-extension methods for pretrained Hugging Face RoPE models.

``open_hf_model(spec)`` loads a transformers model folder, a ``.gguf`` file or a built-in
model (``smollm2``) as a :class:`lexformer.lm.LanguageModel` whose ``attention=`` takes any
name in ``HF_METHODS``: full attention, the paper's blockwise attention, sliding window,
StreamingLLM sinks, LM-Infinite, SelfExtend, blockwise with sinks, and transformers' RoPE
rescalings (PI, dynamic NTK, YaRN, Llama 3). ``use_method`` / ``patch_model`` apply a method
to any loaded model so that ``model.generate`` runs with it.

Needs the ``hf`` extra (transformers, gguf, accelerate); importing this package does not
import transformers until a model is loaded or patched.
"""

from .lm import HFLanguageModel, open_hf_model
from .loading import BUILTIN_MODELS, is_hf_spec
from .methods import HF_METHODS, MethodOptions
from .patch import patch_model, use_method

__all__ = ["BUILTIN_MODELS", "HF_METHODS", "HFLanguageModel", "MethodOptions", "is_hf_spec",
           "open_hf_model", "patch_model", "use_method"]
