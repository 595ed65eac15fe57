"""The operation registry (paper 4.3, SPEC 3) and the CNN n(u; theta) that `grad` and `net` share.

Every op maps u (B,1,L) to (B,1,L) and may read the measurement y. An op is one entry of OPS:
a function (layer, u, y, r) -> (B,1,L), where `layer` is the MixedOp that owns its parameters
and r (K,B,1,L) holds the outputs of that layer's CNNs (one per CNN-carrying op).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from das import operators

OP_SETS = {"good": ["grad", "net"], "all": ["grad", "net", "roll", "noise"]}
CNN_OPS = ("grad", "net")  # the ops that carry a CNN n(u; theta)
NOISE_SIGMA = 0.1
WIDTH = 16


class CNNBank(nn.Module):
    """K independent CNNs conv(1->C, k=3) -> BatchNorm1d(C) -> ReLU -> conv(C->1, k=3) on one input.

    Parameters are stacked along K, so all K run as one fused kernel. Initialised like
    nn.Conv1d / nn.BatchNorm1d.
    """

    def __init__(self, count: int, width: int = WIDTH, kernel_size: int = 3, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        K, C, k = count, width, kernel_size
        self.momentum, self.eps = momentum, eps
        b1_bound, b2_bound = 1 / math.sqrt(k), 1 / math.sqrt(C * k)
        self.w1 = nn.Parameter(torch.empty(K, C, k).uniform_(-b1_bound, b1_bound))
        self.b1 = nn.Parameter(torch.empty(K, C).uniform_(-b1_bound, b1_bound))
        self.gamma = nn.Parameter(torch.ones(K, C))
        self.beta = nn.Parameter(torch.zeros(K, C))
        self.w2 = nn.Parameter(torch.empty(K, C, k).uniform_(-b2_bound, b2_bound))
        self.b2 = nn.Parameter(torch.empty(K).uniform_(-b2_bound, b2_bound))
        self.register_buffer("running_mean", torch.zeros(K, C))
        self.register_buffer("running_var", torch.ones(K, C))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B,1,L) -> (K,B,1,L)."""
        return operators.cnn_bank(u, self.w1, self.b1, self.gamma, self.beta, self.w2, self.b2,
                                  self.running_mean, self.running_var, self.training, self.momentum, self.eps)

    PARAMS = ("w1", "b1", "gamma", "beta", "w2", "b2", "running_mean", "running_var")

    @torch.no_grad()
    def copy_slot(self, k: int, other: "CNNBank", other_k: int) -> None:
        """Copy CNN number other_k of another bank into slot k of this one."""
        for name in self.PARAMS:
            getattr(self, name)[k].copy_(getattr(other, name)[other_k])


def _grad(layer, u, y, r):
    # Eq. 6: u - tau A^T(A u - y) - tau n(u; theta), one fused kernel
    return operators.grad_step(u, y, layer.tau, r[layer.cnn_slot["grad"]], layer.kernel, layer.stride)


def _net(layer, u, y, r):
    # Eq. 7: n(u; theta)
    return r[layer.cnn_slot["net"]]


def _roll(layer, u, y, r):
    # harmful by design: shifts batch, channel and signal by one
    return torch.roll(u, shifts=(1, 1, 1), dims=(0, 1, 2))


def _noise(layer, u, y, r):
    # harmful by design: a plain gradient step plus fresh Gaussian noise at every call
    eps = torch.randn_like(u)
    return operators.grad_step(u, y, layer.one, eps.mul_(-layer.noise_sigma), layer.kernel, layer.stride)


def _zero(layer, u, y, r):
    return torch.zeros_like(u)


OPS = {"grad": _grad, "net": _net, "roll": _roll, "noise": _noise, "zero": _zero}


def op_names(ops: str, space: str) -> list[str]:
    """The candidate ops of one layer/edge: the op set, plus `zero` in the cell space."""
    if ops not in OP_SETS:
        raise ValueError(f"unknown op set {ops!r}; choose one of {sorted(OP_SETS)}")
    return OP_SETS[ops] + (["zero"] if space == "cell" else [])


class MixedOp(nn.Module):
    """sum_t w_t o_t(u) over candidate ops (SPEC 4); a single op when given one name.

    The kernel and stride of A are set by the owning network (`bind_operator`).
    """

    def __init__(self, names: list[str], width: int = WIDTH, noise_sigma: float = NOISE_SIGMA):
        super().__init__()
        for n in names:
            if n not in OPS:
                raise ValueError(f"unknown op {n!r}; choose from {sorted(OPS)}")
        self.names = list(names)
        cnn_ops = [n for n in names if n in CNN_OPS]
        self.cnn_slot = {n: i for i, n in enumerate(cnn_ops)}
        self.bank = CNNBank(len(cnn_ops), width) if cnn_ops else None
        self.tau = nn.Parameter(torch.ones(())) if "grad" in names else None
        self.register_buffer("one", torch.ones(()), persistent=False)
        self.noise_sigma = noise_sigma
        # indices of the ops that are not `zero`: a zero op adds nothing, so it is never computed
        self.live = [i for i, n in enumerate(names) if n != "zero"]
        # Set by `_Supernet.one_hot`: also leave out the ops whose weight is exactly 0. Their term
        # w_t o_t(u) is exactly 0 either way; leaving them out only spares their compute and their
        # random draws, so the noise ops of a one-hot supernet draw what the derived network draws.
        # Off in training: it reads the weights on the host.
        self.skip_zero_weights = False
        self.kernel, self.stride = None, 1

    def bind_operator(self, kernel: torch.Tensor, stride: int) -> None:
        self.kernel, self.stride = kernel, stride

    def forward(self, u: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """u (B,1,L), y (B,1,Lo), weights (n_ops,) softmax or None for a single op -> (B,1,L)."""
        r = self.bank(u) if self.bank is not None else None
        if weights is None:
            assert len(self.names) == 1, "a mixed op needs weights"
            return OPS[self.names[0]](self, u, y, r)
        live = self.live
        if self.skip_zero_weights:
            nonzero = (weights != 0).tolist()
            live = [i for i in live if nonzero[i]]
        if not live:
            return torch.zeros_like(u)
        outs = torch.stack([OPS[self.names[i]](self, u, y, r) for i in live])
        w = weights if len(live) == len(self.names) else weights[live]
        return torch.tensordot(w, outs, dims=1)
