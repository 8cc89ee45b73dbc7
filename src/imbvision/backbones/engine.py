"""Inference engines for frozen feature extraction on uint8 batches.

The fastest exact path on a CPU is the backbone exported to ONNX and run by
onnxruntime (about 3-6x eager PyTorch for EfficientNet-Lite0 on 2 cores). The
export is cached beside the embedding cache and checked against PyTorch on a
batch when it is made; PyTorch (channels-last) is the fallback.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._io import atomic_write
from .registry import Backbone

__all__ = ["FeatureEngine", "TorchEngine", "OnnxEngine", "make_engine", "checked_onnx", "EXPORT_TOLERANCE"]

#: Largest absolute difference allowed between ONNX and PyTorch features at export.
EXPORT_TOLERANCE = 1e-3


class _Uint8Wrapper(nn.Module):
    """uint8 (N,3,H,W) → normalised float → pooled features, in one graph."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.model = backbone.model
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(backbone.std).view(1, 3, 1, 1) * 255.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x.float() - self.mean) * self.inv_std)


class FeatureEngine:
    """Maps a uint8 ``(N, 3, S, S)`` array to float32 ``(N, D)`` features."""

    name = "base"

    def __call__(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class TorchEngine(FeatureEngine):
    name = "torch"

    def __init__(self, backbone: Backbone, threads: int | None = None) -> None:
        self.module = _Uint8Wrapper(backbone).eval().to(memory_format=torch.channels_last)
        if threads:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).contiguous(memory_format=torch.channels_last)
        return self.module(x).float().numpy()


class OnnxEngine(FeatureEngine):
    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads or (os.cpu_count() or 1)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(batch)})[0].astype(np.float32, copy=False)


def _export(backbone: Backbone, image_size: int, path: Path) -> None:
    module = _Uint8Wrapper(backbone).eval()
    x = torch.randint(0, 256, (2, 3, image_size, image_size), dtype=torch.uint8)
    with warnings.catch_warnings(), atomic_write(path, "wb") as fh:
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), fh, input_names=["x"], output_names=["features"],
                          dynamic_axes={"x": {0: "n"}, "features": {0: "n"}}, opset_version=17, dynamo=False)


def make_engine(backbone: Backbone, image_size: int, *, kind: str = "auto", cache_dir: Path | None = None,
                threads: int | None = None) -> FeatureEngine:
    """Return the fastest exact engine: ONNX when it exports and matches PyTorch, else PyTorch.

    Parameters
    ----------
    kind
        ``"auto"``, ``"onnx"`` (fail if it cannot be used) or ``"torch"``.
    """
    if kind not in ("auto", "onnx", "torch"):
        from ..errors import ConfigError
        raise ConfigError(f"engine {kind!r} invalid; valid: auto, onnx, torch")
    torch_engine = TorchEngine(backbone, threads)
    if kind == "torch":
        return torch_engine
    key = hashlib.sha256(f"{backbone.name}|{backbone.weights_id}|{image_size}|{torch.__version__}|v1".encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "imbvision"
    path = folder / "onnx" / f"{backbone.name}-{image_size}-{key}.onnx"
    batch = np.random.default_rng(0).integers(0, 256, (4, 3, image_size, image_size), dtype=np.uint8)
    return checked_onnx(path, lambda p: _export(backbone, image_size, p), lambda p: OnnxEngine(p, threads),
                        torch_engine, batch, kind=kind, tolerance=EXPORT_TOLERANCE)


def checked_onnx(path: Path, export, open_onnx, torch_engine, batch: np.ndarray, *, kind: str, tolerance: float,
                 what: str = "features"):
    """The ONNX engine at ``path`` (exported once by ``export(path)``), else the exact PyTorch one.

    A fresh export is checked once against ``torch_engine`` on ``batch``; a difference over
    ``tolerance`` removes it. Any failure falls back to PyTorch with a warning, or raises when
    ``kind == "onnx"``.
    """
    try:
        fresh = not path.exists()
        if fresh:
            export(path)
        engine = open_onnx(path)
        if fresh:
            diff = float(np.abs(engine(batch) - torch_engine(batch)).max())
            if not diff <= tolerance:
                path.unlink(missing_ok=True)
                raise RuntimeError(f"ONNX {what} differ from PyTorch by {diff:.2e} > {tolerance}")
        return engine
    except Exception as exc:  # noqa: BLE001 - any export/runtime failure falls back to exact PyTorch
        if kind == "onnx":
            raise
        warnings.warn(f"ONNX engine unavailable ({exc}); using PyTorch", RuntimeWarning, stacklevel=2)
        return torch_engine
