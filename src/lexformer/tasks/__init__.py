"""Does the model use its context? Four measurements through the
:class:`~lexformer.lm.LanguageModel` interface, so they apply equally to a lexformer checkpoint
and a pretrained model, under any attention method it offers:

* ``position-loss`` — mean token loss by position in log-spaced bins
  (:mod:`~lexformer.tasks.position_loss`);
* ``copy`` — how much of a span's loss is recovered when it repeats d tokens later
  (:mod:`~lexformer.tasks.copying`);
* ``passkey`` — retrieval of a pass key hidden at a depth in filler text
  (:mod:`~lexformer.tasks.passkey`);
* ``ruler`` — RULER's 13 synthetic tasks, scored as RULER scores them
  (:mod:`~lexformer.tasks.ruler`).

Typical use::

    from lexformer.lm import LexformerLM
    from lexformer.tasks import run_tasks

    lm = LexformerLM.from_checkpoint("runs/xpos")
    results = run_tasks(lm, ["copy", "position-loss"], ["full", "blockwise"], documents)
    atomic_write_json("tasks.json", results.to_json())

Figures live in :mod:`lexformer.tasks.plots` (imported on demand: matplotlib stays out of
``import lexformer.tasks``).
"""

from .copying import copy_at_distance
from .passkey import build_passkey_prompt, passkey_accuracy
from .position_loss import log_bin_ends, position_loss
from .registry import TASKS, Task, check_task_names, run_tasks
from .results import BinLoss, CopyScore, PasskeyCell, TaskResults
from .settings import TaskSettings, default_distances, default_passkey_lengths

__all__ = [
    "TASKS", "BinLoss", "CopyScore", "PasskeyCell", "Task", "TaskResults", "TaskSettings",
    "build_passkey_prompt", "check_task_names", "copy_at_distance", "default_distances",
    "default_passkey_lengths", "log_bin_ends", "passkey_accuracy", "position_loss",
    "run_tasks",
]
