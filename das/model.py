"""Search spaces (SPEC 4): the sequential 10-layer space and the DARTS-like cell space.

A network is built either as a supernet (every layer/edge a MixedOp over all candidates,
with architecture parameters alpha) or as a discrete network from a genotype (one op each).
Both take the measurement y (B,1,Lo) and return the reconstruction (B,1,L).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from das import operators
from das.genotype import CELL_STATES, SEQ_LAYERS, Genotype
from das.ops import CNN_OPS, WIDTH, NOISE_SIGMA, MixedOp, op_names

CELLS = 2


def cell_edges(states: int = CELL_STATES) -> list[tuple[int, int]]:
    """All forward edges (i, j), 0 <= i < j <= states, ordered by target then source: 15 for 5 states."""
    return [(i, j) for j in range(1, states + 1) for i in range(j)]


class _Network(nn.Module):
    """Shared plumbing: the operator A as a buffer, and the residual output u0 + body(u0)."""

    def __init__(self, data: str, noise_sigma: float = NOISE_SIGMA):
        super().__init__()
        A = operators.Operator(data)
        self.data, self.stride, self.length = data, A.stride, A.length
        self.noise_sigma = noise_sigma
        self.register_buffer("kernel", A.kernel, persistent=False)

    def mixed_ops(self):
        return [m for m in self.modules() if isinstance(m, MixedOp)]

    def _bind(self):
        for m in self._mixed:
            m.kernel, m.stride = self.kernel, self.stride

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """y (B,1,Lo) -> x_hat (B,1,L)."""
        self._bind()
        u0 = operators.blur_adjoint(y, self.kernel, self.stride, self.length)
        return u0 + self.body(u0, y, self.op_weights())

    def op_weights(self):
        return None

    def weights(self):
        """The operation parameters theta (everything but alpha)."""
        return [p for n, p in self.named_parameters() if n != "alphas"]


class SeqNetwork(_Network):
    """Sequential space: u0 = A^T y, u_{j+1} = o_j(u_j) for j < 10, output u0 + u_10."""

    space = "seq"

    def __init__(self, data: str, layer_ops: list[list[str]], width: int = WIDTH, noise_sigma: float = NOISE_SIGMA):
        super().__init__(data, noise_sigma)
        self.layers = nn.ModuleList(MixedOp(ops, width, noise_sigma) for ops in layer_ops)
        self._mixed = self.mixed_ops()

    def body(self, u, y, weights):
        for j, layer in enumerate(self.layers):
            u = layer(u, y, None if weights is None else weights[j])
        return u


class _Cell(nn.Module):
    """One cell: s_j = sum_{i<j} o_ij(s_i); output = conv1x1(concat(s4, s5)).

    A derived cell holds only its non-zero edges. A state none of whose edges is held is the zero
    signal, and the edges leaving it are still computed (SPEC 4): grad and noise read y, so
    grad(0) = tau A^T y - tau n(0) is not zero. This makes a derived cell equal the supernet's cell
    with one-hot alpha.
    """

    def __init__(self, edge_ops: dict, width: int, noise_sigma: float, states: int = CELL_STATES):
        super().__init__()
        self.states = states
        self.edges = [e for e in cell_edges(states) if e in edge_ops]
        self.ops = nn.ModuleDict({f"{i}_{j}": MixedOp(edge_ops[(i, j)], width, noise_sigma) for i, j in self.edges})
        self.out = nn.Conv1d(2, 1, kernel_size=1)
        self.index = {e: k for k, e in enumerate(cell_edges(states))}

    def forward(self, s0, y, weights):
        """s0 (B,1,L), y (B,1,Lo), weights (15, n_ops) softmax or None (derived) -> (B,1,L)."""
        s = [s0] + [None] * self.states  # None: no edge into this state so far, i.e. the zero signal
        for i, j in self.edges:
            w = None if weights is None else weights[self.index[(i, j)]]
            src = s[i] if s[i] is not None else torch.zeros_like(s0)
            v = self.ops[f"{i}_{j}"](src, y, w)
            s[j] = v if s[j] is None else s[j] + v
        last = [t if t is not None else torch.zeros_like(s0) for t in s[-2:]]
        return self.output(*last)

    def output(self, s4: torch.Tensor, s5: torch.Tensor) -> torch.Tensor:
        """conv1x1(concat(s4, s5)) = w0 s4 + w1 s5 + b: s4, s5 (B,1,L) -> (B,1,L).

        Computed by hand rather than by nn.Conv1d, whose weight and bias gradients are one oneDNN
        reduction over all B*L positions split by thread, so their last bits (and then a whole
        search) depended on the thread count. Expanding w and b over the batch makes autograd
        reduce over L per sample, then over B: reductions too short to be split across threads,
        or split along their outputs, which keeps each sum's order fixed. `self.out` keeps holding
        the parameters, so checkpoints are unchanged.
        """
        B = s4.shape[0]
        w = self.out.weight.view(1, 2, 1).expand(B, 2, 1)
        b = self.out.bias.view(1, 1, 1).expand(B, 1, 1)
        return s4 * w[:, :1] + s5 * w[:, 1:] + b


class CellNetwork(_Network):
    """Cell space: output = u0 + cell2(cell1(u0)); both cells share one set of alphas."""

    space = "cell"

    def __init__(self, data: str, edge_ops: dict, width: int = WIDTH, noise_sigma: float = NOISE_SIGMA,
                 cells: int = CELLS):
        super().__init__(data, noise_sigma)
        self.cells = nn.ModuleList(_Cell(edge_ops, width, noise_sigma) for _ in range(cells))
        self._mixed = self.mixed_ops()

    def body(self, u, y, weights):
        for cell in self.cells:
            u = cell(u, y, weights)
        return u


class _Supernet:
    """Mixin: alphas, their softmax, and derivation by argmax (DARTS' Network API)."""

    def _init_alphas(self, rows: int, names: list[str]):
        self.op_names = names
        self.alphas = nn.Parameter(1e-3 * torch.randn(rows, len(names)))

    def op_weights(self):
        return F.softmax(self.alphas, dim=-1)

    def arch_parameters(self):
        return [self.alphas]

    def softmax_alphas(self) -> list[list[float]]:
        return F.softmax(self.alphas.detach().double(), dim=-1).tolist()

    def choice_indices(self, genotype: Genotype) -> list[int]:
        """The row-wise index into op_names of each layer's (seq) or edge's (cell) op in genotype."""
        if genotype.space != self.space:
            raise ValueError(f"a {genotype.space} genotype does not fit a {self.space} supernet")
        chosen = genotype.layers if self.space == "seq" else [op for _, _, op in genotype.edges]
        if self.space == "cell" and [(i, j) for i, j, _ in genotype.edges] != cell_edges():
            raise ValueError("a cell genotype for a supernet must name all 15 edges in cell_edges() order")
        if len(chosen) != self.alphas.shape[0]:
            raise ValueError(f"genotype has {len(chosen)} layers, the supernet {self.alphas.shape[0]}")
        missing = sorted(set(chosen) - set(self.op_names))
        if missing:
            raise ValueError(f"genotype ops {missing} are not candidates of this supernet ({self.op_names})")
        return [self.op_names.index(op) for op in chosen]

    @contextlib.contextmanager
    def one_hot(self, genotype: Genotype, skip_zero: bool = True):
        """Within the block alpha is one-hot on the genotype's choices: softmax exactly 1 for the
        chosen op and exactly 0 for the others (logits 0 and -inf), weights as trained.

        skip_zero: the mixed ops leave out the terms of weight 0 (see MixedOp.skip_zero_weights),
        so the noise ops draw exactly what the derived network draws. The mixture's value is the
        same either way; skip_zero=False computes every term, as in training.
        The alphas and the mixed ops are restored on exit, bit for bit.
        """
        idx = self.choice_indices(genotype)
        saved = self.alphas.detach().clone()
        with torch.no_grad():
            self.alphas.fill_(float("-inf"))
            self.alphas[torch.arange(len(idx)), torch.tensor(idx)] = 0.0
        for m in self._mixed:
            m.skip_zero_weights = skip_zero
        try:
            yield self
        finally:
            with torch.no_grad():
                self.alphas.copy_(saved)
            for m in self._mixed:
                m.skip_zero_weights = False


class SeqSupernet(_Supernet, SeqNetwork):
    def __init__(self, data: str, ops: str, width: int = WIDTH, noise_sigma: float = NOISE_SIGMA,
                 layers: int = SEQ_LAYERS):
        names = op_names(ops, "seq")
        SeqNetwork.__init__(self, data, [names] * layers, width, noise_sigma)
        self._init_alphas(layers, names)
        self.ops_name, self.width = ops, width

    def genotype(self) -> Genotype:
        choice = self.alphas.detach().argmax(dim=-1).tolist()
        return Genotype(space="seq", ops=self.ops_name, data=self.data, width=self.width,
                        layers=[self.op_names[c] for c in choice], alphas=self.softmax_alphas())


class CellSupernet(_Supernet, CellNetwork):
    def __init__(self, data: str, ops: str, width: int = WIDTH, noise_sigma: float = NOISE_SIGMA):
        names = op_names(ops, "cell")
        edges = cell_edges()
        CellNetwork.__init__(self, data, {e: names for e in edges}, width, noise_sigma)
        self._init_alphas(len(edges), names)
        self.ops_name, self.width = ops, width

    def genotype(self) -> Genotype:
        choice = self.alphas.detach().argmax(dim=-1).tolist()
        edges = [(i, j, self.op_names[c]) for (i, j), c in zip(cell_edges(), choice)]
        return Genotype(space="cell", ops=self.ops_name, data=self.data, width=self.width,
                        edges=edges, alphas=self.softmax_alphas())


def build_supernet(space: str, data: str, ops: str, width: int = WIDTH, noise_sigma: float = NOISE_SIGMA):
    if space == "seq":
        return SeqSupernet(data, ops, width, noise_sigma)
    if space == "cell":
        return CellSupernet(data, ops, width, noise_sigma)
    raise ValueError(f"unknown space {space!r}; choose seq or cell")


def build_network(genotype: Genotype, data: str | None = None, noise_sigma: float = NOISE_SIGMA):
    """The discrete network of a genotype, freshly initialised."""
    data = data or genotype.data
    if genotype.space == "seq":
        return SeqNetwork(data, [[op] for op in genotype.layers], genotype.width, noise_sigma)
    edge_ops = {(i, j): [op] for i, j, op in genotype.edges if op != "zero"}
    return CellNetwork(data, edge_ops, genotype.width, noise_sigma)


def derived_from_supernet(supernet, genotype: Genotype | None = None):
    """The discrete network of `genotype` (default: the supernet's own) carrying the supernet's
    weights: each kept op takes the tau and the CNN (BN statistics included) of its layer/edge,
    each cell takes its cell's output conv. Same device, dtype and train/eval mode.

    It computes what the supernet computes with one-hot alpha on genotype (`_Supernet.one_hot`).
    """
    genotype = genotype or supernet.genotype()
    supernet.choice_indices(genotype)  # validates space, length and op names
    if genotype.width != supernet.width:
        raise ValueError(f"genotype width {genotype.width} differs from the supernet's {supernet.width}")
    net = build_network(genotype, supernet.data, supernet.noise_sigma)
    net.to(device=supernet.kernel.device, dtype=supernet.alphas.dtype)
    if genotype.space == "seq":
        pairs = list(zip(net.layers, supernet.layers))
    else:
        pairs = []
        for cell, source in zip(net.cells, supernet.cells):
            cell.out.load_state_dict(source.out.state_dict())
            pairs += [(m, source.ops[key]) for key, m in cell.ops.items()]
    with torch.no_grad():
        for m, source in pairs:
            op = m.names[0]
            if op in CNN_OPS:
                m.bank.copy_slot(0, source.bank, source.cnn_slot[op])
            if op == "grad":
                m.tau.copy_(source.tau)
    return net.train(supernet.training)


def uniform_genotype(space: str, data: str, ops: str, op: str, width: int = WIDTH) -> Genotype:
    """Every layer/edge the same op: the grad-only and net-only baselines."""
    if space == "seq":
        return Genotype(space="seq", ops=ops, data=data, width=width, layers=[op] * SEQ_LAYERS)
    return Genotype(space="cell", ops=ops, data=data, width=width, edges=[(i, j, op) for i, j in cell_edges()])


def random_genotype(space: str, data: str, ops: str, generator: torch.Generator, width: int = WIDTH) -> Genotype:
    """One architecture drawn uniformly per layer/edge from the candidates (zero included for cells)."""
    names = op_names(ops, space)
    rows = SEQ_LAYERS if space == "seq" else len(cell_edges())
    pick = torch.randint(len(names), (rows,), generator=generator).tolist()
    if space == "seq":
        return Genotype(space="seq", ops=ops, data=data, width=width, layers=[names[p] for p in pick])
    return Genotype(space="cell", ops=ops, data=data, width=width,
                    edges=[(i, j, names[p]) for (i, j), p in zip(cell_edges(), pick)])


__all__ = ["SeqNetwork", "CellNetwork", "SeqSupernet", "CellSupernet", "build_supernet", "build_network",
           "cell_edges", "derived_from_supernet", "uniform_genotype", "random_genotype", "SEQ_LAYERS"]
