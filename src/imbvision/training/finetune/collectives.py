"""Fine-tune collectives: validation/test scores gathered across ranks, and per-epoch checks.

Scores run the unwrapped network, so ranks with different numbers of
batches cannot deadlock; validation scores are gathered from every rank
before the AP is computed.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ...data.records import ImageRecord
from ..config import TrainConfig
from .data import EpochBatches, EvalData

__all__ = ["all_gather", "gather_scores", "eval_loader", "average_precision", "rank_overlap"]


def all_gather(fabric: Any, data: Any) -> Any:
    """``fabric.all_gather`` without the deprecation warning Fabric 2.6 triggers in torch on every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*all_gather is deprecated.*")
        return fabric.all_gather(data)


def gather_scores(fabric: Any, net: nn.Module, loader: Any, n: int) -> np.ndarray:
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
        gi, gp = all_gather(fabric, (local_i, local_p))
        local_i, local_p = gi.reshape(-1), gp.reshape(-1)
    ii, pp = local_i.cpu().numpy(), local_p.double().cpu().numpy()
    out = np.full(n, np.nan)
    keep = ii >= 0
    out[ii[keep]] = pp[keep]
    if np.isnan(out).any():  # pragma: no cover - a sharding bug, never expected
        raise RuntimeError(f"{int(np.isnan(out).sum())} of {n} scores missing after gathering")
    return out


def eval_loader(fabric: Any, records: list[ImageRecord], cfg: TrainConfig) -> Any:
    world, rank = fabric.world_size, fabric.global_rank
    ds = EvalData(records, cfg.image_size)
    loader = DataLoader(ds, batch_size=max(cfg.batch_size, 32), sampler=list(range(rank, len(ds), world)),
                        num_workers=cfg.workers, pin_memory=fabric.device.type == "cuda",
                        persistent_workers=cfg.workers > 0)
    return fabric.setup_dataloaders(loader, use_distributed_sampler=False)



def average_precision(records: list[ImageRecord], p: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    y = np.array([r.label for r in records])
    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, p))


def rank_overlap(fabric: Any, batches: EpochBatches) -> int:
    """How many distinct training indices this epoch were drawn on more than one rank.

    0 for the default shuffle (disjoint shards); a weighted draw *with replacement*
    may put the same index at positions of several ranks, as drawing with replacement does.
    """
    mine = torch.tensor(sorted(set(batches.indices())), dtype=torch.long)
    n = int(fabric.all_reduce(torch.tensor(float(len(mine))), reduce_op="max"))
    pad = torch.full((n,), -1, dtype=torch.long)
    pad[: len(mine)] = mine
    allx = all_gather(fabric, pad.to(fabric.device)).cpu().numpy()
    seen: dict[int, int] = {}
    for row in allx:
        for i in set(row[row >= 0].tolist()):
            seen[i] = seen.get(i, 0) + 1
    return int(sum(1 for c in seen.values() if c > 1))
