"""The operation registry (paper 4.3, docs/spec.md §3) and the CNN n(u; theta) that `grad` and `net` share.

Everything carries a leading trial dimension T: T independent trials (seeds) run as one
computation, and nothing here ever mixes trials. Every op maps u (T,B,1,L) to (T,B,1,L) and
may read the measurement y (T,B,1,Lo). An op is one entry of OPS: a function
(layer, u, y, r) -> (T,B,1,L), where `layer` owns the parameters (tau, the noise streams) and r
holds the output of the CNN the op uses. A trial's numbers do not depend on the other trials of
its batch: each trial's parameters are drawn from its own generator, its noise from its own
stream, and every kernel computes a trial's arithmetic the same way for any T.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from dataclasses import dataclass
from typing import Callable

from das import operators
from das.vocab import OP_SETS

NOISE_SIGMA = 0.1   # the noise op's sigma (paper Table 5 "noise level 0.10"); das.spec's default
WIDTH = 16          # channels C of the 2-layer CNN; das.spec's default
KERNEL_SIZE = 3     # taps of both of its convolutions


class CNNBank(nn.Module):
    """K independent CNNs conv(1->C, k=3) -> BatchNorm1d(C) -> ReLU -> conv(C->1, k=3) per trial.

    Parameters are (T, K, ...): trial t's K CNNs read trial t's input only, and its BatchNorm
    statistics are over its own batch. Initialised like nn.Conv1d / nn.BatchNorm1d, trial t from
    gens[t]; `draw[t]` False leaves trial t's slots at zero without consuming its generator
    (a discrete layer whose op has no CNN).
    """

    PARAMS = ("w1", "b1", "gamma", "beta", "w2", "b2", "running_mean", "running_var")

    def __init__(self, count: int, width: int, gens: list[torch.Generator], draw: list[bool] | None = None,
                 kernel_size: int = 3, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        K, C, k = count, width, kernel_size
        self.momentum, self.eps = momentum, eps
        b1_bound, b2_bound = 1 / math.sqrt(k), 1 / math.sqrt(C * k)
        draw = draw or [True] * len(gens)
        w1, b1, w2, b2 = [], [], [], []
        for g, d in zip(gens, draw):
            if d:
                w1.append(torch.empty(K, C, k).uniform_(-b1_bound, b1_bound, generator=g))
                b1.append(torch.empty(K, C).uniform_(-b1_bound, b1_bound, generator=g))
                w2.append(torch.empty(K, C, k).uniform_(-b2_bound, b2_bound, generator=g))
                b2.append(torch.empty(K).uniform_(-b2_bound, b2_bound, generator=g))
            else:
                w1.append(torch.zeros(K, C, k)), b1.append(torch.zeros(K, C))
                w2.append(torch.zeros(K, C, k)), b2.append(torch.zeros(K))
        T = len(gens)
        self.w1, self.b1 = nn.Parameter(torch.stack(w1)), nn.Parameter(torch.stack(b1))
        self.gamma, self.beta = nn.Parameter(torch.ones(T, K, C)), nn.Parameter(torch.zeros(T, K, C))
        self.w2, self.b2 = nn.Parameter(torch.stack(w2)), nn.Parameter(torch.stack(b2))
        self.register_buffer("running_mean", torch.zeros(T, K, C))
        self.register_buffer("running_var", torch.ones(T, K, C))

    def forward(self, u: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """u (T',B,1,L) -> (T',K,B,1,L) for the trials idx (all when None; then T' = T)."""
        p = [getattr(self, n) for n in self.PARAMS]
        if idx is None:
            return operators.cnn_bank_batched(u, *p, self.training, self.momentum, self.eps)
        sub = [t.index_select(0, idx) for t in p]
        out = operators.cnn_bank_batched(u, *sub, self.training, self.momentum, self.eps)
        if self.training:  # the running statistics of the trials that ran
            with torch.no_grad():
                self.running_mean.index_copy_(0, idx, sub[6])
                self.running_var.index_copy_(0, idx, sub[7])
        return out

    @torch.no_grad()
    def copy_slot(self, t: int, k: int, other: "CNNBank", other_t: int, other_k: int) -> None:
        """Copy CNN other_k of trial other_t of another bank into slot k of trial t."""
        for name in self.PARAMS:
            getattr(self, name)[t, k].copy_(getattr(other, name)[other_t, other_k])


class NoiseStreams:
    """One generator per trial for the harmful noise op: a trial's draws never depend on its batch.

    `fork(seed)` sets every stream to the same fresh seed (the evaluation set: every trial and
    every method sees the same draws), `state`/`set_state` let the passes of one second-order
    alpha step see the same draws.
    """

    def __init__(self, seeds: list[int]):
        # CPU generators on every device: the same draws on CPU and GPU
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def randn(self, shape, idx: torch.Tensor | None = None, device="cpu") -> torch.Tensor:
        """(T', *shape) standard normal draws, trial t from its own stream (the trials idx)."""
        gens = self.gens if idx is None else [self.gens[i] for i in idx.tolist()]
        return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)

    def state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.gens]

    def set_state(self, states) -> None:
        for g, s in zip(self.gens, states):
            g.set_state(s)

    def fork(self, seed: int) -> list[torch.Tensor]:
        """Reseed every stream with `seed`; returns the old states for set_state."""
        old = self.state()
        for g in self.gens:
            g.manual_seed(int(seed))
        return old


def _rows(x: torch.Tensor, idx):
    return x if idx is None else x.index_select(0, idx)


def _grad(layer, u, y, r, idx=None):
    # Eq. 6: u - tau A^T(A u - y) - tau n(u; theta), one fused kernel with a step size per trial
    return operators.grad_step_batched(u, y, _rows(layer.tau, idx), r["grad"], layer.kernel, layer.stride)


def _net(layer, u, y, r, idx=None):
    # Eq. 7: n(u; theta)
    return r["net"]


def _roll(layer, u, y, r, idx=None):
    # harmful by design: each trial's (B,1,L) block shifted by one (the `roll` setting says along what)
    if layer.roll == "all":      # every dimension, batch included (docs/spec.md §3)
        return torch.roll(u, shifts=(1, 1, 1), dims=(1, 2, 3))
    if layer.roll == "flat":     # torch.roll(u, 1) without dims: the flattened (B,1,L) block
        return torch.roll(u.reshape(u.shape[0], -1), 1, dims=1).reshape(u.shape)
    return torch.roll(u, 1, dims=3)  # "signal": along the signal of each sample only


def _noise(layer, u, y, r, idx=None):
    # harmful by design: a plain gradient step plus fresh Gaussian noise at every call
    eps = layer.noise.randn(u.shape[1:], idx, u.device).to(u.dtype)
    one = torch.ones(u.shape[0], dtype=u.dtype, device=u.device)
    return operators.grad_step_batched(u, y, one, eps * (-layer.noise_sigma), layer.kernel, layer.stride)


def _zero(layer, u, y, r, idx=None):
    return torch.zeros_like(u)


@dataclass(frozen=True)
class Op:
    """One operation: its function (layer, u, y, r, idx) -> (T',B,1,L), whether it carries a CNN
    n(u; theta) (its weights live in the layer's CNN bank) and a step size tau, whether it is
    harmful by design, and its colour in figures."""

    fn: Callable
    colour: str
    cnn: bool = False
    tau: bool = False
    harmful: bool = False


OPS: dict[str, Op] = {
    "grad": Op(_grad, "tab:blue", cnn=True, tau=True),
    "net": Op(_net, "tab:green", cnn=True),
    "roll": Op(_roll, "tab:red", harmful=True),
    "noise": Op(_noise, "tab:orange", harmful=True),
    "zero": Op(_zero, "tab:gray"),
}
CNN_OPS = tuple(n for n, op in OPS.items() if op.cnn)  # the ops that carry a CNN n(u; theta)


def op_names(ops: str, space: str) -> list[str]:
    """The candidate ops of one layer/edge: the op set, plus `zero` in the cell space."""
    if ops not in OP_SETS:
        raise ValueError(f"unknown op set {ops!r}; choose one of {sorted(OP_SETS)}")
    return list(OP_SETS[ops].ops) + (["zero"] if space == "cell" else [])


class _Layer(nn.Module):
    """What a mixed and a chosen op share: tau, the bound operator A, the noise streams, the
    settings of the ops (cfg: das.model.NetConfig)."""

    def __init__(self, T: int, has_tau: bool, noise: NoiseStreams, cfg):
        super().__init__()
        self.tau = nn.Parameter(torch.ones(T)) if has_tau else None
        self.noise, self.noise_sigma, self.roll = noise, cfg.noise_sigma, cfg.roll
        self.kernel, self.stride = None, 1

    def bind_operator(self, kernel: torch.Tensor, stride: int) -> None:
        self.kernel, self.stride = kernel, stride


def chosen_forward(layer, choices: list[str], u: torch.Tensor, y: torch.Tensor, slot) -> torch.Tensor:
    """Trial t computes the op choices[t] alone (`zero`: zeros), each op on the trials that chose it.

    slot(name): the CNN slot of op `name` in layer.bank. u (T,B,1,L), y (T,B,1,Lo) -> (T,B,1,L).
    """
    groups: dict[str, list[int]] = {}
    for t, c in enumerate(choices):
        if c != "zero":
            groups.setdefault(c, []).append(t)
    T = u.shape[0]
    if len(groups) == 1 and len(next(iter(groups.values()))) == T:  # every trial the same op
        name = next(iter(groups))
        r = {name: layer.bank(u)[:, slot(name)]} if name in CNN_OPS else {}
        return OPS[name].fn(layer, u, y, r)
    out = torch.zeros_like(u)
    cnn_trials = [t for t, c in enumerate(choices) if c in CNN_OPS]
    if cnn_trials:
        cnn_idx = torch.tensor(cnn_trials, device=u.device)
        cnn = layer.bank(u.index_select(0, cnn_idx), cnn_idx)
        pos = {t: k for k, t in enumerate(cnn_trials)}
    for name, trials in groups.items():
        idx = torch.tensor(trials, device=u.device)
        r = {}
        if name in CNN_OPS:
            r = {name: cnn.index_select(0, torch.tensor([pos[t] for t in trials], device=u.device))[:, slot(name)]}
        v = OPS[name].fn(layer, u.index_select(0, idx), y.index_select(0, idx), r, idx)
        out = out.index_copy(0, idx, v)
    return out


class MixedOp(_Layer):
    """sum_t softmax(alpha)_t o_t(u) over the candidate ops (docs/spec.md §4), for T trials.

    The CNN-carrying candidates share one bank (K = 2 CNNs per trial), run as one kernel. With
    `choices` set (one op name per trial, see model.one_hot) it computes trial t's chosen op alone,
    with the weights it has: what the mixture gives for a one-hot alpha, without computing (or
    drawing noise for) the terms of weight 0.
    """

    def __init__(self, names: list[str], gens, noise: NoiseStreams, cfg):
        for n in names:
            if n not in OPS:
                raise ValueError(f"unknown op {n!r}; choose from {sorted(OPS)}")
        super().__init__(len(gens), any(OPS[n].tau for n in names), noise, cfg)
        self.names = list(names)
        cnn_ops = [n for n in names if n in CNN_OPS]
        self.cnn_slot = {n: i for i, n in enumerate(cnn_ops)}
        self.bank = CNNBank(len(cnn_ops), cfg.width, gens, kernel_size=cfg.kernel_size) if cnn_ops else None
        # a zero op adds nothing, so it is never computed
        self.live = [i for i, n in enumerate(names) if n != "zero"]
        self.choices: list[str] | None = None

    def forward(self, u: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """u (T,B,1,L), y (T,B,1,Lo), weights (T,n_ops) softmax -> (T,B,1,L)."""
        if self.choices is not None:
            return chosen_forward(self, self.choices, u, y, self.cnn_slot.__getitem__)
        r = {}
        if self.bank is not None:
            banks = self.bank(u)
            r = {n: banks[:, k] for n, k in self.cnn_slot.items()}
        out = None
        for i in self.live:  # a fixed order of single-rounding products and sums: the same bits for any T
            term = weights[:, i].reshape(-1, 1, 1, 1) * OPS[self.names[i]].fn(self, u, y, r)
            out = term if out is None else out + term
        return torch.zeros_like(u) if out is None else out


class ChosenOp(_Layer):
    """One op per trial (a derived or baseline architecture): trial t computes choices[t].

    Each op runs on the trials that chose it only, so an op a trial does not use costs nothing.
    A trial's layer has one CNN if its op carries one; trial t's weights are drawn from gens[t]
    in the same order as in a network of that trial alone.
    """

    def __init__(self, choices: list[str], gens, noise: NoiseStreams, cfg):
        for n in choices:
            if n not in OPS:
                raise ValueError(f"unknown op {n!r}; choose from {sorted(OPS)}")
        super().__init__(len(gens), any(OPS[n].tau for n in choices), noise, cfg)
        self.choices = list(choices)
        needs_cnn = [c in CNN_OPS for c in choices]
        self.bank = (CNNBank(1, cfg.width, gens, draw=needs_cnn, kernel_size=cfg.kernel_size)
                     if any(needs_cnn) else None)

    def forward(self, u: torch.Tensor, y: torch.Tensor, weights=None) -> torch.Tensor:
        """u (T,B,1,L), y (T,B,1,Lo) -> (T,B,1,L); a trial that chose `zero` gets zeros."""
        return chosen_forward(self, self.choices, u, y, lambda name: 0)
