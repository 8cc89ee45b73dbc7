"""Fine-tune data: decoding, per-sample randomness, virtual positives, batches, collate and sampling.

Every random draw is a pure function of ``(seed, epoch, ...)``: the shuffle or
weighted draw of an epoch from ``(seed, epoch)``; the flip and synthesis of a
sample from ``(seed, epoch, draw position, index)``; mixing from
``(seed, epoch, step, rank)``. Images are decoded with
:mod:`imbvision.data.decode` and the whole image is resized to ``image_size``
square (no crop, as for prediction), with random horizontal flips for training.

Strategies act on the training split only. Each strategy record says what it
needs (:attr:`~imbvision.strategies.StrategyRecord.needs_background`,
``needs_embeddings``, ``generates_samples``, ``modes``); this module asks the
record, never a list of names.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset as TorchDataset, DistributedSampler, Sampler

from ...data.decode import load_image_array, load_mask
from ...data.records import ImageRecord
from ...errors import ConfigError, ImbvisionError
from ...strategies.registry import Recipe, StrategyContext
from ..config import TrainConfig

__all__ = [
    "derive_seed", "generator", "load_record", "to_uint8", "SynthStep", "TrainData", "Collate", "EpochBatches",
    "EvalData", "train_sampler", "select_training", "check_finetune_recipe", "make_examples",
]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends on every part (strings tag the purpose)."""
    ints = [p if isinstance(p, int) else int.from_bytes(hashlib.blake2b(p.encode(), digest_size=4).digest(), "little")
            for p in parts]
    a, b = np.random.SeedSequence([int(i) for i in ints]).generate_state(2, np.uint32)
    return ((int(a) << 32) | int(b)) & ((1 << 63) - 1)


def generator(*parts: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


# --------------------------------------------------------------------------- data


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) bool → (size, size) bool; a pixel is set when any source pixel under it is (tiny objects survive)."""
    m = mask.float()[None, None]
    return F.adaptive_max_pool2d(m, (size, size))[0, 0] > 0.5


def load_record(rec: ImageRecord, size: int, with_mask: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decode, resize the whole image to ``size`` square (no crop): uint8 (3, S, S) and optional mask."""
    from ...backbones.embed import preprocess

    arr = load_image_array(rec.path)
    img = torch.from_numpy(preprocess(arr, size)[0])
    mask = None
    if with_mask and rec.mask is not None:
        m = load_mask(rec.mask, (arr.shape[1], arr.shape[0]))
        if bool(m.any()):
            mask = resize_mask(m, size)
    return img, mask


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


@dataclass
class SynthStep:
    """One synthesis strategy in the loop: its name, working object, virtual positives per epoch,
    and whether it pastes onto a random training negative (its record's ``needs_background``)."""

    name: str
    op: Any
    n: int
    needs_background: bool = False

    @classmethod
    def from_spec(cls, spec: Any, ctx: StrategyContext, n: int) -> "SynthStep":
        """Build the step of a :class:`~imbvision.strategies.StrategySpec` as its record declares it."""
        return cls(spec.name, spec.build(ctx), n, spec.record.needs_background)


class TrainData(TorchDataset):
    """Training images plus per-epoch virtual positives; keys are ``(epoch, step, gpos, index)``.

    Index ``i < n_real`` is the training record ``records[i]``; larger indices
    are virtual positives of the synthesis steps, made afresh from a random
    positive (and a random negative for copy-paste) with a generator seeded by
    ``(seed, epoch, gpos, index)``.
    """

    def __init__(self, records: list[ImageRecord], steps: list[SynthStep], *, size: int, seed: int,
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
        g = generator(self.seed, "sample", epoch, gpos, i)
        origin = None
        if i < self.n_real:
            img, mask = load_record(self.records[i], self.size, self.masks)
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

    def _synthesise(self, step: SynthStep, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        from ...errors import DataError

        last: Exception | None = None
        for _ in range(10):  # a positive without a findable object is skipped for another
            p = self.records[self.pos[int(torch.randint(0, len(self.pos), (), generator=g))]]
            img, mask = load_record(p, self.size, True)
            bg = None
            if step.needs_background:
                b = self.records[self.neg[int(torch.randint(0, len(self.neg), (), generator=g))]]
                bg = load_record(b, self.size, False)[0].float() / 255
            try:
                out, new_mask = step.op(img.float() / 255, mask, generator=g, background=bg)
            except DataError as exc:
                last = exc
                continue
            return to_uint8(out), (new_mask.bool() if self.masks else None)
        raise DataError(f"{step.name}: 10 random training positives in a row had no usable object ({last}); "
                        "give masks for the positives") from last

    def __getitem__(self, key: tuple[int, int, int, int]
                    ) -> tuple[torch.Tensor, float, torch.Tensor | None, int, int, float]:
        t = time.thread_time()
        epoch, step, gpos, i = key
        img, label, mask, _ = self.make(epoch, gpos, i)
        return img, label, mask, epoch, step, time.thread_time() - t


class Collate:
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
            g = generator(self.seed, "mix", epoch, step, self.rank)
            xm, ym = self.mixer(x.float() / 255, y, generator=g, masks=masks)
            x, y = xm.float(), ym.float()
        return x, y, sum(it[5] for it in items) + time.thread_time() - t


class EpochBatches(Sampler[list]):
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


class EvalData(TorchDataset):
    def __init__(self, records: list[ImageRecord], size: int) -> None:
        self.records, self.size = records, size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return i, load_record(self.records[i], self.size, False)[0]


def train_sampler(labels: np.ndarray, recipe: Recipe, ctx: StrategyContext, seed: int,
                   world: int, rank: int) -> Sampler[int]:
    """The recipe's sampler (one global weighted draw per epoch, sliced per rank) or a seeded shuffle.

    The shuffle is a DistributedSampler with ``drop_last=True``: the ranks' index sets are disjoint.
    """
    if recipe.sampler is not None:
        return recipe.sampler.build(ctx).make(labels, num_samples=len(labels), seed=seed,
                                              num_replicas=world, rank=rank)
    return DistributedSampler(range(len(labels)), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                              drop_last=True)



def select_training(cfg: TrainConfig, recipe: Recipe, train: list[ImageRecord], progress: bool
                    ) -> tuple[list[ImageRecord], dict[str, Any]]:
    """Apply the selection resamplers once, before training; refuse strategies not made for fine-tuning.

    A resampler whose record says ``generates_samples`` makes rows without an image and is refused; one
    that says ``needs_embeddings`` finds its neighbours in the cached embeddings of the same backbone.
    """
    check_finetune_recipe(recipe)
    if not recipe.resamplers:
        return train, {}
    y = np.array([r.label for r in train], dtype=np.int64)
    X = None
    need = [s.name for s in recipe.resamplers if s.record.needs_embeddings]
    if need:
        from ...backbones import embed_dataset
        try:
            X = embed_dataset(train, backbone=cfg.backbone, weights=cfg.weights, image_size=cfg.image_size,
                              cache_dir=cfg.resolved_cache_dir(), progress=progress).global_
        except ImbvisionError:
            raise
        except Exception as exc:  # noqa: BLE001 - any embedding failure means the neighbours are unknown
            raise ConfigError(
                f"{', '.join(need)} finds nearest neighbours in the embeddings of backbone {cfg.backbone!r}, and "
                f"embedding the training images failed ({type(exc).__name__}: {exc}); use random-under / "
                "random-over, or a backbone that can embed"
            ) from exc
    idx = np.arange(len(train))
    before = (int((y == 0).sum()), int((y == 1).sum()))
    for spec in recipe.resamplers:
        ctx = StrategyContext.from_labels(y[idx], seed=cfg.seed)
        sel = spec.build(ctx).select_indices(y[idx], None if X is None else X[idx], seed=cfg.seed)
        idx = idx[np.asarray(sel, dtype=np.int64)]
    after = (int((y[idx] == 0).sum()), int((y[idx] == 1).sum()))
    if min(after) == 0:
        raise ConfigError(f"after resampling the training images hold one class only ({after}); "
                          "choose a milder resampler")
    return [train[i] for i in idx], {"counts_before": list(before), "counts_after": list(after)}


def check_finetune_recipe(recipe: Recipe) -> None:
    """Refuse, by their records, strategies that cannot run in fine-tune mode (before any work)."""
    from ...strategies.registry import finetune_alternatives

    for spec in recipe.specs:
        rec = spec.record
        if "finetune" in rec.modes:
            continue
        why = ("makes new embeddings that have no image" if rec.generates_samples
               else f"is a {rec.family} for cached embeddings")
        raise ConfigError(
            f"{rec.family} {spec.name!r} {why}, so it works in head mode only (--mode head); in fine-tune mode use "
            f"{finetune_alternatives()}"
        )


def make_examples(data: TrainData, mixer: Any, recipe: Recipe, seed: int, n: int = 8
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
        coll = Collate(mixer, seed, 0, data.size)
        x, ys, _ = coll([(a, b, c, 0, 0, 0.0) for a, b, c, _ in items])
        name = recipe.mixing.name
        out[name] = [(to_uint8(x[j]).permute(1, 2, 0).numpy().copy(), f"{name} y={float(ys[j]):.2f}")
                     for j in range(len(items))]
    return out

