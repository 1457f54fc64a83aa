"""The experiments, each a sequence of resumable stages on one runner (:mod:`.stages`).

- :mod:`.reproduce`: the paper's causal length-extrapolation experiment
  (``lexformer reproduce``);
- :mod:`.encoder`: the same question for bidirectional masked-LM encoders
  (``lexformer reproduce --objective mlm``);
- :mod:`.extend`: length-extension methods compared on a pretrained model
  (``lexformer extend``).
"""

from .encoder import MLMSettings, run_mlm_pipeline
from .extend import ExtendRun, ExtendSettings, run_extend
from .reproduce import ReproduceSettings, reproduce, run_pipeline
from .stages import JsonCodec, Runner, Stage

__all__ = ["ExtendRun", "ExtendSettings", "JsonCodec", "MLMSettings", "ReproduceSettings",
           "Runner", "Stage", "reproduce", "run_extend", "run_mlm_pipeline", "run_pipeline"]
