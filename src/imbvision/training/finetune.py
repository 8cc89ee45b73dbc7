"""Fine-tune mode: backbone + one-logit head trained end to end on Lightning Fabric.

The network is the backbone's pooled features followed by ``nn.Linear(F, 1)``;
the input normalisation lives inside the network, so a batch of uint8 images
goes in as it is. The loop is small and device-agnostic: ``Fabric.setup``,
``setup_dataloaders``, ``backward``; precision and devices are Fabric options.

Training: AdamW with ``lr`` for the backbone and ``head_lr`` for the head (no
weight decay on biases and norm weights), linear warm-up over at most 100
steps then cosine decay to 1 % at the last epoch; the head's bias starts at
the log-odds of the effective training prior. ``unfreeze`` ``"all"`` trains
everything, an integer K the last K backbone blocks (plus the layers after
them) and the head; frozen modules stay in ``eval()`` (BatchNorm statistics
kept). Images are decoded with :mod:`imbvision.data.decode` and the whole
image resized to ``image_size`` square (no crop, as for prediction), with
random horizontal flips for training. Validation AP (every epoch) picks the
best epoch; training stops after ``patience`` epochs without a gain
(``patience <= 0``: never).

Strategies, on the training split only
--------------------------------------
- selection resamplers (random-over, random-under, tomek, enn) choose the
  training images once, before training (tomek/enn find neighbours in the
  cached embeddings of the same backbone); generating resamplers (smote,
  adasyn, smote-tomek) make embeddings without an image and are refused;
- synthesis steps add ``n_to_generate(n_pos, n_neg)`` *virtual* positives to
  every epoch; each is made afresh, in a DataLoader worker, from a random
  training positive (and, for copy-paste, a random training negative);
- mixing is applied to every training batch in the collate function;
- a sampler strategy replaces the default shuffle (one global draw per epoch,
  split between ranks: :class:`~imbvision.strategies.samplers.DistributedWeightedSampler`);
- the loss strategy is built from the class counts after all of the above.

Determinism and resume
----------------------
Every random draw is a pure function of ``(seed, epoch, ...)``: the shuffle or
weighted draw of an epoch from ``(seed, epoch)``; the flip and synthesis of a
sample from ``(seed, epoch, draw position, index)``; mixing from
``(seed, epoch, step, rank)``; the global torch RNG (dropout, drop-path) is
re-seeded from ``(seed, epoch, rank)`` at the start of each epoch; CPU runs use
``torch.use_deterministic_algorithms``. The learning rate is a function of the
global step. A run resumed from the checkpoint of epoch ``e`` therefore
continues exactly as the uninterrupted run would (same device and world size).

Checkpoints (no pickle)
-----------------------
After every epoch rank 0 writes, atomically, ``checkpoints/last.safetensors``
(tensors ``model/*`` current weights, ``best/*`` best weights, ``optim/*``
AdamW state; metadata: the trainer state and a JSON index of the optimizer's
structure) and then ``checkpoints/last.json`` (a readable copy of the trainer
state: epoch, best AP and epoch, history, config hash). The safetensors file
alone is complete, so a kill between the two writes loses nothing.

Distributed
-----------
``devices=N`` in one process tree starts N workers with Fabric's ``ddp_spawn``
(gloo on CPU, NCCL on GPUs); the result of rank 0 comes back to the caller,
which alone writes the run folder. Validation scores are gathered from every
rank before the AP is computed. Under an external launcher every rank runs the
whole command; Fabric reads the rank and world size from the environment::

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
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset as TorchDataset, DistributedSampler, Sampler

from .._io import write_json
from ..data.decode import load_image_array, load_mask
from ..data.records import ImageRecord
from ..errors import ConfigError, ImbvisionError
from ..strategies.registry import Recipe, StrategyContext
from .config import TrainConfig
from .head import effective_prior

if TYPE_CHECKING:
    from ..model import Model
    from .prepare import Prepared

__all__ = [
    "FinetuneOutput",
    "FinetuneNet",
    "NonFiniteLossError",
    "run_finetune",
    "predict_arrays",
    "build_network",
    "apply_unfreeze",
    "read_checkpoint",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "imbvision-finetune-checkpoint"
CHECKPOINT_VERSION = 1
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork")
_GENERATING = ("smote", "adasyn", "smote-tomek")
_NEED_EMBEDDINGS = ("tomek", "enn")
_WARMUP_STEPS = 100  # linear learning-rate warm-up, capped at one epoch
_STEADY_SKIP = 2  # steps left out of the steady-state throughput (worker start-up)


class NonFiniteLossError(ImbvisionError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class FinetuneOutput:
    """What :func:`run_finetune` returns to :func:`imbvision.training.run.train`.

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


# --------------------------------------------------------------------------- network


class FinetuneNet(nn.Module):
    """Backbone (pooled features) + ``nn.Linear(num_features, 1)``; returns logits ``(N,)``.

    Takes uint8 ``(N, 3, H, W)`` images (or floats in [0, 1]) and applies the
    backbone's normalisation itself, so callers never handle it.
    """

    def __init__(self, backbone: nn.Module, num_features: int,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        x = x.to(self.mean.dtype) / scale
        x = (x - self.mean) / self.std
        return self.head(self.backbone(x)).squeeze(1)


def build_network(backbone: Any) -> FinetuneNet:
    """Wrap a :class:`~imbvision.backbones.Backbone` into a :class:`FinetuneNet`."""
    return FinetuneNet(backbone.model, backbone.num_features, backbone.mean, backbone.std)


def _block_container(model: nn.Module) -> tuple[str, nn.Module] | None:
    for name in ("blocks", "stages", "layers"):
        m = getattr(model, name, None)
        if isinstance(m, (nn.Sequential, nn.ModuleList)) and len(m) > 0:
            return name, m
    return None


def apply_unfreeze(net: FinetuneNet, unfreeze: str | int, backbone_name: str = "backbone") -> dict[str, int]:
    """Set ``requires_grad`` by stage; returns trainable / total parameter counts.

    ``"all"`` trains everything. An integer K trains the head, the last K
    blocks of the backbone (``model.blocks[-K:]`` for timm EfficientNets, also
    ``stages``/``layers``) and every top-level module after them
    (``conv_head``, ``bn2``); ``0`` is a linear probe.
    """
    u = str(unfreeze)
    if u == "all":
        net.requires_grad_(True)
    else:
        if not u.isdigit():
            raise ConfigError(f"--unfreeze {u!r} invalid; use 'all' or a number of last blocks (0 = head only)")
        k = int(u)
        net.backbone.requires_grad_(False)
        if k > 0:
            found = _block_container(net.backbone)
            if found is None:
                raise ConfigError(
                    f"--unfreeze {k}: backbone {backbone_name!r} has no 'blocks', 'stages' or 'layers' "
                    "sequence to unfreeze by stage; use --unfreeze all or 0"
                )
            cname, blocks = found
            if k > len(blocks):
                raise ConfigError(
                    f"--unfreeze {k} exceeds the {len(blocks)} blocks of {backbone_name!r}; "
                    f"use 0..{len(blocks)} or 'all'"
                )
            for b in list(blocks)[-k:]:
                b.requires_grad_(True)
            after = False
            for name, child in net.backbone.named_children():
                if after:
                    child.requires_grad_(True)
                after = after or name == cname
        net.head.requires_grad_(True)
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"trainable_params": int(trainable), "total_params": int(total)}


def _set_train_mode(net: nn.Module) -> None:
    """``train()``, then every module whose parameters are all frozen back to ``eval()``.

    Frozen BatchNorm layers keep their running statistics, and frozen stages
    run without dropout / drop-path.
    """
    net.train()
    for m in net.modules():
        params = list(m.parameters())
        if params and not any(p.requires_grad for p in params):
            m.eval()


def _param_groups(net: FinetuneNet, lr: float, head_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Backbone at ``lr``, head at ``head_lr``; no weight decay on biases and norm weights."""
    groups = []
    for part, mod, base in (("backbone", net.backbone, lr), ("head", net.head, head_lr)):
        decay = [p for p in mod.parameters() if p.requires_grad and p.ndim > 1]
        plain = [p for p in mod.parameters() if p.requires_grad and p.ndim <= 1]
        if decay:
            groups.append({"params": decay, "lr": base, "weight_decay": weight_decay, "name": f"{part}"})
        if plain:
            groups.append({"params": plain, "lr": base, "weight_decay": 0.0, "name": f"{part}-no-decay"})
    return groups


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 1 % at ``total``."""
    w = min(1.0, (step + 1) / max(1, warmup))
    c = 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))
    return w * c


# --------------------------------------------------------------------------- randomness


def _derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends on every part (strings tag the purpose)."""
    ints = [p if isinstance(p, int) else int.from_bytes(hashlib.blake2b(p.encode(), digest_size=4).digest(), "little")
            for p in parts]
    a, b = np.random.SeedSequence([int(i) for i in ints]).generate_state(2, np.uint32)
    return ((int(a) << 32) | int(b)) & ((1 << 63) - 1)


def _generator(*parts: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(_derive_seed(*parts))


# --------------------------------------------------------------------------- data


def _resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) bool → (size, size) bool; a pixel is set when any source pixel under it is (tiny objects survive)."""
    m = mask.float()[None, None]
    return F.adaptive_max_pool2d(m, (size, size))[0, 0] > 0.5


def _load(rec: ImageRecord, size: int, with_mask: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decode, resize the whole image to ``size`` square (no crop): uint8 (3, S, S) and optional mask."""
    from ..backbones.embed import preprocess

    arr = load_image_array(rec.path)
    img = torch.from_numpy(preprocess(arr, size)[0])
    mask = None
    if with_mask and rec.mask is not None:
        m = load_mask(rec.mask, (arr.shape[1], arr.shape[0]))
        if bool(m.any()):
            mask = _resize_mask(m, size)
    return img, mask


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


@dataclass
class _SynthStep:
    name: str
    op: Any
    n: int


class _TrainData(TorchDataset):
    """Training images plus per-epoch virtual positives; keys are ``(epoch, step, gpos, index)``.

    Index ``i < n_real`` is the training record ``records[i]``; larger indices
    are virtual positives of the synthesis steps, made afresh from a random
    positive (and a random negative for copy-paste) with a generator seeded by
    ``(seed, epoch, gpos, index)``.
    """

    def __init__(self, records: list[ImageRecord], steps: list[_SynthStep], *, size: int, seed: int,
                 masks: bool, flip: bool = True) -> None:
        self.records = records
        self.steps = steps
        self.size = size
        self.seed = seed
        self.masks = masks
        self.flip = flip
        y = np.array([r.label for r in records], dtype=np.int64)
        self.pos = np.flatnonzero(y == 1)
        self.neg = np.flatnonzero(y == 0)
        self.n_real = len(records)
        self.bounds = np.cumsum([self.n_real] + [s.n for s in steps])

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def labels(self) -> np.ndarray:
        y = np.array([r.label for r in self.records], dtype=np.int64)
        return np.concatenate([y, np.ones(len(self) - self.n_real, dtype=np.int64)])

    def make(self, epoch: int, gpos: int, i: int) -> tuple[torch.Tensor, float, torch.Tensor | None, str | None]:
        """The sample ``i`` of ``epoch`` at draw position ``gpos``: uint8 image, label, mask, origin."""
        g = _generator(self.seed, "sample", epoch, gpos, i)
        origin = None
        if i < self.n_real:
            img, mask = _load(self.records[i], self.size, self.masks)
            label = float(self.records[i].label)
        else:
            k = int(np.searchsorted(self.bounds, i, side="right")) - 1
            step = self.steps[k]
            img, mask = self._synthesise(step, g)
            label, origin = 1.0, step.name
        if self.flip and bool(torch.rand((), generator=g) < 0.5):
            img = img.flip(-1)
            mask = mask.flip(-1) if mask is not None else None
        return img, label, mask, origin

    def _synthesise(self, step: _SynthStep, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        from ..errors import DataError
        from ..strategies.synthesis import CopyPaste

        last: Exception | None = None
        for _ in range(10):  # a positive without a findable object is skipped for another
            p = self.records[self.pos[int(torch.randint(0, len(self.pos), (), generator=g))]]
            img, mask = _load(p, self.size, True)
            bg = None
            if isinstance(step.op, CopyPaste):
                b = self.records[self.neg[int(torch.randint(0, len(self.neg), (), generator=g))]]
                bg = _load(b, self.size, False)[0].float() / 255
            try:
                out, new_mask = step.op(img.float() / 255, mask, generator=g, background=bg)
            except DataError as exc:
                last = exc
                continue
            return _to_uint8(out), (new_mask.bool() if self.masks else None)
        raise DataError(f"{step.name}: 10 random training positives in a row had no usable object ({last}); "
                        "give masks for the positives") from last

    def __getitem__(self, key: tuple[int, int, int, int]
                    ) -> tuple[torch.Tensor, float, torch.Tensor | None, int, int, float]:
        t = time.thread_time()
        epoch, step, gpos, i = key
        img, label, mask, _ = self.make(epoch, gpos, i)
        return img, label, mask, epoch, step, time.thread_time() - t


class _Collate:
    """Stack a training batch; apply the mixing strategy with a generator seeded by ``(seed, epoch, step, rank)``.

    Returns ``(x, y, cpu_s)``: ``cpu_s`` is the CPU time (of the thread that did it:
    a DataLoader worker or the main thread) spent making the batch, for telemetry.
    """

    def __init__(self, mixer: Any, seed: int, rank: int, size: int) -> None:
        self.mixer, self.seed, self.rank, self.size = mixer, seed, rank, size

    def __call__(self, items: list) -> tuple[torch.Tensor, torch.Tensor, float]:
        t = time.thread_time()
        x = torch.stack([it[0] for it in items])
        y = torch.tensor([it[1] for it in items], dtype=torch.float32)
        if self.mixer is not None:
            epoch, step = items[0][3], items[0][4]
            masks = torch.stack([it[2] if it[2] is not None else torch.zeros(self.size, self.size, dtype=torch.bool)
                                 for it in items])
            g = _generator(self.seed, "mix", epoch, step, self.rank)
            xm, ym = self.mixer(x.float() / 255, y, generator=g, masks=masks)
            x, y = xm.float(), ym.float()
        return x, y, sum(it[5] for it in items) + time.thread_time() - t


class _EpochBatches(Sampler[list]):
    """Batches of keys ``(epoch, step, gpos, index)`` from a per-rank sampler.

    ``gpos`` is the position in the epoch's global draw (ranks interleave, as
    in DistributedSampler), so every sample's randomness is unique across
    ranks and fixed by the epoch alone. A trailing batch of one is dropped
    (BatchNorm cannot train on it); ranks have equal lengths, so equal batches.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, rank: int, world: int) -> None:
        # Not named ``sampler``: Fabric's data loader wrapper would call its ``set_epoch`` with
        # the number of times the loader was iterated, which restarts at 0 after a resume.
        self.draws, self.batch_size, self.rank, self.world = sampler, batch_size, rank, world
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.draws, "set_epoch"):
            self.draws.set_epoch(epoch)

    def indices(self) -> list[int]:
        return [int(i) for i in self.draws]

    def __iter__(self) -> Iterator[list[tuple[int, int, int, int]]]:
        idx = self.indices()
        bs = self.batch_size
        for step, s in enumerate(range(0, len(idx), bs)):
            chunk = idx[s:s + bs]
            if len(chunk) < 2:
                break
            yield [(self.epoch, step, (s + j) * self.world + self.rank, i) for j, i in enumerate(chunk)]

    def __len__(self) -> int:
        n = len(self.draws)  # type: ignore[arg-type]
        return n // self.batch_size + (1 if n % self.batch_size >= 2 else 0)


class _EvalData(TorchDataset):
    def __init__(self, records: list[ImageRecord], size: int) -> None:
        self.records, self.size = records, size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return i, _load(self.records[i], self.size, False)[0]


def _train_sampler(labels: np.ndarray, recipe: Recipe, ctx: StrategyContext, seed: int,
                   world: int, rank: int) -> Sampler[int]:
    """The recipe's sampler (one global weighted draw per epoch, sliced per rank) or a seeded shuffle.

    The shuffle is a DistributedSampler with ``drop_last=True``: the ranks' index sets are disjoint.
    """
    if recipe.sampler is not None:
        return recipe.sampler.build(ctx).make(labels, num_samples=len(labels), seed=seed,
                                              num_replicas=world, rank=rank)
    return DistributedSampler(range(len(labels)), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                              drop_last=True)


# --------------------------------------------------------------------------- preparation (main process)


@dataclass
class _Job:
    """Everything a training process needs; picklable for ``ddp_spawn``."""

    cfg: TrainConfig
    recipe: Recipe
    out: Path
    train: list[ImageRecord]
    val: list[ImageRecord]
    test: list[ImageRecord]
    steps: list[tuple[str, int]]  # synthesis step name → virtual positives per epoch
    counts: tuple[int, int]
    prior: float | None
    progress: bool
    resume: bool
    config_hash: str
    resampling: dict[str, Any]


def _select_training(cfg: TrainConfig, recipe: Recipe, train: list[ImageRecord], progress: bool
                     ) -> tuple[list[ImageRecord], dict[str, Any]]:
    """Apply the selection resamplers once; refuse the generating ones."""
    for spec in recipe.resamplers:
        if spec.name in _GENERATING:
            raise ConfigError(
                f"resampler {spec.name!r} makes new embeddings that have no image, so it works in head mode "
                f"only (--mode head); in fine-tune mode use a selection resampler (random-over, random-under, "
                f"tomek, enn), a synthesis step (augment-oversample, copy-paste) or a sampler"
            )
    if not recipe.resamplers:
        return train, {}
    y = np.array([r.label for r in train], dtype=np.int64)
    X = None
    if any(s.name in _NEED_EMBEDDINGS for s in recipe.resamplers):
        from ..backbones import embed_dataset
        try:
            X = embed_dataset(train, backbone=cfg.backbone, weights=cfg.weights, image_size=cfg.image_size,
                              cache_dir=cfg.resolved_cache_dir(), progress=progress).global_
        except ImbvisionError:
            raise
        except Exception as exc:  # noqa: BLE001 - any embedding failure means the neighbours are unknown
            names = ", ".join(s.name for s in recipe.resamplers if s.name in _NEED_EMBEDDINGS)
            raise ConfigError(
                f"{names} finds nearest neighbours in the embeddings of backbone {cfg.backbone!r}, and embedding "
                f"the training images failed ({type(exc).__name__}: {exc}); use random-under / random-over, "
                "or a backbone that can embed"
            ) from exc
    idx = np.arange(len(train))
    before = (int((y == 0).sum()), int((y == 1).sum()))
    for spec in recipe.resamplers:
        ctx = StrategyContext(class_counts=(int((y[idx] == 0).sum()), int((y[idx] == 1).sum())), seed=cfg.seed)
        sel = spec.build(ctx).select_indices(y[idx], None if X is None else X[idx], seed=cfg.seed)
        idx = idx[np.asarray(sel, dtype=np.int64)]
    after = (int((y[idx] == 0).sum()), int((y[idx] == 1).sum()))
    if min(after) == 0:
        raise ConfigError(f"after resampling the training images hold one class only ({after}); "
                          "choose a milder resampler")
    return [train[i] for i in idx], {"counts_before": list(before), "counts_after": list(after)}


def _config_hash(cfg: TrainConfig, recipe: Recipe, train: list[ImageRecord]) -> str:
    """What a checkpoint must match to be resumed (epochs and patience may change)."""
    d = cfg.to_dict()
    for k in ("epochs", "patience", "n_boot", "workers", "extra", "cache_dir", "threshold", "calibration",
              "prior_correction", "data"):
        d.pop(k, None)
    d["recipe"] = recipe.name
    d["train"] = [str(r.path) for r in train]
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- checkpoints


def _state_tensors(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}/{k}": v.detach().cpu().clone().contiguous() for k, v in sd.items()}


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state → flat tensors + a JSON index of its structure (no pickle)."""
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        entry = {}
        for name, v in st.items():
            if torch.is_tensor(v):
                key = f"optim/{pid}/{name}"
                tensors[key] = v.detach().cpu().clone().contiguous()
                entry[name] = {"tensor": key}
            else:
                entry[name] = {"value": v}
        state[str(pid)] = entry
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"state": state, "param_groups": groups}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], index: dict[str, Any]) -> dict[str, Any]:
    state = {int(pid): {name: (tensors[e["tensor"]] if "tensor" in e else e["value"]) for name, e in entry.items()}
             for pid, entry in index["state"].items()}
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in index["param_groups"]]
    return {"state": state, "param_groups": groups}


def _save_checkpoint(folder: Path, net: nn.Module, best: dict[str, torch.Tensor], optimizer: Any,
                     trainer: dict[str, Any]) -> None:
    """Write ``last.safetensors`` then ``last.json``, each atomically (rank 0 only)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = _state_tensors(net.state_dict(), "model")
    tensors.update(_state_tensors(best, "best"))
    opt_t, opt_index = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_t)
    meta = {"format": CHECKPOINT_FORMAT, "version": str(CHECKPOINT_VERSION),
            "trainer": json.dumps(trainer), "optimizer": json.dumps(opt_index)}
    tmp = folder / f".last.safetensors.{os.getpid()}.tmp"
    save_file(tensors, str(tmp), metadata=meta)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, folder / "last.safetensors")
    write_json(folder / "last.json", {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **trainer})


def read_checkpoint(folder: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read ``last.safetensors``: ``(trainer state, {"model", "best", "optim"} tensors, optimizer index)``.

    The safetensors metadata is authoritative; ``last.json`` is its readable copy.
    """
    from safetensors import safe_open

    path = Path(folder) / "last.safetensors"
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}; train without --resume first")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - any parse error is a damaged checkpoint
        raise ConfigError(f"checkpoint {path} cannot be read ({exc}); delete the folder to start afresh") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not an imbvision fine-tune checkpoint (format {meta.get('format')!r})")
    parts: dict[str, dict[str, torch.Tensor]] = {"model": {}, "best": {}, "optim": {}}
    for k, v in tensors.items():
        kind, _, name = k.partition("/")
        parts[kind][name if kind != "optim" else k] = v
    return json.loads(meta["trainer"]), parts, json.loads(meta["optimizer"])


# --------------------------------------------------------------------------- progress


class _Progress:
    """A rich progress bar per epoch with samples/s and the running loss (rank 0 only)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]} samples/s  loss {task.fields[loss]}"),
                                TimeRemainingColumn())

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start(self, desc: str, total: int) -> Any:
        return None if self.bar is None else self.bar.add_task(desc, total=total, rate="--", loss="--")

    def update(self, task: Any, rate: float, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(task, advance=1, rate=f"{rate:7.1f}", loss=f"{loss:.4f}")

    def note(self, task: Any, text: str) -> None:
        if self.bar is not None:
            self.bar.update(task, description=text)


# --------------------------------------------------------------------------- the loop


def _loss_module(recipe: Recipe, ctx: StrategyContext) -> nn.Module:
    """The recipe's loss ``(logits (N,), target (N,)) -> scalar`` (a seam for tests)."""
    return recipe.loss.build(ctx)


def _all_gather(fabric: Any, data: Any) -> Any:
    """``fabric.all_gather`` without the deprecation warning Fabric 2.6 triggers in torch on every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*all_gather is deprecated.*")
        return fabric.all_gather(data)


def _gather_scores(fabric: Any, net: nn.Module, loader: Any, n: int) -> np.ndarray:
    """Probabilities for ``n`` images sharded across ranks, gathered into split order.

    Runs the unwrapped network under Fabric's autocast: no DDP collectives, so
    ranks with different numbers of batches cannot deadlock.
    """
    net.eval()
    idx_parts, p_parts = [], []
    with torch.no_grad(), fabric.autocast():
        for idx, x in loader:
            p_parts.append(torch.sigmoid(net(x).float()))
            idx_parts.append(idx)
    world = fabric.world_size
    m = math.ceil(n / world)
    local_i = torch.full((m,), -1, dtype=torch.long, device=fabric.device)
    local_p = torch.zeros(m, dtype=torch.float32, device=fabric.device)
    if p_parts:
        pi = torch.cat(idx_parts).to(local_i)
        pp = torch.cat(p_parts).to(local_p)
        local_i[: len(pi)] = pi
        local_p[: len(pp)] = pp
    if world > 1:
        gi, gp = _all_gather(fabric, (local_i, local_p))
        local_i, local_p = gi.reshape(-1), gp.reshape(-1)
    ii, pp = local_i.cpu().numpy(), local_p.double().cpu().numpy()
    out = np.full(n, np.nan)
    keep = ii >= 0
    out[ii[keep]] = pp[keep]
    if np.isnan(out).any():  # pragma: no cover - a sharding bug, never expected
        raise RuntimeError(f"{int(np.isnan(out).sum())} of {n} scores missing after gathering")
    return out


def _eval_loader(fabric: Any, records: list[ImageRecord], cfg: TrainConfig) -> Any:
    world, rank = fabric.world_size, fabric.global_rank
    ds = _EvalData(records, cfg.image_size)
    loader = DataLoader(ds, batch_size=max(cfg.batch_size, 32), sampler=list(range(rank, len(ds), world)),
                        num_workers=cfg.workers, pin_memory=fabric.device.type == "cuda",
                        persistent_workers=cfg.workers > 0)
    return fabric.setup_dataloaders(loader, use_distributed_sampler=False)


def _make_examples(data: _TrainData, mixer: Any, recipe: Recipe, seed: int, n: int = 8
                   ) -> dict[str, list[tuple[np.ndarray, str]]]:
    """A few synthesised and mixed training images for the report (drawn as "epoch 0", never trained on)."""
    out: dict[str, list[tuple[np.ndarray, str]]] = {}
    start = data.n_real
    for step in data.steps:
        items = []
        for k in range(min(n, step.n)):
            img, _, _, _ = data.make(0, k, start + k)  # epoch 0: never a training epoch
            items.append((img.permute(1, 2, 0).numpy().copy(), f"{step.name} #{k + 1}"))
        out[step.name] = items
        start += step.n
    if mixer is not None and recipe.mixing is not None:
        y = data.labels()
        rng = np.random.default_rng([seed, 4242])
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        pick = np.concatenate([rng.choice(pos, size=min(n // 2, len(pos)), replace=False),
                               rng.choice(neg, size=min(n - n // 2, len(neg)), replace=False)])
        items = [data.make(0, 1000 + j, int(i)) for j, i in enumerate(pick)]
        coll = _Collate(mixer, seed, 0, data.size)
        x, ys, _ = coll([(a, b, c, 0, 0, 0.0) for a, b, c, _ in items])
        name = recipe.mixing.name
        out[name] = [(_to_uint8(x[j]).permute(1, 2, 0).numpy().copy(), f"{name} y={float(ys[j]):.2f}")
                     for j in range(len(items))]
    return out


class _Box:
    """Opaque holder: Lightning's spawn launcher walks dataclass arguments and refuses frozen ones."""

    def __init__(self, job: _Job) -> None:
        self.job = job


def _result_path(job: _Job) -> Path:
    return job.out / "checkpoints" / ".result.safetensors"


def _write_result(path: Path, res: dict[str, Any]) -> None:
    """Rank 0's result as safetensors + JSON metadata (the spawn launcher's pipe would block on megabytes)."""
    from safetensors.numpy import save_file

    tensors = {f"arrays/{k}": np.ascontiguousarray(v) for k, v in res["arrays"].items()}
    tensors["p_val"], tensors["p_test"] = np.asarray(res["p_val"]), np.asarray(res["p_test"])
    captions: dict[str, list[str]] = {}
    for name, items in res["examples"].items():
        captions[name] = []
        for j, (img, cap) in enumerate(items):
            tensors[f"examples/{name}/{j}"] = np.ascontiguousarray(img)
            captions[name].append(cap)
    meta = {"info": json.dumps(res["info"]), "weights_id": res["weights_id"], "captions": json.dumps(captions)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def _read_result(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata()
        t = {k: fh.get_tensor(k) for k in fh.keys()}
    captions = json.loads(meta["captions"])
    return {"arrays": {k[len("arrays/"):]: v for k, v in t.items() if k.startswith("arrays/")},
            "p_val": t["p_val"], "p_test": t["p_test"], "info": json.loads(meta["info"]),
            "weights_id": meta["weights_id"],
            "examples": {n: [(t[f"examples/{n}/{j}"], c) for j, c in enumerate(cs)] for n, cs in captions.items()}}


def _train_process(fabric: Any, box: _Box) -> dict[str, Any]:
    """The whole training on one spawned rank; rank 0 leaves its result in a file for the caller."""
    try:
        res = _train(fabric, box.job)
    except ImbvisionError as exc:
        # Carry our error across the process boundary as data; the caller re-raises it.
        return {"error": type(exc).__name__, "message": str(exc)}
    if fabric.is_global_zero:
        _write_result(_result_path(box.job), res)
    return {"result": str(_result_path(box.job))}


def _train(fabric: Any, job: _Job) -> dict[str, Any]:
    """Train on this rank; the caller's global CPU RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        return _train_body(fabric, job)


def _train_body(fabric: Any, job: _Job) -> dict[str, Any]:
    from ..backbones import create_backbone

    cfg, recipe = job.cfg, job.recipe
    world, rank = fabric.world_size, fabric.global_rank
    is_zero = fabric.is_global_zero
    import torch.utils.deterministic as tdet

    det_before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                  tdet.fill_uninitialized_memory)
    if fabric.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Filling every torch.empty with NaN (a debugging aid the flag turns on) costs ~14 % of a CPU step.
        tdet.fill_uninitialized_memory = False
    try:
        torch.manual_seed(_derive_seed(cfg.seed, "init"))  # head initialisation
        bb = create_backbone(cfg.backbone, weights=cfg.weights)
        net = build_network(bb)
        # Head bias at the training prior's log-odds: the first steps then start calibrated.
        p0 = job.prior if job.prior is not None else job.counts[1] / sum(job.counts)
        with torch.no_grad():
            net.head.bias.fill_(math.log(p0 / (1 - p0)))
        counts = apply_unfreeze(net, cfg.unfreeze, cfg.backbone)
        ctx = StrategyContext(class_counts=job.counts, seed=cfg.seed)
        loss_fn = fabric.to_device(_loss_module(recipe, ctx))
        mixer = recipe.mixing.build(ctx) if recipe.mixing is not None else None
        steps = [_SynthStep(name, spec.build(StrategyContext(class_counts=job.counts, seed=cfg.seed)), n)
                 for (name, n), spec in zip(job.steps, recipe.synthesis)]
        data = _TrainData(job.train, steps, size=cfg.image_size, seed=cfg.seed, masks=mixer is not None)
        labels = data.labels()
        sampler = _train_sampler(labels, recipe, ctx, cfg.seed, world, rank)
        batches = _EpochBatches(sampler, cfg.batch_size, rank, world)
        if len(batches) == 0:
            raise ConfigError(f"{len(labels)} training images over {world} rank(s) make no batch of 2; "
                              "use fewer devices or more data")
        train_loader = DataLoader(data, batch_sampler=batches, num_workers=cfg.workers,
                                  collate_fn=_Collate(mixer, cfg.seed, rank, cfg.image_size),
                                  pin_memory=fabric.device.type == "cuda", persistent_workers=cfg.workers > 0,
                                  prefetch_factor=4 if cfg.workers > 0 else None)
        val_loader = _eval_loader(fabric, job.val, cfg)

        optimizer = torch.optim.AdamW(_param_groups(net, cfg.lr, cfg.head_lr, cfg.weight_decay))
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        ckpt_dir = job.out / "checkpoints"
        state: dict[str, Any] = {"epoch": 0, "best_ap": None, "best_epoch": 0, "history": [], "stopped": False,
                                 "stop_reason": None, "config_hash": job.config_hash}
        best: dict[str, torch.Tensor] = {}
        resumed_from = None
        loaded = None
        if job.resume and (ckpt_dir / "last.safetensors").is_file():
            trainer, parts, opt_index = read_checkpoint(ckpt_dir)
            if trainer.get("config_hash") != job.config_hash:
                raise ConfigError(
                    f"checkpoint {ckpt_dir / 'last.safetensors'} was made with another configuration or training "
                    f"split (hash {trainer.get('config_hash')} vs {job.config_hash}); use the same options "
                    "or a new --out"
                )
            net.load_state_dict(parts["model"], strict=True)
            best = {k: v.clone() for k, v in parts["best"].items()}
            state.update(trainer)
            resumed_from = int(trainer["epoch"])
            loaded = (parts["optim"], opt_index)

        model, optimizer = fabric.setup(net, optimizer)
        if loaded is not None:
            optimizer.load_state_dict(_unflatten_optimizer(*loaded))
        train_loader = fabric.setup_dataloaders(train_loader, use_distributed_sampler=False, move_to_device=True)

        steps_per_epoch = len(batches)
        total_steps = steps_per_epoch * cfg.epochs
        warmup = min(_WARMUP_STEPS, steps_per_epoch)
        examples = _make_examples(data, mixer, recipe, cfg.seed) if is_zero else {}
        if is_zero and examples:
            from ..evaluation import save_image_grid
            for name, items in examples.items():
                save_image_grid(job.out / "examples" / f"{name}.png", items, title=f"{name}: training images")

        t_start = time.perf_counter()
        with _Progress(job.progress and is_zero) as bar:
            epoch = int(state["epoch"])
            while not state["stopped"] and epoch < cfg.epochs:
                epoch += 1
                torch.manual_seed(_derive_seed(cfg.seed, "epoch", epoch, rank))
                batches.set_epoch(epoch)
                _set_train_mode(net)
                task = bar.start(f"epoch {epoch}/{cfg.epochs}", steps_per_epoch)
                t0 = t_prev = time.perf_counter()
                t_steady = None
                seen = seen_steady = 0
                wait = data_cpu = data_cpu_steady = 0.0
                cpu_steady = 0.0
                rates: list[float] = []  # per-step samples/s after the first steps
                loss_sum = torch.zeros((), device=fabric.device)
                for step, (x, y, batch_cpu) in enumerate(train_loader):
                    wait += time.perf_counter() - t_prev  # time spent waiting for the batch
                    gstep = (epoch - 1) * steps_per_epoch + step
                    for g, base in zip(optimizer.param_groups, base_lrs):
                        g["lr"] = base * _lr_factor(gstep, total_steps, warmup)
                    logits = model(x)
                    loss = loss_fn(logits.float(), y.float())
                    bad = ~torch.isfinite(loss.detach())
                    if world > 1:
                        bad = fabric.all_reduce(bad.float(), reduce_op="sum") > 0
                    if bool(bad):
                        word = "NaN" if bool(torch.isnan(loss.detach())) else "infinite"
                        good = ckpt_dir / "last.safetensors"
                        kept = (f"the last good checkpoint (epoch {state['epoch']}) is kept at {good}"
                                if state["epoch"] else "no checkpoint was written yet")
                        raise NonFiniteLossError(
                            f"loss became {word} at epoch {epoch} step {step + 1}; lower --lr (now {cfg.lr:g}) "
                            f"and head_lr (now {cfg.head_lr:g}), e.g. by 10x, or use --precision 32-true; {kept}"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    fabric.backward(loss)
                    optimizer.step()
                    loss_sum += loss.detach() * x.shape[0]
                    seen += x.shape[0]
                    now = time.perf_counter()
                    data_cpu += batch_cpu
                    if step + 1 == _STEADY_SKIP:
                        t_steady, cpu_steady = now, time.process_time()
                    elif step + 1 > _STEADY_SKIP:
                        seen_steady += x.shape[0]
                        data_cpu_steady += batch_cpu
                        rates.append(x.shape[0] * world / (now - t_prev))
                    t_prev = now
                    if bar.bar is not None:
                        bar.update(task, seen * world / max(time.perf_counter() - t0, 1e-9),
                                   float(loss_sum) / max(seen, 1))
                train_loss = float(fabric.all_reduce(loss_sum, reduce_op="sum")) if world > 1 else float(loss_sum)
                t_end = time.perf_counter()  # after the sync above: all queued device work is done
                secs = t_end - t0
                n_seen = seen * world
                train_loss /= max(n_seen, 1)
                steady = seen_steady * world / (t_end - t_steady) if t_steady is not None and seen_steady else None
                # CPU seconds per sample of this rank's loop: the main process (all its threads), plus
                # the workers' batch making (already inside the main process when workers == 0).
                cpu = None
                if t_steady is not None and seen_steady:
                    main_cpu = time.process_time() - cpu_steady
                    cpu = (main_cpu + (data_cpu_steady if cfg.workers > 0 else 0.0)) / seen_steady
                p_val = _gather_scores(fabric, net, val_loader, len(job.val))
                ap = _average_precision(job.val, p_val)
                row = {"epoch": epoch, "train_loss": train_loss, "val_ap": ap, "seconds": secs,
                       "samples_per_s": n_seen / secs if secs > 0 else None, "samples": n_seen,
                       "samples_per_s_steady": steady,
                       "samples_per_s_median": float(np.median(rates)) if rates else None,
                       "data_wait_s": wait, "data_cpu_s": data_cpu, "cpu_s_per_sample": cpu,
                       "lr": optimizer.param_groups[0]["lr"]}  # first group's rate at the epoch's end (report plot)
                if world > 1:
                    row["rank_overlap"] = _rank_overlap(fabric, batches)
                state["history"].append(row)
                if state["best_ap"] is None or ap > state["best_ap"]:
                    state["best_ap"], state["best_epoch"] = ap, epoch
                    best = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                if cfg.patience > 0 and epoch - state["best_epoch"] >= cfg.patience and epoch < cfg.epochs:
                    state["stopped"] = True
                    state["stop_reason"] = f"no val AP gain for {cfg.patience} epochs"
                state["epoch"] = epoch
                bar.note(task, f"epoch {epoch}/{cfg.epochs} val AP {ap:.4f}")
                if is_zero:
                    _save_checkpoint(ckpt_dir, net, best, optimizer, state)
                fabric.barrier()

        net.load_state_dict(best, strict=True)
        test_loader = _eval_loader(fabric, job.test, cfg)
        p_val = _gather_scores(fabric, net, val_loader, len(job.val))
        p_test = _gather_scores(fabric, net, test_loader, len(job.test))
        arrays = {f"net.{k}": v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        info = {
            "epochs_run": int(state["epoch"]), "best_epoch": int(state["best_epoch"]),
            "best_val_ap": state["best_ap"], "history": state["history"], "stopped_early": bool(state["stopped"]),
            "stop_reason": state["stop_reason"], "resumed_from_epoch": resumed_from,
            "train_images": len(job.train), "counts_after_resampling": list(job.counts),
            "synthetic_per_epoch": dict(job.steps), "resampling": job.resampling,
            "world_size": world, "device": str(fabric.device), "precision": cfg.precision,
            "unfreeze": str(cfg.unfreeze), **counts,
            "schedule": f"AdamW, linear warm-up {warmup} steps, cosine to 1% over {total_steps} steps",
            "seconds": time.perf_counter() - t_start,
        }
        return {"p_val": p_val, "p_test": p_test, "arrays": arrays, "info": info, "examples": examples,
                "weights_id": bb.weights_id}
    finally:
        torch.use_deterministic_algorithms(det_before[0], warn_only=det_before[1])
        tdet.fill_uninitialized_memory = det_before[2]


def _average_precision(records: list[ImageRecord], p: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    y = np.array([r.label for r in records])
    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, p))


def _rank_overlap(fabric: Any, batches: _EpochBatches) -> int:
    """How many distinct training indices this epoch were drawn on more than one rank.

    0 for the default shuffle (disjoint shards); a weighted draw *with replacement*
    may put the same index at positions of several ranks, as drawing with replacement does.
    """
    mine = torch.tensor(sorted(set(batches.indices())), dtype=torch.long)
    n = int(fabric.all_reduce(torch.tensor(float(len(mine))), reduce_op="max"))
    pad = torch.full((n,), -1, dtype=torch.long)
    pad[: len(mine)] = mine
    allx = _all_gather(fabric, pad.to(fabric.device)).cpu().numpy()
    seen: dict[int, int] = {}
    for row in allx:
        for i in set(row[row >= 0].tolist()):
            seen[i] = seen.get(i, 0) + 1
    return int(sum(1 for c in seen.values() if c > 1))


# --------------------------------------------------------------------------- entry points


def _external_launcher() -> bool:
    """True under torchrun / torchelastic (ranks made outside this process)."""
    from lightning_fabric.plugins.environments import TorchElasticEnvironment
    return TorchElasticEnvironment.detect()


def _make_fabric(cfg: TrainConfig) -> tuple[Any, bool]:
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
    if _external_launcher():
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
    train, resampling = _select_training(cfg, recipe, train, progress)
    y = np.array([r.label for r in train])
    n0, n1 = int((y == 0).sum()), int((y == 1).sum())
    ctx = StrategyContext(class_counts=(n0, n1), seed=cfg.seed)
    steps = []
    for spec in recipe.synthesis:
        steps.append((spec.name, int(spec.build(ctx).n_to_generate(n1, n0))))
    counts = (n0, n1 + sum(n for _, n in steps))
    prior = effective_prior(recipe, counts)
    job = _Job(cfg, recipe, out, train, val, test, steps, counts, prior, progress, resume,
               _config_hash(cfg, recipe, train), resampling)
    fabric, spawn = _make_fabric(cfg)
    if spawn:
        res = fabric.launch(_train_process, _Box(job))
        if "result" in res:
            path = Path(res["result"])
            res = _read_result(path)
            path.unlink(missing_ok=True)
    else:
        fabric.launch()
        res = _train(fabric, job)
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


def _architecture_weights(name: str, weights: str | None) -> str | None:
    """Weights argument that rebuilds the architecture without a download or the original file.

    The saved arrays replace every weight, so random init suffices, except for
    registered backbones whose embedded weights also set layer options (the
    embedded EfficientNet-Lite0 uses BatchNorm eps 1e-3): those are rebuilt as trained.
    """
    from ..backbones.registry import _BACKBONES

    if weights is None and name in _BACKBONES:
        return None
    return "none"


def _rebuild(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> FinetuneNet:
    from ..backbones import create_backbone
    from ..errors import BundleError

    b = meta["backbone"]
    bb = create_backbone(b["name"], weights=_architecture_weights(b["name"], b.get("weights")))
    net = build_network(bb)
    sd = {k[4:]: torch.from_numpy(np.asarray(v)) for k, v in arrays.items() if k.startswith("net.")}
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"fine-tuned weights do not fit backbone {b['name']!r}: {exc}") from None
    return net.eval()


def predict_arrays(model: "Model", images: Sequence[np.ndarray], *, batch_size: int = 32) -> np.ndarray:
    """Raw positive probabilities of a fine-tuned bundle for uint8 ``(H, W, 3)`` images.

    Rebuilds the network from ``model.meta`` and ``model.arrays`` (once, cached
    on the model), resizes each whole image to ``image_size`` square (no crop),
    and runs it on the CPU.
    """
    from ..backbones.embed import preprocess

    net = getattr(model, "_net", None)
    if net is None:
        net = _rebuild(model.meta, model.arrays)
        model._net = net
    size = int(model.meta["backbone"]["image_size"])
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(np.stack([preprocess(np.asarray(a), size)[0] for a in images[s:s + batch_size]]))
            out.append(torch.sigmoid(net(x).float()).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)
