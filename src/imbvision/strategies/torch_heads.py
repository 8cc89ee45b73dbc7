"""The torch heads ``linear`` and ``mlp``: small networks on standardised embeddings, any loss and sampler.

Owns :class:`LinearHead`, :class:`MLPHead`, their shared training loop (AdamW on CPU, minibatches
drawn by the recipe's sampler or a shuffled pass) and their parameter tables and strategy records.

All randomness (init, shuffling, dropout, sampler seeds) comes from one local ``torch.Generator``
seeded by ``seed``: the global RNG is never read or advanced, and the same seed gives identical
outputs. The common head API (standardisation, saving, rebuilding) is :class:`~.head_base.Head`'s.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import BundleError, ConfigError, DataError
from .head_base import SCALER_ARRAYS, Arr, Head, SavedHead, _check_sample_weight, _check_X, _default_loss, _Targets
from .registry import Param, StrategyContext, StrategyRecord, register_strategy

__all__ = ["LinearHead", "MLPHead", "LINEAR_PARAMS", "MLP_PARAMS", "MAX_HIDDEN"]

#: Widest MLP hidden layer: the weights of one layer size memory (16384 x 1280 floats = 84 MB).
MAX_HIDDEN = 16384

#: The ``linear`` record's parameters (also what the constructors check their arguments against).
LINEAR_PARAMS = {
    "epochs": Param(200, kind="int", low=1, doc="passes over the training data"),
    "lr": Param(1e-2, kind="float", low=0.0, low_open=True, doc="AdamW learning rate"),
    "weight_decay": Param(1e-4, kind="float", low=0.0, doc="AdamW decoupled weight decay (weights only)"),
    "batch_size": Param(256, kind="int", low=1, doc="minibatch size; >= N trains full-batch"),
}

#: The ``mlp`` record's parameters. Fewer epochs and a narrower layer than the linear head keep a fit
#: within seconds on 2 cores.
MLP_PARAMS = {
    **LINEAR_PARAMS,
    "epochs": Param(100, kind="int", low=1, doc="passes over the training data"),
    "hidden": Param(128, kind="int", low=1, high=MAX_HIDDEN, doc="hidden width"),
    "dropout": Param(0.1, kind="float", low=0.0, high=1.0, high_open=True,
                     doc="dropout after the hidden layer, in [0, 1)"),
}


class _Dense(nn.Module):
    # Not nn.Linear: its constructor initialises from (and advances) the
    # global RNG; we initialise from the head's own generator instead.
    def __init__(self, d_in: int, d_out: int, generator: torch.Generator | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        self.bias = nn.Parameter(torch.empty(d_out))
        if generator is not None:  # nn.Linear's default init, drawn from `generator`
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(d_in)
            with torch.no_grad():
                self.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class _Net(nn.Module):
    def __init__(self, d_in: int, d_out: int, hidden: int, dropout: float, generator: torch.Generator | None) -> None:
        super().__init__()
        self.dropout = dropout
        if hidden:
            self.fc1: _Dense | None = _Dense(d_in, hidden, generator)
            self.fc = _Dense(hidden, d_out, generator)
        else:
            self.fc1 = None
            self.fc = _Dense(d_in, d_out, generator)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.fc1 is not None:
            x = F.relu(self.fc1(x))
            if self.training and self.dropout > 0:
                # nn.Dropout draws from the global RNG; draw the mask from ours.
                keep = torch.rand(x.shape, generator=generator) >= self.dropout
                x = x * keep / (1.0 - self.dropout)
        return self.fc(x)


@contextlib.contextmanager
def _threads_for(work: int) -> Iterator[None]:
    """Run tiny problems on one intra-op thread, restoring the setting after.

    Each step of a small head is a few-microsecond matmul; spreading it over
    threads costs more in synchronisation than it saves, and on a busy machine
    (oversubscribed cores) it was measured 10-40x slower than one thread.
    """
    before = torch.get_num_threads()
    if work >= _PARALLEL_WORK or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_PARALLEL_WORK = 4_000_000  # batch * D * width above which threads pay off


class _TorchHead(Head):
    _hidden: int = 0

    def __init__(
        self,
        epochs: int = 200,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(num_classes, seed)
        v = self._check(epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size)
        self.epochs, self.lr, self.weight_decay, self.batch_size = v["epochs"], v["lr"], v["weight_decay"], v["batch_size"]
        self.dropout = 0.0
        self.net_: _Net | None = None

    def _make_net(self, d_in: int, d_out: int, generator: torch.Generator | None) -> _Net:
        return _Net(d_in, d_out, self._hidden, self.dropout, generator)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        loss: nn.Module | None = None,
        sampler: Any = None,
        sample_weight: np.ndarray | None = None,
        loss_name: str = "ce",
        seed: int | None = None,
    ) -> "_TorchHead":
        """Train with AdamW on minibatches of standardised ``X``.

        Parameters
        ----------
        X
            ``(N, D)`` embeddings.
        y
            Hard labels ``(N,)``, soft binary targets ``(N,)`` or soft ``(N, C)``.
        loss
            Loss module ``(logits, target) -> scalar``; None builds ``loss_name``
            with its default parameters on the training class counts.
        sampler
            Object with ``make(labels, *, num_samples=None, seed=0)``; when
            given each epoch's minibatches are drawn from a fresh sampler.
            Otherwise every epoch is a shuffled pass over the data.
        sample_weight
            Per-sample weights ``(N,)``; the loss is then the mean of weighted
            per-sample losses (the loss must accept ``reduction="none"``).
        seed
            Seeds the local generator (default: the head's ``seed``).
        """
        X = _check_X(X)
        n = X.shape[0]
        tg = _Targets(y, n, self.num_classes)
        if tg.k == 2:
            self._require_positives(tg.counts[1])
        sw = _check_sample_weight(sample_weight, n)
        seed = self.seed if seed is None else int(seed)
        if loss is None:
            loss = _default_loss(loss_name, tg.counts)
        if sw is not None:
            if not hasattr(loss, "reduction"):
                raise ConfigError(f"sample_weight needs a loss with a `reduction` attribute; {type(loss).__name__} has none")
            loss = copy.copy(loss)  # shallow: shares buffers, own reduction
            loss.reduction = "none"
        self.num_classes = k = tg.k
        self._fit_scaler(X)
        Xt = torch.from_numpy(self._transform(X).astype(np.float32))
        yt = tg.torch_target()
        wt = None if sw is None else torch.from_numpy(sw.astype(np.float32))

        g = torch.Generator().manual_seed(seed)
        net = self._make_net(X.shape[1], 1 if k == 2 else k, g)
        decay = [p for nm, p in net.named_parameters() if nm.endswith("weight")]
        rest = [p for nm, p in net.named_parameters() if not nm.endswith("weight")]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=self.lr,
        )
        full_batch = sampler is None and self.batch_size >= n
        width = self._hidden or (1 if k == 2 else k)
        with _threads_for(min(self.batch_size, n) * X.shape[1] * width):
            self._train(net, opt, loss, Xt, yt, wt, tg, sampler, g, full_batch, k)
        if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
            raise DataError(f"head {self.name!r} diverged (non-finite weights); lower lr={self.lr:g}")
        self.net_ = net
        return self

    def _train(
        self,
        net: _Net,
        opt: torch.optim.Optimizer,
        loss: nn.Module,
        Xt: Tensor,
        yt: Tensor,
        wt: Tensor | None,
        tg: _Targets,
        sampler: Any,
        g: torch.Generator,
        full_batch: bool,
        k: int,
    ) -> None:
        n = Xt.shape[0]
        net.train()
        for _ in range(self.epochs):
            if full_batch:
                batches: Sequence[Tensor | None] = [None]
            else:
                if sampler is None:
                    order = torch.randperm(n, generator=g)
                else:
                    sub = int(torch.randint(0, 2**62, (1,), generator=g))
                    order = torch.as_tensor(list(sampler.make(tg.hard, num_samples=None, seed=sub)), dtype=torch.long)
                batches = torch.split(order, self.batch_size)
            for idx in batches:
                xb = Xt if idx is None else Xt.index_select(0, idx)
                yb = yt if idx is None else yt.index_select(0, idx)
                out = net(xb, g)
                out = out[:, 0] if k == 2 else out
                value = loss(out, yb)
                if wt is not None:
                    wb = wt if idx is None else wt.index_select(0, idx)
                    value = (value.reshape(-1) * wb).mean()
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
        net.eval()

    def decision_function(self, X: Any) -> np.ndarray:
        """Logit ``(N,)`` (binary) or per-class logits ``(N, C)``, as float64."""
        if self.net_ is None:
            raise ConfigError(f"head {self.name!r} is not fitted; call fit(X, y) first")
        Xt = torch.from_numpy(self._transform(X).astype(np.float32))
        with torch.no_grad():
            out = self.net_(Xt).double().numpy()
        return out[:, 0] if out.shape[1] == 1 else out

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.net_ is None or self.mean_ is None or self.scale_ is None:
            raise ConfigError(f"head {self.name!r} is not fitted; nothing to save")
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in self.net_.state_dict().items()}
        arrays.update(self._scaler_arrays())
        return arrays

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._load_scaler(arrays)
        self._require(arrays, ("fc.weight", "fc.bias"))
        d_out = arrays["fc.weight"].shape[0]
        net = self._make_net(self.mean_.shape[0], d_out, None)  # type: ignore[union-attr]
        state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items() if not k.startswith("scaler.")}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BundleError(f"head {self.name!r} arrays do not fit its shape: {exc}") from None
        net.eval()
        self.net_ = net


class LinearHead(_TorchHead):
    """A linear layer on standardised embeddings trained with any loss (AdamW, CPU).

    Parameters
    ----------
    epochs, lr, weight_decay, batch_size
        Training schedule; ``batch_size >= N`` trains full-batch.
    """

    name = "linear"
    PARAMS = LINEAR_PARAMS


class MLPHead(_TorchHead):
    """One hidden ReLU layer with dropout on standardised embeddings.

    Parameters
    ----------
    hidden
        Hidden width, ``>= 1``.
    dropout
        Drop probability in ``[0, 1)`` after the hidden layer.
    """

    name = "mlp"
    PARAMS = MLP_PARAMS

    def __init__(
        self,
        epochs: int = 100,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        hidden: int = 128,
        dropout: float = 0.1,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(epochs, lr, weight_decay, batch_size, num_classes, seed)
        v = self._check(hidden=hidden, dropout=dropout)
        self.hidden, self.dropout = v["hidden"], v["dropout"]
        self._hidden = self.hidden


def _build_linear(ctx: StrategyContext, **params: Any) -> LinearHead:
    return LinearHead(**params, num_classes=ctx.num_classes, seed=ctx.seed)


def _build_mlp(ctx: StrategyContext, **params: Any) -> MLPHead:
    return MLPHead(**params, num_classes=ctx.num_classes, seed=ctx.seed)


register_strategy(
    StrategyRecord(
        name="linear",
        family="head",
        description="Linear layer on standardised embeddings trained with the recipe's loss and sampler (torch, CPU).",
        reference="linear probe (AdamW)",
        params=LINEAR_PARAMS,
        build=_build_linear,
        modes=("head",),
        load=LinearHead.from_arrays,
        saved=SavedHead({**SCALER_ARRAYS, "fc.weight": Arr(("C", "D")), "fc.bias": Arr(("C",))}),
    )
)

register_strategy(
    StrategyRecord(
        name="mlp",
        family="head",
        description="One-hidden-layer MLP with dropout on standardised embeddings, any loss and sampler (torch, CPU).",
        reference="MLP probe (AdamW)",
        params=MLP_PARAMS,
        build=_build_mlp,
        modes=("head",),
        load=MLPHead.from_arrays,
        saved=SavedHead({**SCALER_ARRAYS, "fc1.weight": Arr(("H", "D")), "fc1.bias": Arr(("H",)),
                         "fc.weight": Arr(("C", "H")), "fc.bias": Arr(("C",))}),
    )
)
