"""Search spaces (docs/spec.md §4): the sequential 10-layer space and the DARTS-like cell space.

A network holds T trials at once (a leading trial dimension on every parameter, statistic and
tensor; T = 1 is one trial alone). It is built either as a supernet (every layer/edge a MixedOp
over all candidates, with architecture parameters alpha (T, rows, n_ops)) or as the discrete
networks of T genotypes (one op per layer/edge per trial). Both take the measurements
y (T,B,1,Lo) and return reconstructions (T,B,1,L). Trial t's weights come from its own
generator, seeded by its seed, so its numbers do not depend on its batch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from das import operators
from das.data import stream_seed
from das.genotype import CELL_STATES, SEQ_LAYERS, Genotype
from das.ops import ChosenOp, MixedOp, NoiseStreams, op_names
from das.spec import defaults

CELLS = 2
NOISE_STREAM = 2  # stream index of the noise op's generator (0, 1: the training and validation data)
_D = defaults()


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """The settings a network is built with; their meaning and defaults are das.spec.SETTINGS'.

    width, kernel_size: the 2-layer CNN; noise_sigma, roll: the harmful ops; residual: output
    u0 + body(u0) or body(u0); cell_output, cell_sum: the cell's output and how a state adds its
    incoming edges."""

    FIELDS: ClassVar = ("width", "kernel_size", "noise_sigma", "roll", "residual", "cell_output", "cell_sum")
    width: int = _D["width"]
    kernel_size: int = _D["kernel_size"]
    noise_sigma: float = _D["noise_sigma"]
    roll: str = _D["roll"]
    residual: str = _D["residual"]
    cell_output: str = _D["cell_output"]
    cell_sum: str = _D["cell_sum"]

    def with_(self, **kw) -> "NetConfig":
        return dataclasses.replace(self, **kw) if kw else self


def _config(cfg, overrides) -> NetConfig:
    return (cfg or NetConfig()).with_(**overrides)


def cell_edges(states: int = CELL_STATES) -> list[tuple[int, int]]:
    """All forward edges (i, j), 0 <= i < j <= states, ordered by target then source: 15 for 5 states."""
    return [(i, j) for j in range(1, states + 1) for i in range(j)]


def init_generators(seeds) -> list[torch.Generator]:
    """One generator per trial for its initial weights: trial t's draws are its own."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def softmax_rows(a: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension, written out with a fixed order of single-rounding sums so a
    row's bits never depend on how many rows there are: a (..., n) -> (..., n)."""
    e = torch.exp(a - a.max(dim=-1, keepdim=True).values)
    total = e[..., 0]
    for i in range(1, a.shape[-1]):
        total = total + e[..., i]
    return e / total.unsqueeze(-1)


class _Network(nn.Module):
    """Shared plumbing: the operator A as a buffer, the noise streams, the residual u0 + body(u0)."""

    def __init__(self, data: str, seeds, cfg: NetConfig):
        super().__init__()
        A = operators.Operator(data)
        self.data, self.stride, self.length = data, A.stride, A.length
        self.cfg = cfg
        self.seeds = [int(s) for s in seeds]
        self.register_buffer("kernel", A.kernel, persistent=False)
        self.noise = NoiseStreams([stream_seed(s, NOISE_STREAM) for s in self.seeds])

    @property
    def trials(self) -> int:
        return len(self.seeds)

    def layers_with_ops(self):
        return [m for m in self.modules() if isinstance(m, (MixedOp, ChosenOp))]

    def _bind(self):
        for m in self._ops:
            m.bind_operator(self.kernel, self.stride)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """y (T,B,1,Lo) -> x_hat (T,B,1,L)."""
        self._bind()
        u0 = operators.blur_adjoint_batched(y, self.kernel, self.stride, self.length)
        body = self.body(u0, y, self.op_weights())
        return u0 + body if self.cfg.residual == "on" else body

    def op_weights(self):
        return None

    def weights(self) -> list[nn.Parameter]:
        """The operation parameters theta (everything but alpha)."""
        return [p for n, p in self.named_parameters() if n != "alphas"]


class SeqNetwork(_Network):
    """Sequential space: u0 = A^T y, u_{j+1} = o_j(u_j) for j < 10, output u0 + u_10."""

    space = "seq"

    def body(self, u, y, weights):
        for j, layer in enumerate(self.layers):
            u = layer(u, y, None if weights is None else weights[:, j])
        return u


class _Cell(nn.Module):
    """One cell: s_j = sum_{i<j} o_ij(s_i) (or their mean over the j edges the space allows:
    cfg.cell_sum), and an output convolution of the last two states (1x1 or 3 taps) or of all
    five (cfg.cell_output), per trial.

    Every non-zero edge is computed, also from a state whose inputs were all `zero` (that state is
    0, but grad and noise still read y: docs/spec.md §4). The output convolution is written elementwise in
    a fixed order, so each trial's arithmetic is the same in any batch and on any thread count.
    """

    def __init__(self, make_op, gens, cfg: NetConfig, states: int = CELL_STATES):
        super().__init__()
        self.states, self.cfg = states, cfg
        self.edges = cell_edges(states)
        made = {f"{i}_{j}": make_op(i, j) for i, j in self.edges}
        self.ops = nn.ModuleDict({k: v for k, v in made.items() if v is not None})
        self.inputs = list(range(states - 1, states + 1)) if cfg.cell_output != "all" else list(range(1, states + 1))
        taps = 3 if cfg.cell_output == "last2-k3" else 1
        # nn.Conv1d(n_in, 1, taps)'s initialisation: weight and bias uniform in +-1/sqrt(fan_in)
        bound = 1 / math.sqrt(len(self.inputs) * taps)
        shape = (len(self.inputs),) if taps == 1 else (len(self.inputs), taps)
        w, b = [], []
        for g in gens:
            w.append(torch.empty(shape).uniform_(-bound, bound, generator=g))
            b.append(torch.empty(1).uniform_(-bound, bound, generator=g))
        self.out_w = nn.Parameter(torch.stack(w))  # (T, n_in) or (T, n_in, taps)
        self.out_b = nn.Parameter(torch.cat(b))    # (T,)

    def forward(self, s0, y, weights):
        s = [s0]
        k = 0
        for j in range(1, self.states + 1):
            acc = torch.zeros_like(s0)
            for i in range(j):
                op = self.ops[f"{i}_{j}"] if f"{i}_{j}" in self.ops else None
                if op is not None:
                    acc = acc + op(s[i], y, None if weights is None else weights[:, k])
                k += 1
            s.append(acc / j if self.cfg.cell_sum == "mean" else acc)
        return self._output([s[i] for i in self.inputs])

    def _output(self, states):
        w = self.out_w
        if w.dim() == 2:  # 1x1: sum_c w_c s_c + b
            w = w.reshape(w.shape[0], -1, 1, 1, 1)
            out = w[:, 0] * states[0]
            for c in range(1, len(states)):
                out = out + w[:, c] * states[c]
            return out + self.out_b.reshape(-1, 1, 1, 1)
        taps = w.shape[-1]
        w = w.reshape(w.shape[0], w.shape[1], taps, 1, 1, 1)
        out = None
        for c, sc in enumerate(states):  # a 'same' convolution with zero padding, tap by tap
            padded = F.pad(sc, (taps // 2, taps // 2))
            for t in range(taps):
                term = w[:, c, t] * padded[..., t:t + sc.shape[-1]]
                out = term if out is None else out + term
        return out + self.out_b.reshape(-1, 1, 1, 1)


class CellNetwork(_Network):
    """Cell space: output = u0 + cell2(cell1(u0)); in the supernet both cells share one alpha."""

    space = "cell"

    def body(self, u, y, weights):
        for cell in self.cells:
            u = cell(u, y, weights)
        return u


class _Supernet:
    """Mixin: alphas, their softmax, and derivation by argmax (DARTS' Network API)."""

    def _init_alphas(self, rows: int, names: list[str], gens):
        self.op_names = names
        self.alphas = nn.Parameter(1e-3 * torch.stack([torch.randn(rows, len(names), generator=g) for g in gens]))

    def op_weights(self):
        return softmax_rows(self.alphas)

    def arch_parameters(self):
        return [self.alphas]

    def softmax_alphas(self, t: int) -> list[list[float]]:
        return softmax_rows(self.alphas.detach()[t].double()).tolist()

    def genotypes(self) -> list[Genotype]:
        return [self.genotype(t) for t in range(self.trials)]

    def choices_of(self, genotype: Genotype) -> list[str]:
        """The op of each layer (seq) or edge (cell) of a genotype that fits this supernet."""
        if genotype.space != self.space:
            raise ValueError(f"a {genotype.space} genotype does not fit a {self.space} supernet")
        chosen = genotype.layers if self.space == "seq" else [op for _, _, op in genotype.edges]
        if self.space == "cell" and [(i, j) for i, j, _ in genotype.edges] != cell_edges():
            raise ValueError("a cell genotype for a supernet must name all 15 edges in cell_edges() order")
        if len(chosen) != self.alphas.shape[1]:
            raise ValueError(f"genotype has {len(chosen)} layers, the supernet {self.alphas.shape[1]}")
        missing = sorted(set(chosen) - set(self.op_names))
        if missing:
            raise ValueError(f"genotype ops {missing} are not candidates of this supernet ({self.op_names})")
        return list(chosen)

    @contextlib.contextmanager
    def one_hot(self, genotypes):
        """Within the block trial t computes the supernet with alpha one-hot on genotypes[t]'s
        choices (one genotype for all trials, or one per trial), weights as trained: each mixed op
        computes the chosen op alone, which is exactly the mixture's value for a one-hot softmax
        (the other terms are 0), and draws noise only where the chosen op is `noise`, as the
        derived network does. The mixed ops are restored on exit."""
        if isinstance(genotypes, Genotype):
            genotypes = [genotypes] * self.trials
        if len(genotypes) != self.trials:
            raise ValueError(f"one genotype per trial: got {len(genotypes)} for {self.trials} trials")
        rows = [self.choices_of(g) for g in genotypes]
        mixed = self._mixed_rows()
        for k, ops in enumerate(mixed):
            for m in ops:
                m.choices = [r[k] for r in rows]
        try:
            yield self
        finally:
            for ops in mixed:
                for m in ops:
                    m.choices = None

    def _mixed_rows(self):
        """The mixed ops of each alpha row: one per seq layer, one per cell per edge."""
        if self.space == "seq":
            return [[m] for m in self.layers]
        return [[cell.ops[f"{i}_{j}"] for cell in self.cells] for i, j in cell_edges()]


class SeqSupernet(_Supernet, SeqNetwork):
    def __init__(self, data: str, ops: str, seeds, cfg: NetConfig | None = None, layers: int = SEQ_LAYERS,
                 **settings):
        cfg = _config(cfg, settings)
        super().__init__(data, seeds, cfg)
        names = op_names(ops, "seq")
        gens = init_generators(self.seeds)
        self.layers = nn.ModuleList(MixedOp(names, gens, self.noise, cfg) for _ in range(layers))
        self._init_alphas(layers, names, gens)
        self._ops = self.layers_with_ops()
        self.ops_name, self.width = ops, cfg.width

    def genotype(self, t: int = 0) -> Genotype:
        choice = self.alphas.detach()[t].argmax(dim=-1).tolist()
        return Genotype(space="seq", ops=self.ops_name, data=self.data, width=self.width,
                        layers=[self.op_names[c] for c in choice], alphas=self.softmax_alphas(t))


class CellSupernet(_Supernet, CellNetwork):
    def __init__(self, data: str, ops: str, seeds, cfg: NetConfig | None = None, cells: int = CELLS, **settings):
        cfg = _config(cfg, settings)
        super().__init__(data, seeds, cfg)
        names = op_names(ops, "cell")
        gens = init_generators(self.seeds)
        self.cells = nn.ModuleList(
            _Cell(lambda i, j: MixedOp(names, gens, self.noise, cfg), gens, cfg) for _ in range(cells))
        self._init_alphas(len(cell_edges()), names, gens)
        self._ops = self.layers_with_ops()
        self.ops_name, self.width = ops, cfg.width

    def genotype(self, t: int = 0) -> Genotype:
        choice = self.alphas.detach()[t].argmax(dim=-1).tolist()
        edges = [(i, j, self.op_names[c]) for (i, j), c in zip(cell_edges(), choice)]
        return Genotype(space="cell", ops=self.ops_name, data=self.data, width=self.width,
                        edges=edges, alphas=self.softmax_alphas(t))


class SeqDiscrete(SeqNetwork):
    """The discrete networks of T sequential genotypes (one op per layer per trial)."""

    def __init__(self, data: str, genotypes: list[Genotype], seeds, cfg: NetConfig | None = None):
        cfg = (cfg or NetConfig()).with_(width=_one_width(genotypes))
        super().__init__(data, seeds, cfg)
        gens = init_generators(self.seeds)
        self.layers = nn.ModuleList(
            ChosenOp([g.layers[j] for g in genotypes], gens, self.noise, cfg) for j in range(SEQ_LAYERS))
        self._ops = self.layers_with_ops()
        self.genotype_list = genotypes


class CellDiscrete(CellNetwork):
    """The discrete networks of T cell genotypes (one op per edge per trial, `zero` allowed)."""

    def __init__(self, data: str, genotypes: list[Genotype], seeds, cfg: NetConfig | None = None,
                 cells: int = CELLS):
        cfg = (cfg or NetConfig()).with_(width=_one_width(genotypes))
        super().__init__(data, seeds, cfg)
        gens = init_generators(self.seeds)
        choice = [{(i, j): op for i, j, op in g.edges} for g in genotypes]

        def make(i, j):
            ops = [c.get((i, j), "zero") for c in choice]
            return None if all(op == "zero" for op in ops) else ChosenOp(ops, gens, self.noise, cfg)

        self.cells = nn.ModuleList(_Cell(make, gens, cfg) for _ in range(cells))
        self._ops = self.layers_with_ops()
        self.genotype_list = genotypes


def _one_width(genotypes) -> int:
    widths = {g.width for g in genotypes}
    if len(widths) != 1:
        raise ValueError(f"a batch of networks needs one width, got {sorted(widths)}")
    return widths.pop()


SUPERNETS = {"seq": SeqSupernet, "cell": CellSupernet}   # a new space: one entry here and in DISCRETE
DISCRETE = {"seq": SeqDiscrete, "cell": CellDiscrete}


def build_supernet(space: str, data: str, ops: str, seeds, cfg: NetConfig | None = None, **settings):
    """The supernets of T trials (seeds: one per trial); settings override cfg's fields (width=8)."""
    if space not in SUPERNETS:
        raise ValueError(f"unknown space {space!r}; choose one of {sorted(SUPERNETS)}")
    return SUPERNETS[space](data, ops, seeds, _config(cfg, settings))


def build_network(genotypes, data: str | None = None, seeds=(0,), cfg: NetConfig | None = None, **settings):
    """The discrete networks of T genotypes of one space, trial t initialised from seeds[t]; the
    width is the genotypes' own."""
    if isinstance(genotypes, Genotype):
        genotypes = [genotypes]
    data = data or genotypes[0].data
    spaces = {g.space for g in genotypes}
    if len(spaces) != 1 or len(genotypes) != len(seeds):
        raise ValueError("a batch of networks needs one space and one seed per genotype")
    return DISCRETE[spaces.pop()](data, genotypes, seeds, _config(cfg, settings))


def uniform_genotype(space: str, data: str, ops: str, op: str, width: int = _D["width"]) -> Genotype:
    """Every layer/edge the same op: the grad-only and net-only baselines."""
    if space == "seq":
        return Genotype(space="seq", ops=ops, data=data, width=width, layers=[op] * SEQ_LAYERS)
    return Genotype(space="cell", ops=ops, data=data, width=width, edges=[(i, j, op) for i, j in cell_edges()])


def random_genotype(space: str, data: str, ops: str, generator: torch.Generator, width: int = _D["width"]) -> Genotype:
    """One architecture drawn uniformly per layer/edge from the candidates (zero included for cells)."""
    names = op_names(ops, space)
    rows = SEQ_LAYERS if space == "seq" else len(cell_edges())
    pick = torch.randint(len(names), (rows,), generator=generator).tolist()
    if space == "seq":
        return Genotype(space="seq", ops=ops, data=data, width=width, layers=[names[p] for p in pick])
    return Genotype(space="cell", ops=ops, data=data, width=width,
                    edges=[(i, j, names[p]) for (i, j), p in zip(cell_edges(), pick)])


@torch.no_grad()
def derived_from_supernet(supernet, genotype: Genotype | None = None, t: int = 0):
    """The discrete network (T = 1) of `genotype` (default: trial t's own) carrying trial t's supernet
    weights (tau and the CNN, BN statistics included, of each chosen op; the cells' output
    convolution) and its noise stream; it computes what `supernet.one_hot` computes for trial t."""
    genotype = genotype or supernet.genotype(t)
    supernet.choices_of(genotype)  # validates space, length and op names
    if genotype.width != supernet.width:
        raise ValueError(f"genotype width {genotype.width} differs from the supernet's {supernet.width}")
    net = build_network(genotype, supernet.data, seeds=[supernet.seeds[t]], cfg=supernet.cfg)
    net.to(device=supernet.kernel.device, dtype=supernet.alphas.dtype)
    net.noise.gens[0].set_state(supernet.noise.gens[t].get_state())
    pairs = list(zip(supernet.layers, net.layers)) if genotype.space == "seq" else [
        (sc.ops[k], nc.ops[k]) for sc, nc in zip(supernet.cells, net.cells) for k in nc.ops]
    for src, dst in pairs:
        op = dst.choices[0]
        if op in ("grad", "net"):
            dst.bank.copy_slot(0, 0, src.bank, t, src.cnn_slot[op])
        if op == "grad":
            dst.tau[0] = src.tau[t]
    if genotype.space == "cell":
        for sc, nc in zip(supernet.cells, net.cells):
            nc.out_w[0] = sc.out_w[t]
            nc.out_b[0] = sc.out_b[t]
    return net.train(supernet.training)


__all__ = ["NetConfig", "SeqNetwork", "CellNetwork", "SeqSupernet", "CellSupernet", "SeqDiscrete", "CellDiscrete",
           "build_supernet", "build_network", "cell_edges", "uniform_genotype", "random_genotype",
           "derived_from_supernet", "SEQ_LAYERS"]
