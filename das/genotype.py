"""Genotypes: the derived architecture as data (docs/spec.md §4), one JSON format for every script.

    {"space": "seq", "ops": "all", "data": "blur", "width": 16,
     "layers": ["grad", "net", ...],            # seq: the op of each of the 10 layers
     "edges": [[0, 1, "grad"], ...],            # cell: (from, to, op) per edge, zero allowed
     "alphas": [[...], ...]}                    # softmax(alpha) the choice came from, if searched
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from das.utils import UserError, is_number, read_json, short_repr, write_json
from das.vocab import FORMATIONS, OP_SETS, SPACES

SEQ_LAYERS = 10
CELL_STATES = 5
MAX_WIDTH = 4096  # channels of the CNN op; TrialSpec's --width takes the same bound
FIX = "write it with search.py or follow the format in das/genotype.py"


@dataclass
class Genotype:
    space: str
    ops: str
    data: str = "blur"
    width: int = 16
    layers: list = field(default_factory=list)
    edges: list = field(default_factory=list)
    alphas: list | None = None

    def to_dict(self) -> dict:
        d = {"space": self.space, "ops": self.ops, "data": self.data, "width": self.width}
        if self.space == "seq":
            d["layers"] = list(self.layers)
        else:
            d["edges"] = [[int(i), int(j), op] for i, j, op in self.edges]
        if self.alphas is not None:
            d["alphas"] = self.alphas
        return d

    def to_json(self, path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict, source: str = "genotype") -> "Genotype":
        """Validate and build; raises UserError naming `source` and the problem."""
        def bad(msg):
            return UserError(f"{source}: malformed genotype: {msg}; {FIX}")

        if not isinstance(d, dict):
            raise bad("not a JSON object")
        space, ops = d.get("space"), d.get("ops")
        if not isinstance(space, str) or space not in SPACES:
            raise bad(f"space is {short_repr(space)}, expected one of {list(SPACES)}")
        if not isinstance(ops, str) or ops not in OP_SETS:
            raise bad(f"ops is {short_repr(ops)}, expected one of {sorted(OP_SETS)}")
        data = d.get("data", "blur")
        if not isinstance(data, str) or data not in FORMATIONS:
            raise bad(f"data is {short_repr(data)}, expected one of {list(FORMATIONS)}")
        width = d.get("width", 16)
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_WIDTH:
            raise bad(f"width is {short_repr(width)}, expected an integer in 1..{MAX_WIDTH}")
        allowed = list(OP_SETS[ops].ops) + (["zero"] if space == "cell" else [])
        g = cls(space=space, ops=ops, data=data, width=width, alphas=d.get("alphas"))
        if space == "seq":
            layers = d.get("layers")
            if not isinstance(layers, list) or len(layers) != SEQ_LAYERS:
                raise bad(f"a seq genotype needs 'layers', a list of {SEQ_LAYERS} op names, got {short_repr(layers)}")
            for k, op in enumerate(layers):
                if not isinstance(op, str) or op not in allowed:
                    raise bad(f"layer {k} has op {short_repr(op)}, not in the {ops!r} op set {allowed}")
            g.layers = list(layers)
        else:
            edges = d.get("edges")
            if not isinstance(edges, list) or not edges or len(edges) > CELL_STATES * (CELL_STATES + 1) // 2:
                raise bad("a cell genotype needs 'edges', a list of at most 15 [from, to, op]")
            seen = set()
            for e in edges:
                if not (isinstance(e, (list, tuple)) and len(e) == 3
                        and all(isinstance(v, int) and not isinstance(v, bool) for v in e[:2])):
                    raise bad(f"edge {short_repr(e)} is not [from, to, op]")
                i, j, op = e
                if not (0 <= i <= CELL_STATES and 1 <= j <= CELL_STATES):
                    raise bad(f"edge {short_repr(e)} names a node outside 0..{CELL_STATES}")
                if i >= j:
                    raise bad(f"edge {short_repr(e)} goes backward or loops (from must be < to): cells are acyclic")
                if (i, j) in seen:
                    raise bad(f"edge ({i}, {j}) appears twice")
                if not isinstance(op, str) or op not in allowed:
                    raise bad(f"edge {short_repr(e)} has op {short_repr(op)}, not in {allowed}")
                seen.add((i, j))
            g.edges = sorted(((i, j, op) for i, j, op in edges), key=lambda e: (e[1], e[0]))
        if g.alphas is not None:
            rows = SEQ_LAYERS if space == "seq" else CELL_STATES * (CELL_STATES + 1) // 2
            if not (isinstance(g.alphas, list) and len(g.alphas) == rows
                    and all(isinstance(r, list) and len(r) == len(allowed) and all(is_number(v) for v in r)
                            for r in g.alphas)):
                raise bad(f"alphas must be {rows} rows of {len(allowed)} finite numbers")
        return g

    @classmethod
    def from_json(cls, path) -> "Genotype":
        return cls.from_dict(read_json(path, "genotype file", FIX), str(path))

    def describe(self) -> str:
        if self.space == "seq":
            return " ".join(self.layers)
        return " ".join(f"{i}->{j}:{op}" for i, j, op in self.edges if op != "zero") or "(all zero)"


def load_genotype(path) -> Genotype:
    return Genotype.from_json(Path(path))


__all__ = ["Genotype", "load_genotype"]
