"""The project's vocabulary, defined once: methods, op sets, data formations and spaces, each with
the name a table or figure shows, its order and its colour.

Analysis, tables and figures iterate over these registries, never over literals; the stages ask a
method what it is (`kind`, `has_alphas`, `architectures`). A new method or op set is one entry here
(and, for an op set, ops that exist in `das.ops.OPS`). A name that is not registered is shown under
its own name by every table and figure (`display`, `order`, `colour` fall back), and refused with
one line by `TrialSpec`, so a results tree can never hold a trial that is silently misjudged.

The paper's claims (a)-(e) name what they compare through `Method.role` and `OpSet.harmful`
(das/stats.py): (a) and (c) are about op sets with harmful ops, (b) about op sets without.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


UNDER_STUDY, RANDOM, BEST_OF_RANDOM, BASELINE = "under study", "one random", "best of random", "baseline"


@dataclass(frozen=True)
class Method:
    """A way to obtain an architecture and its numbers.

    kind: "search" (a DAS-style search whose genotype is retrained) or "train" (trained from scratch).
    has_alphas: the search has architecture parameters (alpha diagnostics, one-shot PSNR).
    frozen_weights: the search keeps the operations' weights fixed (DAS-single).
    architectures(spec, generator) -> list of Genotype: what a training method trains (None for a
    search or for a method whose architecture comes with its specification, `genotype`).
    role: what the claims compare: UNDER_STUDY (DAS), RANDOM (one random architecture),
    BEST_OF_RANDOM (random search: the best of several), BASELINE (anything else).
    """

    name: str
    kind: str
    display: str
    colour: str
    has_alphas: bool = False
    frozen_weights: bool = False
    spaces: tuple = ("seq", "cell")
    architectures: Callable | None = None
    candidates: int | None = None      # default number of architectures tried (random search)
    role: str = BASELINE
    uniform_op: str | None = None      # every layer/edge this op (what DAS-single pretrains its ops as)


@dataclass(frozen=True)
class OpSet:
    """A set of candidate operations of a layer or edge (the cell space adds `zero`)."""

    name: str
    ops: tuple
    display: str                       # in tables, as the paper writes it
    colour: str
    label: str = ""                    # in figure legends
    heading: str = ""                  # a column heading (the paper's Tables 3-4)
    harmful: bool = False              # holds a harmful op (roll, noise): the claims (a) and (c)
    superset_of: str | None = None     # claim (c): DAS on this set against DAS on that harmless set


@dataclass(frozen=True)
class Formation:
    name: str
    display: str
    stride: int


@dataclass(frozen=True)
class Space:
    name: str
    display: str
    short: str = field(default="")


def _uniform(op):
    def architectures(spec, generator):
        from das.model import uniform_genotype
        return [uniform_genotype(spec.space, spec.data, spec.ops, op, spec.width)]
    return architectures


def _random(spec, generator):
    from das.model import random_genotype
    count = spec.candidates or 1
    return [random_genotype(spec.space, spec.data, spec.ops, generator, spec.width) for _ in range(count)]


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("grad-only", "train", "Learnable Grad. only", "tab:blue", architectures=_uniform("grad"), uniform_op="grad"),
    Method("net-only", "train", "Nets only", "tab:green", architectures=_uniform("net"), uniform_op="net"),
    Method("das", "search", "DAS", "black", has_alphas=True, role=UNDER_STUDY),
    Method("das-single", "search", "DAS-single", "tab:purple", has_alphas=True, frozen_weights=True,
           spaces=("seq",)),
    Method("random", "train", "Random", "tab:orange", architectures=_random, role=RANDOM),
    Method("random-search", "train", "Random Search", "tab:red", architectures=_random, candidates=5,
           role=BEST_OF_RANDOM),
    Method("genotype", "train", "Genotype", "tab:brown"),
)}

OP_SETS: dict[str, OpSet] = {s.name: s for s in (
    OpSet("good", ("grad", "net"), "good ops.", "tab:blue", label="good ops", heading="Good Ops."),
    OpSet("all", ("grad", "net", "roll", "noise"), "all", "tab:red", label="all ops", heading="All", harmful=True,
          superset_of="good"),
)}

FORMATIONS: dict[str, Formation] = {f.name: f for f in (
    Formation("blur", "Blur", 1),
    Formation("downsample", "Downsampling", 4),
)}

SPACES: dict[str, Space] = {s.name: s for s in (
    Space("seq", "sequential", "sequential"),
    Space("cell", "cell (non-sequential)", "cell"),
)}


def uniform_method(op: str) -> str:
    """The training method whose architecture is `op` at every layer (grad-only for grad)."""
    for m in METHODS.values():
        if m.uniform_op == op:
            return m.name
    raise KeyError(f"no method trains {op} at every layer")


def search_methods() -> tuple:
    return tuple(m for m, v in METHODS.items() if v.kind == "search")


def training_methods() -> tuple:
    """The baselines a user runs by name (a genotype file is retrained through --genotype)."""
    return tuple(m for m, v in METHODS.items() if v.kind == "train" and v.architectures is not None)


def is_search(method: str) -> bool:
    m = METHODS.get(method)
    return m is not None and m.kind == "search"


def has_alphas(method: str) -> bool:
    m = METHODS.get(method)
    return m is not None and m.has_alphas


def display(kind: str, name, short: bool = False) -> str:
    """The shown name of a method, op set, data formation or space in a table (short: in a figure);
    an unknown name shows as itself."""
    table = {"method": METHODS, "ops": OP_SETS, "data": FORMATIONS, "space": SPACES}[kind]
    entry = table.get(name)
    if entry is None:
        return str(name)
    if short and getattr(entry, "label", ""):
        return entry.label
    if short and getattr(entry, "short", ""):
        return entry.short
    return entry.display


def heading(ops: str) -> str:
    entry = OP_SETS.get(ops)
    return entry.heading if entry is not None and entry.heading else str(ops)


def order(kind: str, name) -> tuple:
    """Sort key: registered names in registry order, then unknown names alphabetically."""
    table = {"method": METHODS, "ops": OP_SETS, "data": FORMATIONS, "space": SPACES}[kind]
    names = list(table)
    return (names.index(name), "") if name in table else (len(names), str(name))


def ordered(kind: str, names) -> list:
    """The distinct names, registered ones in registry order first, then unknown ones alphabetically."""
    return sorted(set(names), key=lambda n: order(kind, n))


def colour(kind: str, name) -> str:
    table = {"method": METHODS, "ops": OP_SETS}[kind]
    entry = table.get(name)
    return entry.colour if entry is not None else "tab:gray"
