"""Launching a fine-tune run: Fabric set-up, ranks (spawned or external), and the result back to the caller.

``devices=N`` in one process tree starts N workers with Fabric's ``ddp_spawn``
(gloo on CPU, NCCL on GPUs); the result of rank 0 comes back to the caller,
which alone writes the run folder. Under an external launcher every rank runs
the whole command; Fabric reads the rank and world size from the environment::

    # one node, 4 GPUs
    torchrun --nproc_per_node 4 -m imbvision.cli train --mode finetune --devices 4 ...
    # two nodes of 4 GPUs (run on each node; NODE is 0 or 1)
    torchrun --nnodes 2 --node_rank NODE --nproc_per_node 4 \\
        --master_addr HOST0 --master_port 29500 -m imbvision.cli train --mode finetune --devices 4 ...

Under torchrun ``devices`` is taken from ``LOCAL_WORLD_SIZE`` and the number
of nodes from ``WORLD_SIZE / LOCAL_WORLD_SIZE``; the run folder (and data)
must be on a filesystem every node sees; every rank returns the same gathered
result and :attr:`FinetuneOutput.rank` tells the caller whether to write.
Only ``auto`` and the DDP strategies are supported: checkpoints hold the full
state, written by rank 0. The default shuffle gives the ranks disjoint shards
(``DistributedSampler``, ``drop_last``); ``history[*].rank_overlap`` records it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...data.records import ImageRecord
from ...errors import ConfigError, ImbvisionError
from ...strategies.registry import Recipe, StrategyContext
from ..config import TrainConfig
from ..head import effective_prior
from . import checkpoint as ckpt
from .data import select_training
from .loop import Job, NonFiniteLossError, fit

if TYPE_CHECKING:
    from ..prepare import Prepared

__all__ = ["STRATEGIES", "FinetuneOutput", "run_finetune", "make_fabric", "config_hash"]

STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork")


@dataclass
class FinetuneOutput:
    """What :func:`run_finetune` returns to :func:`imbvision.workflows.train.train`.

    Attributes
    ----------
    p_val, p_test
        Raw positive-class probabilities of the best epoch's weights, in split order.
    arrays
        The network's state dict as numpy arrays, keys prefixed ``net.``.
    meta
        Bundle description (mode, backbone, head).
    effective_prior
        The positive rate the network effectively trained at (see
        :func:`~imbvision.training.head.effective_prior`), or ``None``.
    info
        Epochs run, best epoch and AP, per-epoch history, counts, timing.
    examples
        A few synthesised / mixed training images per strategy: ``(uint8 HWC, caption)``.
    rank
        Global rank of this process: under torchrun every rank returns the same
        (gathered) result and only rank 0 should write the run folder.
    """

    p_val: np.ndarray
    p_test: np.ndarray
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    effective_prior: float | None
    info: dict[str, Any]
    examples: dict[str, list[tuple[np.ndarray, str]]] = field(default_factory=dict)
    rank: int = 0


def config_hash(cfg: TrainConfig, recipe: Recipe, train: list[ImageRecord]) -> str:
    """What a checkpoint must match to be resumed (epochs and patience may change)."""
    d = cfg.to_dict()
    for k in ("epochs", "patience", "n_boot", "workers", "extra", "cache_dir", "threshold", "calibration",
              "prior_correction", "data"):
        d.pop(k, None)
    d["recipe"] = recipe.name
    d["train"] = [str(r.path) for r in train]
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def external_launcher() -> bool:
    """True under torchrun / torchelastic (ranks made outside this process)."""
    from lightning_fabric.plugins.environments import TorchElasticEnvironment
    return TorchElasticEnvironment.detect()


def make_fabric(cfg: TrainConfig) -> tuple[Any, bool]:
    """A Fabric for ``cfg``; returns it and whether ``launch(fn)`` must spawn the ranks."""
    from lightning_fabric import Fabric

    if cfg.dist_strategy not in STRATEGIES:
        raise ConfigError(
            f"--dist-strategy {cfg.dist_strategy!r} invalid; valid: {', '.join(STRATEGIES)} "
            "(checkpoints hold the full state on rank 0, so sharded strategies are not supported)"
        )
    devices: Any = cfg.devices
    num_nodes = 1
    strategy = cfg.dist_strategy
    if external_launcher():
        local = int(os.environ.get("LOCAL_WORLD_SIZE", devices))
        world = int(os.environ.get("WORLD_SIZE", local))
        devices, num_nodes = local, max(1, world // max(local, 1))
        spawn = False
    else:
        spawn = isinstance(devices, int) and devices > 1
        if spawn and strategy in ("auto", "ddp"):
            strategy = "ddp_spawn"
    if isinstance(devices, int) and devices < 1:
        raise ConfigError(f"--devices {devices} invalid; use 1 or more")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fabric = Fabric(accelerator=cfg.accelerator, devices=devices, num_nodes=num_nodes,
                        precision=cfg.precision, strategy=strategy)
    return fabric, spawn


class Box:
    """Opaque holder: Lightning's spawn launcher walks dataclass arguments and refuses frozen ones."""

    def __init__(self, job: Job) -> None:
        self.job = job


def result_path(job: Job) -> Path:
    return job.out / "checkpoints" / ".result.safetensors"


def train_process(fabric: Any, box: Box) -> dict[str, Any]:
    """The whole training on one spawned rank; rank 0 leaves its result in a file for the caller."""
    try:
        res = fit(fabric, box.job)
    except ImbvisionError as exc:
        # Carry our error across the process boundary as data; the caller re-raises it.
        return {"error": type(exc).__name__, "message": str(exc)}
    if fabric.is_global_zero:
        ckpt.write_result(result_path(box.job), res)
    return {"result": str(result_path(box.job))}


def run_finetune(cfg: TrainConfig, prep: "Prepared", recipe: Recipe, out: Path, *, progress: bool = True,
                 resume: bool = False) -> FinetuneOutput:
    """Fine-tune ``cfg.backbone`` + a linear head end to end on the training split.

    Parameters
    ----------
    cfg
        Run configuration (``epochs``, ``batch_size``, ``lr``, ``head_lr``, ``unfreeze``,
        ``patience``, ``accelerator``, ``devices``, ``precision``, ``dist_strategy``, ``workers``...).
    prep
        The checked dataset and its split; only ``prep.split.train`` is trained on,
        validation picks the best epoch, test is only scored.
    recipe
        Composed strategies (loss, sampler, selection resamplers, synthesis, mixing).
    out
        Run folder; checkpoints go to ``out/checkpoints``, example images to ``out/examples``.
    resume
        Continue from ``out/checkpoints/last.safetensors`` when it exists.

    Returns
    -------
    FinetuneOutput

    Raises
    ------
    ConfigError
        Generating resamplers (head mode only), bad ``unfreeze``/strategy values, or a
        checkpoint from another configuration.
    NonFiniteLossError
        The loss became NaN or infinite; the last good checkpoint is kept.
    """
    out = Path(out)
    if cfg.tiles:
        raise ConfigError(f"--tiles {cfg.tiles} works in head mode only; fine-tune mode sees the whole image "
                          "(raise --image-size for small objects)")
    ds, split = prep.dataset, prep.split
    train = [ds.records[int(i)] for i in split.train]
    val = [ds.records[int(i)] for i in split.val]
    test = [ds.records[int(i)] for i in split.test]
    train, resampling = select_training(cfg, recipe, train, progress)
    ctx = StrategyContext.from_labels([r.label for r in train], seed=cfg.seed)
    n0, n1 = ctx.class_counts
    steps = []
    for spec in recipe.synthesis:
        steps.append((spec.name, int(spec.build(ctx).n_to_generate(n1, n0))))
    counts = (n0, n1 + sum(n for _, n in steps))
    prior = effective_prior(recipe, counts)
    job = Job(cfg, recipe, out, train, val, test, steps, counts, prior, progress, resume,
              config_hash(cfg, recipe, train), resampling)
    fabric, spawn = make_fabric(cfg)
    if spawn:
        res = fabric.launch(train_process, Box(job))
        if "result" in res:
            path = Path(res["result"])
            res = ckpt.read_result(path)
            path.unlink(missing_ok=True)
    else:
        fabric.launch()
        res = fit(fabric, job)
    if "error" in res:
        kinds = {"NonFiniteLossError": NonFiniteLossError, "ConfigError": ConfigError}
        raise kinds.get(res["error"], ImbvisionError)(res["message"])
    bb_meta = {"name": cfg.backbone, "weights": cfg.weights, "weights_id": res["weights_id"],
               "image_size": cfg.image_size, "tiles": 0, "features": "global"}
    return FinetuneOutput(
        p_val=np.asarray(res["p_val"], dtype=np.float64), p_test=np.asarray(res["p_test"], dtype=np.float64),
        arrays=res["arrays"],
        meta={"mode": "finetune", "backbone": bb_meta, "head": {"name": "finetune", "params": {}}},
        effective_prior=prior, info=res["info"], examples=res["examples"], rank=0 if spawn else fabric.global_rank,
    )
