"""lexformer: the Length-Extrapolatable (LeX) Transformer, its baselines and its evaluation.

The library is usable without the CLI::

    from lexformer import ModelConfig, TransformerLM, generate
    model = TransformerLM(ModelConfig(position="xpos", train_length=256))
    logits = model(ids, attention="blockwise")
    ckpt = lexformer.load("runs/xpos")  # model, tokenizer and metadata of a checkpoint
"""

from .checkpoint import Checkpoint, load
from .config import ModelConfig
from .errors import LexformerError
from .generate import generate
from .model import TransformerLM

__version__ = "0.1.0"

__all__ = ["Checkpoint", "LexformerError", "ModelConfig", "TransformerLM", "__version__",
           "generate", "load"]
