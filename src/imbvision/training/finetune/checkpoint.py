"""The fine-tune checkpoint format (no pickle) and the file a spawned rank hands its result back in.

After every epoch rank 0 writes, atomically, ``checkpoints/last.safetensors``
(tensors ``model/*`` current weights, ``best/*`` best weights, ``optim/*``
AdamW state; metadata: the trainer state and a JSON index of the optimizer's
structure) and then ``checkpoints/last.json`` (a readable copy of the trainer
state: epoch, best AP and epoch, history, config hash). The safetensors file
alone is complete, so a kill between the two writes loses nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..._io import write_json
from ...errors import ConfigError

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "save_checkpoint", "read_checkpoint", "unflatten_optimizer",
           "write_result", "read_result"]

CHECKPOINT_FORMAT = "imbvision-finetune-checkpoint"
CHECKPOINT_VERSION = 1


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


def unflatten_optimizer(tensors: dict[str, torch.Tensor], index: dict[str, Any]) -> dict[str, Any]:
    state = {int(pid): {name: (tensors[e["tensor"]] if "tensor" in e else e["value"]) for name, e in entry.items()}
             for pid, entry in index["state"].items()}
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in index["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(folder: Path, net: nn.Module, best: dict[str, torch.Tensor], optimizer: Any,
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



def write_result(path: Path, res: dict[str, Any]) -> None:
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


def read_result(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata()
        t = {k: fh.get_tensor(k) for k in fh.keys()}
    captions = json.loads(meta["captions"])
    return {"arrays": {k[len("arrays/"):]: v for k, v in t.items() if k.startswith("arrays/")},
            "p_val": t["p_val"], "p_test": t["p_test"], "info": json.loads(meta["info"]),
            "weights_id": meta["weights_id"],
            "examples": {n: [(t[f"examples/{n}/{j}"], c) for j, c in enumerate(cs)] for n, cs in captions.items()}}

