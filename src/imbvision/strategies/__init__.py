"""Every class-imbalance remedy as a named, composable strategy.

Use them by name (``compose("focal+balanced-sampler+copy-paste")``) or as
plain PyTorch / scikit-learn parts in your own code::

    from imbvision.strategies import FocalLoss, CopyPaste, MixUp, DistributedWeightedSampler
"""

from .registry import (
    FAMILIES, DoubleCorrectionWarning, Param, Recipe, StrategyContext, StrategyRecord, StrategySpec, compose,
    get_strategy, list_strategies, parse_strategies, register_strategy,
)
from .losses import (
    ClassBalancedLoss, CrossEntropy, FocalLoss, LogitAdjustedLoss, WeightedCrossEntropy, ce_loss,
    class_weight_vector, focal_loss, focal_loss_multiclass, logit_adjusted_loss, weighted_ce_loss,
)
from .samplers import BalancedSampler, DistributedWeightedSampler, balanced_sample_weights
from .resampling import ResampleResult, Resampler
from .object_masks import propose_mask, save_mask_contact_sheet
from .synthesis import AugmentOversample
from .copy_paste import CopyPaste
from .mixing import CutMix, MinorityMixUp, MixUp, ObjectCutMix
from .head_base import Head, head_from_arrays
from .heads import LogRegHead
from .torch_heads import LinearHead, MLPHead
from .patch_heads import FusionHead, NormalityHead, PatchHead
from .examples import save_example_grid, strategy_examples

__all__ = [
    "FAMILIES", "DoubleCorrectionWarning", "Param", "Recipe", "StrategyContext", "StrategyRecord", "StrategySpec",
    "compose", "get_strategy", "list_strategies", "parse_strategies", "register_strategy",
    "ClassBalancedLoss", "CrossEntropy", "FocalLoss", "LogitAdjustedLoss", "WeightedCrossEntropy", "ce_loss",
    "class_weight_vector", "focal_loss", "focal_loss_multiclass", "logit_adjusted_loss", "weighted_ce_loss",
    "BalancedSampler", "DistributedWeightedSampler", "balanced_sample_weights", "ResampleResult", "Resampler",
    "AugmentOversample", "CopyPaste", "propose_mask", "save_mask_contact_sheet",
    "CutMix", "MinorityMixUp", "MixUp", "ObjectCutMix",
    "Head", "LinearHead", "LogRegHead", "MLPHead", "head_from_arrays", "PatchHead", "NormalityHead", "FusionHead", "save_example_grid", "strategy_examples",
]
