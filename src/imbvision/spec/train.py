"""What only ``train`` takes beside the run specification: :class:`TrainConfig` (``config.json`` of a run).

:class:`TrainConfig` is the run specification (:class:`~imbvision.spec.RunSpec`: the settings
``train`` and ``compare`` share) plus what only ``train`` takes: the strategy, the mode, the seed
and the fine-tuning settings. Each field is declared once here (type, default, validator, help);
``imbvision train``'s options are generated from these fields.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import field_validator

from .._choices import ACCELERATORS, DIST_STRATEGIES, PRECISIONS
from .._limits import RANGES
from ._declared import _field
from .run import RunSpec

__all__ = ["TrainConfig", "MODES"]

#: ``--mode``: ``head`` (a head on frozen embeddings) or ``finetune`` (end to end).
MODES = ("head", "finetune")

def _int_range(name: str) -> dict[str, Any]:
    lo, hi = RANGES[name]
    return {"valid": f"use an integer in {lo}..{hi}", "ge": lo, "le": hi}


class TrainConfig(RunSpec):
    """Everything a run needs; :meth:`to_dict` is what ``config.json`` holds.

    Raises
    ------
    ConfigError
        On construction, for the first invalid value: the option, the value and what is valid.
    """

    strategy: str = _field("ce", "Remedies joined by '+', e.g. focal:gamma=2+balanced-sampler (see `imbvision "
                           "strategies`)", valid="a strategy name (see `imbvision strategies`)", flag=("--strategy",),
                           min_length=1)
    mode: Literal[MODES] = _field("head", "head (frozen embeddings, CPU seconds) or finetune (end to end)",  # type: ignore[valid-type]
                                  valid=f"valid: {', '.join(MODES)}")
    seed: int = _field(0, "Seed of the split and the fit (same seed, same numbers)", **_int_range("seed"))
    n_boot: int = _field(1000, "Bootstrap resamples of the test metrics' intervals", cli=False, **_int_range("n_boot"))
    epochs: int = _field(10, "Fine-tune: epochs", **_int_range("epochs"))
    batch_size: int = _field(32, "Fine-tune: batch size", **_int_range("batch_size"))
    lr: float = _field(3e-4, "Fine-tune: backbone learning rate", valid="use a positive number", gt=0)
    head_lr: float = _field(3e-3, "Fine-tune: learning rate of the new linear head", valid="use a positive number",
                            gt=0)
    weight_decay: float = _field(1e-4, "Fine-tune: AdamW weight decay", valid="use 0 or a positive number", ge=0)
    unfreeze: Union[str, int] = _field("all", "Fine-tune: 'all' or the number of last backbone blocks to train",
                                       valid="use 'all' or a number of last blocks (0 = head only)")
    patience: int = _field(5, "Fine-tune: early stopping patience (epochs without val AP gain)",
                           **_int_range("patience"))
    accelerator: Literal[ACCELERATORS] = _field("auto", "Fine-tune: auto, cpu, cuda (gpu), mps",  # type: ignore[valid-type]
                                                valid=f"valid: {', '.join(ACCELERATORS)}")
    devices: int = _field(1, "Fine-tune: number of devices (DDP when > 1)", **_int_range("devices"))
    precision: Literal[PRECISIONS] = _field("32-true", "Fine-tune: 32-true, bf16-mixed, 16-mixed (Lightning Fabric)",  # type: ignore[valid-type]
                                            valid=f"valid: {', '.join(PRECISIONS)}")
    dist_strategy: Literal[DIST_STRATEGIES] = _field(  # type: ignore[valid-type]
        "auto", "Fine-tune: Lightning Fabric strategy (auto, ddp, ...)", valid=f"valid: {', '.join(DIST_STRATEGIES)}",
        flag=("--dist-strategy",))
    workers: int = _field(0, "Fine-tune: DataLoader workers", **_int_range("workers"))
    #: What the run records beside its settings (how the resolution was chosen, the compare it came from).
    extra: dict[str, Any] = _field({}, "Records kept with the settings", valid="a mapping", cli=False)

    @field_validator("unfreeze")
    @classmethod
    def _unfreeze(cls, v: Union[str, int]) -> str:
        u = str(v)
        if u != "all" and not (u.isdigit() and int(u) >= 0):
            raise ValueError("use 'all' or a number of last blocks (0 = head only)")
        return u
