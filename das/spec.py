"""What a trial is: the one table of settings (`SETTINGS`), the trial specification built from it
(`TrialSpec`), its checks, its folder name and its group.

A trial is its full specification: space, data formation, op set, method, hyperparameter preset
(name and values), seed, stage, every setting of `SETTINGS` and, for a retrain, the genotype and
the retrain seed. Everything that derives from the settings reads this table: the command-line
flags of every script (das/cli.py), the sweep's flags, a retrain's inheritance from its search,
BOHB's evaluation settings, which trials may be compared (`comparable`), the columns of
trials.csv and the folder name. A new setting is one `Setting` entry (and the code that uses its
value); nothing else needs to know it.

    results/<space>/<data>/<ops>/<method>/<preset>/seed<N>[-e10-o2-w32-...-h1a2b3c]
    results/.../das/H1/seed3/retrain-seed<R>[-e10]        a retrain of the searched genotype
    results/.../genotype/H1/g<digest>/retrain-seed<R>     a retrain of a genotype file from elsewhere

A suffix token appears only for a setting that differs from its default, and `-h<digest>` when
the hyperparameter values are not those of the shipped preset of that name. A setting that cannot
change a trial (`applies` is false: the noise op's sigma without the noise op, the cell's output
in the sequential space, the search order of a baseline) is held at its default, so such trials
are one trial with one folder.

Settings added after result schema 2 (the paper's open readings) are written into a stored
specification only when they differ from their default, so the records of earlier runs remain
the same specifications.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from das.data import BATCH, BATCHES_PER_EPOCH, SIGMA_NOISE
from das.genotype import MAX_WIDTH, Genotype
from das.hparams import SAFE_NAME, HParams, shipped_preset
from das.ops import KERNEL_SIZE, NOISE_SIGMA, WIDTH
from das.utils import MAX_SEED, UserError, int_in, is_number, short_repr
from das.vocab import FORMATIONS, METHODS, OP_SETS, SPACES, is_search

STAGES = ("search", "train")
# A stage's result.json holds its per-epoch history (a cell search with all ops: about 1.6 KB an
# epoch); 10,000 epochs keep every result file far below the size a reader accepts
# (das.utils.MAX_FILE_BYTES; tests/test_hostile.py checks the arithmetic).
MAX_EPOCHS = 10_000
MAX_CANDIDATES = 20  # random search's architectures; each candidate's history is in its trial's result.json


# ---------------------------------------------------------------------------- the settings table
@dataclass(frozen=True)
class Setting:
    """One setting of a trial.

    type/default/choices/bounds: its values; `code`: the folder-name token (`-<code><value>`);
    `comparable`: trials of different methods are compared only where this setting agrees (a
    search's own setting, such as its order, does not separate it from the baselines);
    `applies(fields) -> bool`: whether the setting can change a trial of these fields (else it is
    held at its default); `evaluation_only`: changes the reported numbers, not the training;
    `always_written`: part of every stored specification since schema 2 (others only when set);
    `reading`: an open detail of the paper (docs/readings.md)."""

    name: str
    type: type
    default: object
    help: str
    code: str
    choices: tuple | None = None
    bounds: tuple | None = None
    comparable: bool = True
    applies: Callable[[dict], bool] | None = None
    evaluation_only: bool = False
    always_written: bool = False
    reading: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def column(self) -> str:
        """Its column in trials.csv."""
        return self.name

    def check(self, value):
        """The value, checked (an int for an int setting, a finite float for a float one); raises UserError."""
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserError(f"{self.flag} must be an integer, got {short_repr(value)}")
        elif self.type is float:
            if not is_number(value):
                raise UserError(f"{self.flag} must be a finite number, got {short_repr(value)}")
            value = float(value)
        elif not isinstance(value, str):
            raise UserError(f"{self.flag} must be one of {list(self.choices)}, got {short_repr(value)}")
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{self.flag} must be one of {list(self.choices)}, got {short_repr(value)}")
        if self.bounds is not None and not self.bounds[0] <= value <= self.bounds[1]:
            lo, hi = self.bounds
            raise UserError(f"{self.flag} must be in {lo:g}..{hi:g}, got {short_repr(value)}")
        return value

    def token(self, value) -> str:
        return f"{self.code}{value:g}" if isinstance(value, float) else f"{self.code}{value}"


def _ops_have(op):
    """The trial can run `op`: its op set holds it, and its method is not one that puts another op
    at every layer (grad-only never runs the noise op, whatever the op set)."""
    def applies(f) -> bool:
        uniform = METHODS[f["method"]].uniform_op
        return op in OP_SETS[f["ops"]].ops and uniform in (None, op)
    applies.op = op  # a setting of one op: a figure that pools the op sets pools its values too
    return applies


def _search(f) -> bool:
    return is_search(f["method"])


def _cell(f) -> bool:
    return f["space"] == "cell"


SETTINGS: list[Setting] = [
    Setting("epochs", int, 50, "epochs of every stage (search and training)", "e", bounds=(1, MAX_EPOCHS),
            always_written=True),
    Setting("order", int, 1, "1: first-order DAS, 2: unrolled second order (a search's setting)", "o",
            choices=(1, 2), comparable=False, applies=_search, always_written=True),
    Setting("width", int, WIDTH, "channels C of the 2-layer CNN", "w", bounds=(1, MAX_WIDTH), always_written=True),
    Setting("batches_per_epoch", int, BATCHES_PER_EPOCH, "batches per epoch", "b", bounds=(1, 100_000),
            always_written=True),
    Setting("batch_size", int, BATCH, "batch size", "bs", bounds=(2, 65_536), always_written=True),
    Setting("sigma_n", float, SIGMA_NOISE, "measurement noise sigma_n (0.1: the calibrated reading; 0.01 is the "
            "paper's text)", "sn", bounds=(0, 1000), always_written=True, reading=True),
    Setting("noise_sigma", float, NOISE_SIGMA, "sigma of the harmful noise op (paper Table 5: 0.10)", "ns",
            bounds=(0, 1000),
            applies=_ops_have("noise"), always_written=True, reading=True),
    Setting("theta_optimizer", str, "adam", "optimizer of the operations' weights theta: adam, sgd (plain "
            "gradient descent at param_lr) or momentum (SGD with momentum 0.9); the paper names none", "theta",
            choices=("adam", "sgd", "momentum"), reading=True),
    Setting("residual", str, "on", "the residual branch around the body of either space: output u0 + body(u0) "
            "(on) or body(u0) (off; the paper's Fig. 2 draws none for the cell space)", "res", choices=("on", "off"),
            reading=True),
    Setting("psnr", str, "sample", "how PSNR averages over the evaluation set: mean of per-sample PSNRs (sample), "
            "PSNR of the pooled mean squared error (pooled), or mean over batches of 128 of each batch's PSNR "
            "(batch)", "psnr", choices=("sample", "pooled", "batch"), evaluation_only=True, reading=True),
    Setting("roll", str, "all", "the roll op: torch.roll by 1 along every dimension, batch included (all), "
            "torch.roll(u, 1) of the flattened batch (flat), or along the signal only (signal)", "roll",
            choices=("all", "flat", "signal"), applies=_ops_have("roll"), reading=True),
    Setting("kernel_size", int, KERNEL_SIZE, "kernel size of both convolutions of the 2-layer CNN (odd)", "k",
            choices=(1, 3, 5, 7, 9), reading=True),
    Setting("cell_output", str, "last2", "the cell's output: a 1x1 convolution of the last two states "
            "(last2), a 3-tap convolution of them (last2-k3), or a 1x1 convolution of all five states, as "
            "DARTS concatenates every intermediate node (all)", "cellout", choices=("last2", "last2-k3", "all"),
            applies=_cell, reading=True),
    Setting("cell_sum", str, "sum", "how a cell state adds its incoming edges: their sum (sum) or their mean over "
            "the edges the space allows (mean)", "cellsum", choices=("sum", "mean"), applies=_cell, reading=True),
]


def setting(name: str) -> Setting:
    for s in SETTINGS:
        if s.name == name:
            return s
    raise KeyError(name)


def setting_names() -> tuple:
    return tuple(s.name for s in SETTINGS)


def defaults() -> dict:
    return {s.name: s.default for s in SETTINGS}


# ---------------------------------------------------------------------------- names
def check_choice(value, choices, what):
    if not isinstance(value, str) or value not in choices:
        raise UserError(f"unknown {what} {short_repr(value)}; choose one of {list(choices)}")


def check_name(name, what="preset name") -> str:
    """A name that becomes a folder: no separators, no `..`, not empty, not absolute."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or name in (".", ".."):
        raise UserError(f"{what} {short_repr(name)} cannot name a folder; use letters, digits and . _ + - "
                        "(at most 64, starting with a letter or digit)")
    return name


def digest(obj, n=6) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


def bare_genotype(g) -> dict:
    """A genotype's architecture, without the alphas it came from."""
    d = g.to_dict() if isinstance(g, Genotype) else dict(g)
    return {k: v for k, v in d.items() if k != "alphas"}


# ---------------------------------------------------------------------------- the specification
HEAD = ("space", "data", "ops", "method", "preset", "hparams", "seed", "stage")
TAIL = ("candidates", "genotype", "retrain_seed", "retrain_epochs")


def field_names() -> tuple:
    """Every field of a specification, in the order a stored specification lists them."""
    return HEAD + setting_names() + TAIL


class TrialSpec:
    """Everything that can change a trial's numbers; immutable. `stage` is "search" for the search of
    a search method (das, das-single), "train" for everything trained from scratch (a baseline, a
    genotype file, or the retrain of a searched genotype, which carries `genotype` and
    `retrain_seed`). Settings are attributes (`spec.epochs`), defaults from `SETTINGS`."""

    __slots__ = ("_v",)

    def __init__(self, space, data, ops, method, preset, hparams, seed, stage="search", candidates=None,
                 genotype=None, retrain_seed=None, retrain_epochs=None, **settings):
        known = setting_names()
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise UserError(f"unknown specification fields {short_repr(unknown, 200)}")
        v = dict(space=space, data=data, ops=ops, method=method, preset=preset, hparams=hparams, seed=seed,
                 stage=stage)
        for s in SETTINGS:
            v[s.name] = settings.get(s.name, s.default)
        v.update(candidates=candidates, genotype=genotype, retrain_seed=retrain_seed, retrain_epochs=retrain_epochs)
        object.__setattr__(self, "_v", v)
        self._check()
        for s in SETTINGS:  # a setting that cannot change this trial is held at its default: one trial, one folder
            v[s.name] = s.check(v[s.name])
            if s.applies is not None and not s.applies(v):
                v[s.name] = s.default

    def __getattr__(self, name):
        if name == "_v":
            raise AttributeError(name)
        try:
            return self._v[name]
        except KeyError:
            raise AttributeError(f"TrialSpec has no field {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("a TrialSpec is immutable; use .replace(...)")

    def __eq__(self, other):
        return isinstance(other, TrialSpec) and self.to_dict() == other.to_dict()

    __hash__ = None

    def __repr__(self):
        return f"TrialSpec({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items() if k != 'hparams')})"

    def __reduce__(self):
        return (_from_plain, (self.to_dict(),))

    # -------------------------------------------------------------- building and checking
    def _check(self):
        v = self._v
        check_choice(v["space"], SPACES, "space")
        check_choice(v["data"], FORMATIONS, "data formation")
        check_choice(v["ops"], OP_SETS, "op set")
        check_choice(v["method"], METHODS, "method")
        check_choice(v["stage"], STAGES, "stage")
        check_name(v["preset"])
        method = METHODS[v["method"]]
        if not int_in(v["seed"], 0, MAX_SEED):
            raise UserError(f"seed must be in 0..{MAX_SEED} (an integer), got {short_repr(v['seed'])}")
        if v["space"] not in method.spaces:
            shown = " or ".join(SPACES[s].short or s for s in method.spaces)
            raise UserError(f"{v['method']} is defined for the {shown} space; use --space {method.spaces[0]}")
        if method.frozen_weights and v["order"] != 1:
            raise UserError(f"{v['method']} searches alpha over frozen weights, so there is no unrolled step; "
                            "use --order 1")
        if method.candidates is not None:
            if not int_in(v["candidates"], 1, MAX_CANDIDATES):
                raise UserError(f"--candidates must be in 1..{MAX_CANDIDATES}, got {short_repr(v['candidates'])}")
        elif v["candidates"] is not None:
            raise UserError(f"--candidates applies to {', '.join(m for m in METHODS if METHODS[m].candidates)} only")
        if v["stage"] == "search" and method.kind != "search":
            raise UserError(f"method {v['method']} has no search stage")
        retrain = v["stage"] == "train" and (method.kind == "search" or method.architectures is None)
        if retrain and (v["genotype"] is None or v["retrain_seed"] is None):
            raise UserError(f"a retrain of a {v['method']} genotype needs the genotype and a retrain seed")
        if not retrain and (v["genotype"], v["retrain_seed"], v["retrain_epochs"]) != (None, None, None):
            raise UserError(f"a {v['stage']} of {v['method']} takes no genotype, retrain seed or retrain epochs")
        if v["retrain_seed"] is not None and not int_in(v["retrain_seed"], 0, MAX_SEED):
            raise UserError(f"retrain seed must be in 0..{MAX_SEED}, got {short_repr(v['retrain_seed'])}")
        if v["retrain_epochs"] is not None and not int_in(v["retrain_epochs"], 1, MAX_EPOCHS):
            raise UserError(f"retrain epochs must be in 1..{MAX_EPOCHS}, got {short_repr(v['retrain_epochs'])}")
        if v["genotype"] is not None:
            g = Genotype.from_dict(v["genotype"], "the specification's genotype")
            have = (g.space, g.ops, g.data, g.width)
            want = (v["space"], v["ops"], v["data"], v["width"])
            if have != want or g.alphas is not None:
                raise UserError(f"the specification's genotype is for space/ops/data/width {have}, not {want}, "
                                "or carries alphas")
        HParams.from_dict(v["hparams"], v["preset"], "hyperparameters")  # values checked once, here

    @classmethod
    def make(cls, *, hp: HParams, **kw) -> "TrialSpec":
        """A specification from a preset and flags: the stage follows the method, and random search
        gets its default number of candidates (a shared CLI default means nothing elsewhere)."""
        method = METHODS.get(kw.get("method"))
        if method is not None:
            if method.candidates is not None and kw.get("candidates") is None:
                kw["candidates"] = method.candidates
            elif method.candidates is None:
                kw["candidates"] = None
        stage = kw.pop("stage", None) or ("search" if method is not None and method.kind == "search" else "train")
        return cls(preset=hp.name, hparams=hp.values(), stage=stage, **kw)

    def hp(self) -> HParams:
        return HParams.from_dict(self.hparams, self.preset, "hyperparameters")

    def to_dict(self) -> dict:
        """The stored form: every field, the later settings only where they differ from their default."""
        v = self._v
        out = {k: v[k] for k in HEAD}
        for s in SETTINGS:
            if s.always_written or v[s.name] != s.default:
                out[s.name] = v[s.name]
        out.update({k: v[k] for k in TAIL})
        return out

    def settings(self) -> dict:
        """Every setting's value (defaults included)."""
        return {s.name: self._v[s.name] for s in SETTINGS}

    @classmethod
    def from_dict(cls, d, source="specification") -> "TrialSpec":
        if not isinstance(d, dict):
            raise UserError(f"{source}: the trial specification is not a JSON object")
        unknown = set(d) - set(field_names())
        if unknown:
            raise UserError(f"{source}: unknown specification fields {short_repr(sorted(unknown), 200)}")
        missing = [k for k in ("space", "data", "ops", "method", "preset", "hparams", "seed") if k not in d]
        if missing:
            raise UserError(f"{source}: incomplete trial specification (missing {', '.join(missing)})")
        try:
            return cls(**d)
        except UserError as exc:
            raise UserError(f"{source}: {exc}") from None

    def replace(self, **kw) -> "TrialSpec":
        v = dict(self._v)
        v.update(kw)
        return TrialSpec(**v)

    # -------------------------------------------------------------- identity
    def group(self) -> str:
        """Everything but the seeds (and the per-seed genotype): trials of one group may be pooled."""
        d = self.to_dict()
        for k in ("seed", "retrain_seed", "stage"):  # a diverged search counts in its retrains' group
            d.pop(k)
        if d["retrain_epochs"] == self.epochs:
            d["retrain_epochs"] = None
        if METHODS[self.method].architectures is not None or is_search(self.method):
            d.pop("genotype")
        return json.dumps(d, sort_keys=True)

    def same_as(self, stored) -> bool:
        """Whether a stored specification (a dict from a file) is this one."""
        return not self.differences(stored)

    def differences(self, other: "TrialSpec | dict") -> list[str]:
        """The fields in which another specification differs. A stored one is read as a TrialSpec
        first (a later setting it lacks holds its default; a setting that cannot change its trial is
        held at its default, as it is here), so a record of an earlier version is the same trial."""
        a = self.to_dict()
        b = other.to_dict() if isinstance(other, TrialSpec) else other
        if not isinstance(b, dict):
            return ["(not a specification)"]
        try:
            b = TrialSpec.from_dict(b).to_dict()
        except (UserError, TypeError, RecursionError):
            pass  # not a valid specification: compared field by field as it is
        a_full, b_full = {**defaults(), **a}, {**defaults(), **b}
        out = []
        for k in sorted(set(a_full) | set(b_full)):
            x, y = a_full.get(k), b_full.get(k)
            if k == "hparams" and isinstance(x, dict) and isinstance(y, dict):
                out += [f"hparams.{h}" for h in sorted(set(x) | set(y)) if x.get(h) != y.get(h)]
            elif x != y:
                out.append(k)
        return out

    def search_spec(self) -> "TrialSpec":
        """The search a retrain of a searched genotype belongs to."""
        return self.replace(stage="search", genotype=None, retrain_seed=None, retrain_epochs=None)

    def train_epochs(self) -> int:
        return self.retrain_epochs or self.epochs

    def train_seed(self) -> int:
        return self.seed if self.retrain_seed is None else self.retrain_seed

    def _suffix(self) -> str:
        parts = [s.token(self._v[s.name]) for s in SETTINGS if self._v[s.name] != s.default]
        method = METHODS[self.method]
        if method.candidates is not None and self.candidates != method.candidates:
            parts.append(f"c{self.candidates}")
        shipped = shipped_preset(self.preset)
        if shipped is None or shipped.values() != self.hparams:
            parts.append("h" + digest(self.hparams))
        return "".join("-" + p for p in parts)

    def label(self) -> str:
        """The preset name plus every non-default setting: a readable name of the group."""
        extra = self._suffix().lstrip("-")
        if self.retrain_epochs is not None and self.retrain_epochs != self.epochs:
            extra = (extra + "-" if extra else "") + f"re{self.retrain_epochs}"
        return f"{self.preset}_{extra}" if extra else self.preset  # safe in file names too

    def folder(self, root) -> Path:
        base = Path(root) / self.space / self.data / self.ops / self.method / self.preset
        if self.stage == "train" and is_search(self.method):
            return self.search_spec().folder(root) / self._retrain_name()
        if self.genotype is not None:
            return base / f"g{digest(bare_genotype(self.genotype), 8)}{self._suffix()}" / self._retrain_name()
        return base / f"seed{self.seed}{self._suffix()}"

    def _retrain_name(self) -> str:
        e = self.retrain_epochs
        return f"retrain-seed{self.retrain_seed}" + (f"-e{e}" if e is not None and e != self.epochs else "")

    def describe(self) -> str:
        s = f"{self.space}/{self.data}/{self.ops}/{self.method}/{self.preset} seed {self.seed}"
        return s + (f" retrain seed {self.retrain_seed}" if self.retrain_seed is not None else "")

    def net_config(self):
        """The network settings of this trial (das.model.NetConfig)."""
        from das.model import NetConfig

        return NetConfig(**{k: self._v[k] for k in NetConfig.FIELDS})


def _from_plain(d: dict) -> TrialSpec:
    return TrialSpec(**d)


def retrain_spec(search: TrialSpec, genotype, retrain_seed: int | None = None,
                 retrain_epochs: int | None = None) -> TrialSpec:
    """The retrain of a searched genotype: the search's settings, a fresh init from the retrain seed."""
    if retrain_epochs == search.epochs:
        retrain_epochs = None  # the search's own epochs, given or not: one trial, one folder
    return search.replace(stage="train", genotype=bare_genotype(genotype),
                          retrain_seed=search.seed if retrain_seed is None else retrain_seed,
                          retrain_epochs=retrain_epochs)


def batch_key(spec: TrialSpec) -> str:
    """Trials with the same key run as one batch: everything but the seeds and the architecture
    (a search's method stays: das-single keeps its weights frozen)."""
    d = spec.to_dict()
    for k in ("seed", "retrain_seed", "genotype", "method", "candidates"):
        d.pop(k)
    if spec.stage == "search":
        d["method"] = spec.method
    return json.dumps(d, sort_keys=True)

