"""The fine-tune loop on one rank, after Lightning Fabric's ``build_your_own_trainer`` example.

:func:`fit` = :func:`setup` → :func:`train_loop` (each epoch :func:`train_epoch`
of :func:`training_step` calls, then :func:`val_loop`, then :func:`save`) →
:func:`finish`. The loop is device-agnostic: ``Fabric.setup``,
``setup_dataloaders``, ``backward``; precision and devices are Fabric options.

Training: AdamW with ``lr`` for the backbone and ``head_lr`` for the head (no
weight decay on biases and norm weights), linear warm-up over at most 100
steps then cosine decay to 1 % at the last epoch; the head's bias starts at
the log-odds of the effective training prior. Validation AP (every epoch)
picks the best epoch; training stops after ``patience`` epochs without a gain
(``patience <= 0``: never). The global torch RNG (dropout, drop-path) is
re-seeded from ``(seed, epoch, rank)`` at the start of each epoch and CPU runs
use ``torch.use_deterministic_algorithms``, so a run resumed from the
checkpoint of epoch ``e`` continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ...data.records import ImageRecord
from ...errors import ConfigError, ImbvisionError
from ...strategies.registry import Recipe, StrategyContext
from ..config import TrainConfig
from ..network import apply_unfreeze, build_network, lr_factor, param_groups, set_train_mode
from . import checkpoint as ckpt
from .collectives import average_precision, eval_loader, gather_scores, rank_overlap
from .data import Collate, EpochBatches, SynthStep, TrainData, derive_seed, make_examples, train_sampler

__all__ = ["Job", "NonFiniteLossError", "build_loss", "fit", "setup", "train_loop", "train_epoch", "training_step",
           "val_loop", "save", "finish"]

_WARMUP_STEPS = 100  # linear learning-rate warm-up, capped at one epoch
_STEADY_SKIP = 2  # steps left out of the steady-state throughput (worker start-up)


class NonFiniteLossError(ImbvisionError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Job:
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


def build_loss(recipe: Recipe, ctx: StrategyContext) -> nn.Module:
    """The recipe's loss ``(logits (N,), target (N,)) -> scalar`` (a seam for tests)."""
    return recipe.loss.build(ctx)


@dataclass
class Run:
    """The live state of one rank's training (what Fabric's example keeps on its trainer)."""

    fabric: Any
    job: Job
    net: nn.Module
    model: Any
    optimizer: Any
    base_lrs: list[float]
    loss_fn: nn.Module
    data: TrainData
    batches: EpochBatches
    train_loader: Any
    val_loader: Any
    state: dict[str, Any]
    best: dict[str, torch.Tensor]
    params: dict[str, int]
    weights_id: str
    resumed_from: int | None = None
    examples: dict[str, list] = field(default_factory=dict)
    task: Any = None  # the progress bar's task of the current epoch

    @property
    def steps_per_epoch(self) -> int:
        return len(self.batches)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.job.cfg.epochs

    @property
    def warmup(self) -> int:
        return min(_WARMUP_STEPS, self.steps_per_epoch)


@contextlib.contextmanager
def _deterministic_on_cpu(fabric: Any) -> Iterator[None]:
    """Deterministic algorithms on CPU for the duration; the caller's settings are restored."""
    import torch.utils.deterministic as tdet

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              tdet.fill_uninitialized_memory)
    if fabric.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Filling every torch.empty with NaN (a debugging aid the flag turns on) costs ~14 % of a CPU step.
        tdet.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        tdet.fill_uninitialized_memory = before[2]


def fit(fabric: Any, job: Job) -> dict[str, Any]:
    """Train on this rank and return the result; the caller's global CPU RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]), _deterministic_on_cpu(fabric):
        run = setup(fabric, job)
        t_start = time.perf_counter()
        train_loop(run)
        return finish(run, time.perf_counter() - t_start)


def _network(job: Job) -> tuple[nn.Module, str, dict[str, int]]:
    """The network with its head bias at the training prior's log-odds, unfrozen as configured."""
    from ...backbones import create_backbone

    cfg = job.cfg
    torch.manual_seed(derive_seed(cfg.seed, "init"))  # head initialisation
    bb = create_backbone(cfg.backbone, weights=cfg.weights)
    net = build_network(bb)
    # Head bias at the training prior's log-odds: the first steps then start calibrated.
    p0 = job.prior if job.prior is not None else job.counts[1] / sum(job.counts)
    with torch.no_grad():
        net.head.bias.fill_(math.log(p0 / (1 - p0)))
    return net, bb.weights_id, apply_unfreeze(net, cfg.unfreeze, cfg.backbone)


def _resume(job: Job, net: nn.Module, state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], int | None, Any]:
    """Load ``last.safetensors`` into ``net`` and ``state`` when resuming; returns (best, epoch, optimizer state)."""
    folder = job.out / "checkpoints"
    if not (job.resume and (folder / "last.safetensors").is_file()):
        return {}, None, None
    trainer, parts, opt_index = ckpt.read_checkpoint(folder)
    if trainer.get("config_hash") != job.config_hash:
        raise ConfigError(
            f"checkpoint {folder / 'last.safetensors'} was made with another configuration or training "
            f"split (hash {trainer.get('config_hash')} vs {job.config_hash}); use the same options or a new --out"
        )
    net.load_state_dict(parts["model"], strict=True)
    state.update(trainer)
    return {k: v.clone() for k, v in parts["best"].items()}, int(trainer["epoch"]), (parts["optim"], opt_index)


def setup(fabric: Any, job: Job) -> Run:
    """Network, loss, strategies, data loaders and optimizer of one rank, restored from a checkpoint if asked."""
    cfg, recipe = job.cfg, job.recipe
    world, rank = fabric.world_size, fabric.global_rank
    net, weights_id, params = _network(job)
    ctx = StrategyContext(class_counts=job.counts, seed=cfg.seed)
    loss_fn = fabric.to_device(build_loss(recipe, ctx))
    mixer = recipe.mixing.build(ctx) if recipe.mixing is not None else None
    steps = [SynthStep.from_spec(spec, ctx, n) for (_, n), spec in zip(job.steps, recipe.synthesis)]
    data = TrainData(job.train, steps, size=cfg.image_size, seed=cfg.seed, masks=mixer is not None)
    labels = data.labels()
    batches = EpochBatches(train_sampler(labels, recipe, ctx, cfg.seed, world, rank), cfg.batch_size, rank, world)
    if len(batches) == 0:
        raise ConfigError(f"{len(labels)} training images over {world} rank(s) make no batch of 2; "
                          "use fewer devices or more data")
    train_loader = DataLoader(data, batch_sampler=batches, num_workers=cfg.workers,
                              collate_fn=Collate(mixer, cfg.seed, rank, cfg.image_size),
                              pin_memory=fabric.device.type == "cuda", persistent_workers=cfg.workers > 0,
                              prefetch_factor=4 if cfg.workers > 0 else None)
    val_loader = eval_loader(fabric, job.val, cfg)
    optimizer = torch.optim.AdamW(param_groups(net, cfg.lr, cfg.head_lr, cfg.weight_decay))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    state: dict[str, Any] = {"epoch": 0, "best_ap": None, "best_epoch": 0, "history": [], "stopped": False,
                             "stop_reason": None, "config_hash": job.config_hash}
    best, resumed_from, loaded = _resume(job, net, state)
    model, optimizer = fabric.setup(net, optimizer)
    if loaded is not None:
        optimizer.load_state_dict(ckpt.unflatten_optimizer(*loaded))
    train_loader = fabric.setup_dataloaders(train_loader, use_distributed_sampler=False, move_to_device=True)
    run = Run(fabric, job, net, model, optimizer, base_lrs, loss_fn, data, batches, train_loader, val_loader,
              state, best, params, weights_id, resumed_from)
    if fabric.is_global_zero:
        run.examples = make_examples(data, mixer, recipe, cfg.seed)
        if run.examples:
            from ...evaluation import save_image_grid
            for name, items in run.examples.items():
                save_image_grid(job.out / "examples" / f"{name}.png", items, title=f"{name}: training images")
    return run


def train_loop(run: Run) -> None:
    """Epochs until ``cfg.epochs`` or early stopping; the best weights are kept in ``run.best``."""
    cfg, state, fabric = run.job.cfg, run.state, run.fabric
    with _Progress(run.job.progress and fabric.is_global_zero) as bar:
        epoch = int(state["epoch"])
        while not state["stopped"] and epoch < cfg.epochs:
            epoch += 1
            train_loss, telemetry = train_epoch(run, epoch, bar)
            ap = val_loop(run)
            row = {"epoch": epoch, "train_loss": train_loss, "val_ap": ap, **telemetry,
                   "lr": run.optimizer.param_groups[0]["lr"]}  # first group's rate at the epoch's end (report plot)
            if fabric.world_size > 1:
                row["rank_overlap"] = rank_overlap(fabric, run.batches)
            state["history"].append(row)
            if state["best_ap"] is None or ap > state["best_ap"]:
                state["best_ap"], state["best_epoch"] = ap, epoch
                run.best = {k: v.detach().cpu().clone() for k, v in run.net.state_dict().items()}
            if cfg.patience > 0 and epoch - state["best_epoch"] >= cfg.patience and epoch < cfg.epochs:
                state["stopped"] = True
                state["stop_reason"] = f"no val AP gain for {cfg.patience} epochs"
            state["epoch"] = epoch
            bar.note(run.task, f"epoch {epoch}/{cfg.epochs} val AP {ap:.4f}")
            if fabric.is_global_zero:
                save(run)
            fabric.barrier()


def train_epoch(run: Run, epoch: int, bar: "_Progress") -> tuple[float, dict[str, Any]]:
    """One pass over the training batches; returns the mean training loss and the epoch's telemetry."""
    cfg, fabric, world = run.job.cfg, run.fabric, run.fabric.world_size
    torch.manual_seed(derive_seed(cfg.seed, "epoch", epoch, fabric.global_rank))
    run.batches.set_epoch(epoch)
    set_train_mode(run.net)
    run.task = bar.start(f"epoch {epoch}/{cfg.epochs}", run.steps_per_epoch)
    meter = _Meter(world)
    loss_sum = torch.zeros((), device=fabric.device)
    for step, (x, y, batch_cpu) in enumerate(run.train_loader):
        meter.waited()
        loss = training_step(run, x, y, epoch, step)
        loss_sum += loss.detach() * x.shape[0]
        meter.step(step, x.shape[0], batch_cpu)
        if bar.bar is not None:
            bar.update(run.task, meter.rate(), float(loss_sum) / max(meter.seen, 1))
    train_loss = float(fabric.all_reduce(loss_sum, reduce_op="sum")) if world > 1 else float(loss_sum)
    return train_loss / max(meter.seen * world, 1), meter.row(cfg.workers > 0)


def training_step(run: Run, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
    """Learning rate of the global step, forward, a finite-loss check on every rank, backward, update."""
    cfg, fabric, optimizer = run.job.cfg, run.fabric, run.optimizer
    gstep = (epoch - 1) * run.steps_per_epoch + step
    for g, base in zip(optimizer.param_groups, run.base_lrs):
        g["lr"] = base * lr_factor(gstep, run.total_steps, run.warmup)
    loss = run.loss_fn(run.model(x).float(), y.float())
    bad = ~torch.isfinite(loss.detach())
    if fabric.world_size > 1:
        bad = fabric.all_reduce(bad.float(), reduce_op="sum") > 0
    if bool(bad):
        word = "NaN" if bool(torch.isnan(loss.detach())) else "infinite"
        good = run.job.out / "checkpoints" / "last.safetensors"
        kept = (f"the last good checkpoint (epoch {run.state['epoch']}) is kept at {good}"
                if run.state["epoch"] else "no checkpoint was written yet")
        raise NonFiniteLossError(
            f"loss became {word} at epoch {epoch} step {step + 1}; lower --lr (now {cfg.lr:g}) "
            f"and head_lr (now {cfg.head_lr:g}), e.g. by 10x, or use --precision 32-true; {kept}"
        )
    optimizer.zero_grad(set_to_none=True)
    fabric.backward(loss)
    optimizer.step()
    return loss


def val_loop(run: Run) -> float:
    """Validation AP of the current weights, scores gathered from every rank."""
    p_val = gather_scores(run.fabric, run.net, run.val_loader, len(run.job.val))
    return average_precision(run.job.val, p_val)


def save(run: Run) -> None:
    """Checkpoint the current and best weights, the optimizer and the trainer state (rank 0)."""
    ckpt.save_checkpoint(run.job.out / "checkpoints", run.net, run.best, run.optimizer, run.state)


def finish(run: Run, seconds: float) -> dict[str, Any]:
    """Restore the best weights, score validation and test, and describe the run."""
    fabric, job, state, cfg = run.fabric, run.job, run.state, run.job.cfg
    run.net.load_state_dict(run.best, strict=True)
    test_loader = eval_loader(fabric, job.test, cfg)
    p_val = gather_scores(fabric, run.net, run.val_loader, len(job.val))
    p_test = gather_scores(fabric, run.net, test_loader, len(job.test))
    arrays = {f"net.{k}": v.detach().cpu().numpy().copy() for k, v in run.net.state_dict().items()}
    info = {
        "epochs_run": int(state["epoch"]), "best_epoch": int(state["best_epoch"]),
        "best_val_ap": state["best_ap"], "history": state["history"], "stopped_early": bool(state["stopped"]),
        "stop_reason": state["stop_reason"], "resumed_from_epoch": run.resumed_from,
        "train_images": len(job.train), "counts_after_resampling": list(job.counts),
        "synthetic_per_epoch": dict(job.steps), "resampling": job.resampling,
        "world_size": fabric.world_size, "device": str(fabric.device), "precision": cfg.precision,
        "unfreeze": str(cfg.unfreeze), **run.params,
        "schedule": f"AdamW, linear warm-up {run.warmup} steps, cosine to 1% over {run.total_steps} steps",
        "seconds": seconds,
    }
    return {"p_val": p_val, "p_test": p_test, "arrays": arrays, "info": info, "examples": run.examples,
            "weights_id": run.weights_id}


class _Meter:
    """Throughput and data-loading telemetry of one epoch on one rank."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.t0 = self.t_prev = time.perf_counter()
        self.t_steady: float | None = None
        self.cpu_steady = 0.0
        self.seen = self.seen_steady = 0
        self.wait = self.data_cpu = self.data_cpu_steady = 0.0
        self.rates: list[float] = []  # per-step samples/s after the first steps

    def waited(self) -> None:
        self.wait += time.perf_counter() - self.t_prev  # time spent waiting for the batch

    def step(self, step: int, n: int, batch_cpu: float) -> None:
        self.seen += n
        now = time.perf_counter()
        self.data_cpu += batch_cpu
        if step + 1 == _STEADY_SKIP:
            self.t_steady, self.cpu_steady = now, time.process_time()
        elif step + 1 > _STEADY_SKIP:
            self.seen_steady += n
            self.data_cpu_steady += batch_cpu
            self.rates.append(n * self.world / (now - self.t_prev))
        self.t_prev = now

    def rate(self) -> float:
        return self.seen * self.world / max(time.perf_counter() - self.t0, 1e-9)

    def row(self, workers: bool) -> dict[str, Any]:
        """Call after the epoch's loss was reduced across ranks (all queued device work is then done)."""
        t_end = time.perf_counter()
        secs = t_end - self.t0
        n_seen = self.seen * self.world
        steady = (self.seen_steady * self.world / (t_end - self.t_steady)
                  if self.t_steady is not None and self.seen_steady else None)
        # CPU seconds per sample of this rank's loop: the main process (all its threads), plus
        # the workers' batch making (already inside the main process when workers == 0).
        cpu = None
        if self.t_steady is not None and self.seen_steady:
            main_cpu = time.process_time() - self.cpu_steady
            cpu = (main_cpu + (self.data_cpu_steady if workers else 0.0)) / self.seen_steady
        return {"seconds": secs, "samples_per_s": n_seen / secs if secs > 0 else None, "samples": n_seen,
                "samples_per_s_steady": steady,
                "samples_per_s_median": float(np.median(self.rates)) if self.rates else None,
                "data_wait_s": self.wait, "data_cpu_s": self.data_cpu, "cpu_s_per_sample": cpu}


class _Progress:
    """A rich progress bar per epoch with samples/s and the running loss (rank 0 only)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from ..._progress import PlainProgress, stderr_is_terminal
            if not stderr_is_terminal():  # a log: plain lines every few seconds instead of a bar drawn only at the end
                self.bar = PlainProgress(rate="steps/s")
                return
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
