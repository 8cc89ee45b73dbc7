"""Inference engines for frozen feature extraction on uint8 batches.

The fastest exact path on a CPU is the backbone exported to ONNX and run by
onnxruntime (about 3-6x eager PyTorch for EfficientNet-Lite0 on 2 cores). The
export is cached beside the embedding cache under a hash of the backbone's
parameters, checked against PyTorch on a batch when it is made, and reused
only while its SHA-256 matches the one recorded then; PyTorch (channels-last)
is the fallback.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._io import atomic_write
from .registry import Backbone

__all__ = ["FeatureEngine", "TorchEngine", "OnnxEngine", "make_engine", "checked_onnx", "engine_once",
           "EXPORT_TOLERANCE"]

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


def onnxruntime():
    """The ``onnxruntime`` module, imported with its telemetry off unless the user chose otherwise.

    onnxruntime 1.2x+ keeps a device id and an offline telemetry database under
    ``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` on its first session; ``ORT_DISABLE_TELEMETRY=1``
    (read once, when the library loads) stops that, so a run with ``--cache-dir``/``IMBVISION_CACHE`` writes
    nothing under the home folder. A value the user set is kept.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    return ort


class OnnxEngine(FeatureEngine):
    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ort = onnxruntime()

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads or (os.cpu_count() or 1)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # No memory arena: a session kept for the process (engine_once) holds its weights, not its largest batch
        so.enable_cpu_mem_arena = False
        # Idle engine threads sleep instead of spin-waiting, leaving the CPU to the decoding worker.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.path = Path(path)  # the verified export (engine_once re-verifies it when the file changes)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(batch)})[0].astype(np.float32, copy=False)


def _export(backbone: Backbone, image_size: int, path: Path) -> None:
    module = _Uint8Wrapper(backbone).eval()
    x = torch.randint(0, 256, (2, 3, image_size, image_size), dtype=torch.uint8)
    with warnings.catch_warnings(), atomic_write(path, "wb") as fh:
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), fh, input_names=["x"], output_names=["features"],
                          dynamic_axes={"x": {0: "n"}, "features": {0: "n"}}, opset_version=17, dynamo=False)


def module_digest(backbone: Backbone) -> str:
    """SHA-256 of the backbone's parameters and buffers (names, shapes, bytes): the export's content key."""
    h = hashlib.sha256()
    for name, t in sorted(backbone.model.state_dict().items()):
        a = t.detach().cpu().contiguous()
        h.update(f"{name}|{a.dtype}|{tuple(a.shape)}|".encode())
        h.update(a.reshape(-1).view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    h.update(repr((backbone.mean, backbone.std)).encode())
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _verified(path: Path, key: str) -> bool:
    """Whether the cached export at ``path`` is whole and unchanged since it was checked against PyTorch."""
    import json

    from .._fingerprint import content_digest

    try:
        rec = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        return rec.get("key") == key and rec.get("sha256") == content_digest(path)
    except (OSError, ValueError, AttributeError):
        return False


#: Engines built in this process, per (frozen) backbone network and settings: an engine is built,
#: exported and checked against PyTorch once per process, not once per batch of images.
_ENGINES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def _file_stamp(path: Path | None) -> tuple | None:
    """Size, modification time and inode of an export and of its check record (``None``: no file)."""
    if path is None:
        return None
    out = []
    for p in (Path(path), _sidecar(Path(path))):
        try:
            st = p.stat()
        except OSError:
            return ("missing",)
        out.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


def engine_once(network: nn.Module, key: tuple, build):
    """The engine ``build()`` made for ``network`` (a frozen backbone's module) with settings ``key``, built
    on first use in this process and reused after: the export is hashed and checked against PyTorch once,
    not once per batch of images.

    Keyed by the module object (a frozen backbone's weights do not change while it is alive; fine-tuning
    trains its own network and never embeds through an engine). An ONNX engine is reused only while its
    file keeps the size, modification time and inode it had when it was verified: a file replaced or
    damaged meanwhile is verified (and rebuilt) again.
    """
    with _ENGINES_LOCK:
        per = _ENGINES.setdefault(network, {})
        hit = per.get(key)
        if hit is not None and _file_stamp(hit[1]) == hit[2]:
            return hit[0]
        engine = build()
        path = getattr(engine, "path", None)
        per[key] = (engine, path, _file_stamp(path))
        return engine


def make_engine(backbone: Backbone, image_size: int, *, kind: str = "auto", cache_dir: Path | None = None,
                threads: int | None = None) -> FeatureEngine:
    """:func:`build_engine`, once per process for each backbone and setting (:func:`engine_once`)."""
    from ..data.source_registry import cache_root
    folder = Path(cache_dir) if cache_dir else cache_root()
    return engine_once(backbone.model, ("global", image_size, kind, str(folder), threads),
                       lambda: build_engine(backbone, image_size, kind=kind, cache_dir=folder, threads=threads))


def build_engine(backbone: Backbone, image_size: int, *, kind: str = "auto", cache_dir: Path | None = None,
                 threads: int | None = None) -> FeatureEngine:
    """Return the fastest exact engine: ONNX when it exports and matches PyTorch, else PyTorch.

    The export is cached under a key of the backbone's *content* (a hash of every
    parameter, not its name) and the image size. It is used again only when its
    SHA-256 matches the one recorded, beside it, when it was checked against
    PyTorch; a changed, truncated or unchecked export is rebuilt and checked again.

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
    key = hashlib.sha256(f"{backbone.name}|{module_digest(backbone)}|{image_size}|{torch.__version__}|v2".encode()).hexdigest()
    from ..data.source_registry import cache_root
    folder = Path(cache_dir) if cache_dir else cache_root()  # --cache-dir, then IMBVISION_CACHE, then the default
    path = folder / "onnx" / f"{backbone.name}-{image_size}-{key[:16]}.onnx"
    batch = np.random.default_rng(0).integers(0, 256, (4, 3, image_size, image_size), dtype=np.uint8)
    return checked_onnx(path, key, lambda p: _export(backbone, image_size, p), lambda p: OnnxEngine(p, threads),
                        torch_engine, batch, kind=kind, tolerance=EXPORT_TOLERANCE)


def checked_onnx(path: Path, key: str, export, open_onnx, torch_engine, batch: np.ndarray, *, kind: str,
                 tolerance: float, what: str = "features"):
    """The ONNX engine at ``path`` (exported by ``export(path)``), else the exact PyTorch one.

    A cached export is used only when its SHA-256 matches the one recorded beside it (with ``key``,
    the backbone's content key) when it was checked against ``torch_engine``; a changed, truncated
    or unchecked export is rebuilt and checked again on ``batch``. A difference over ``tolerance``
    removes it. Any failure falls back to PyTorch with a warning, or raises when ``kind == "onnx"``.
    """
    try:
        if path.exists() and _verified(path, key):
            return open_onnx(path)
        export(path)
        engine = open_onnx(path)
        diff = float(np.abs(engine(batch) - torch_engine(batch)).max())
        if not diff <= tolerance:
            path.unlink(missing_ok=True)
            raise RuntimeError(f"ONNX {what} differ from PyTorch by {diff:.2e} > {tolerance}")
        import json

        from .._fingerprint import content_digest
        with atomic_write(_sidecar(path), "w", encoding="utf-8") as fh:
            json.dump({"key": key, "sha256": content_digest(path), "max_abs_diff": diff}, fh)
        return engine
    except Exception as exc:  # noqa: BLE001 - any export/runtime failure falls back to exact PyTorch
        if kind == "onnx":
            raise
        warnings.warn(f"ONNX engine unavailable ({exc}); using PyTorch", RuntimeWarning, stacklevel=2)
        return torch_engine
