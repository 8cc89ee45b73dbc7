"""Fine-tune mode: backbone + one-logit head trained end to end on Lightning Fabric.

The pieces follow Lightning Fabric's ``build_your_own_trainer`` example, one
concern per module:

- :mod:`imbvision.training.network` — the network (``FinetuneNet``), unfreezing,
  parameter groups, the learning-rate schedule, and prediction from a bundle
  (below :mod:`imbvision.model`);
- :mod:`.data` — decoding, per-sample randomness, virtual positives of the
  synthesis steps, batches, mixing in the collate function, the sampler, and
  the selection resamplers applied once before training;
- :mod:`.checkpoint` — the checkpoint format (safetensors, no pickle) and the
  file a spawned rank hands its result back in;
- :mod:`.collectives` — scores gathered across ranks, validation AP;
- :mod:`.loop` — ``fit``, ``train_loop``, ``train_epoch``, ``training_step``,
  ``val_loop``, ``save``, ``finish``;
- :mod:`.launch` — Fabric set-up, ``ddp_spawn`` or an external launcher
  (torchrun), and :func:`run_finetune`, the entry point.

Strategies, on the training split only
--------------------------------------
- selection resamplers (random-over, random-under, tomek, enn) choose the
  training images once, before training (those whose record says
  ``needs_embeddings`` find neighbours in the cached embeddings of the same
  backbone); resamplers whose record says ``generates_samples`` (smote,
  adasyn, smote-tomek) make embeddings without an image and are refused, as is
  any strategy whose record's ``modes`` lacks ``finetune``;
- synthesis steps add ``n_to_generate(n_pos, n_neg)`` *virtual* positives to
  every epoch; each is made afresh, in a DataLoader worker, from a random
  training positive (and, when the record says ``needs_background``, a random
  training negative);
- mixing is applied to every training batch in the collate function;
- a sampler strategy replaces the default shuffle (one global draw per epoch,
  split between ranks: :class:`~imbvision.strategies.samplers.DistributedWeightedSampler`);
- the loss strategy is built from the class counts after all of the above.
"""

from ..network import FinetuneNet, apply_unfreeze, build_network
from .checkpoint import CHECKPOINT_FORMAT, read_checkpoint
from .launch import FinetuneOutput, run_finetune
from .loop import NonFiniteLossError

__all__ = [
    "FinetuneOutput",
    "FinetuneNet",
    "NonFiniteLossError",
    "run_finetune",
    "build_network",
    "apply_unfreeze",
    "read_checkpoint",
    "CHECKPOINT_FORMAT",
]
