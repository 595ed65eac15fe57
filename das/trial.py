"""A trial: its specification, its folder, its result schema, and every stage that fills it.

One `TrialSpec` holds every setting that can change a trial's numbers (space, data, op set,
method, the hyperparameter *values*, seed, epochs, order, width, batches per epoch, batch size,
measurement noise sigma_n, noise-op sigma, and for a retrain the genotype and the retrain seed).
It is written into args.json and result.json beside provenance that does not change numbers
(package version, git commit, host, threads, start and end time, schema version).

The folder is readable and unique per specification:

    results/<space>/<data>/<ops>/<method>/<preset>/seed<N>[-e10-o2-w32-b4-bs64-sn0.1-ns0.2-c3-h1a2b3c]
    results/.../das/H1/seed3/retrain-seed<R>[-e10]          a retrain of the searched genotype
    results/.../genotype/H1/g<digest>/retrain-seed<R>       a retrain of a genotype file from elsewhere

where a suffix appears only for a setting that differs from SPEC's default, and `-h<digest>` when
the hyperparameter values are not those of the shipped preset of that name. search.py, retrain.py,
bohb.py, analyze.py and the sweep runner all go through this module.
"""
from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

import das
from das import model as model_lib
from das.data import FORMATIONS
from das.genotype import MAX_WIDTH, SPACES, Genotype
from das.hparams import SAFE_NAME, HParams, shipped_preset
from das.ops import OP_SETS
from das.diagnostics import alpha_diagnostics
from das.train import Trainer, evaluate, one_hot_psnr, save_checkpoints
from das.utils import (MAX_SEED, Log, UserError, is_number, load_checkpoint, read_json, save_torch, short_repr,
                       versions, write_json)

SCHEMA = 2

# ---------------------------------------------------------------------------- names, defined once
OPSETS = tuple(OP_SETS)
SEARCH_METHODS = ("das", "das-single")
BASELINES = ("grad-only", "net-only", "random", "random-search")
METHODS = SEARCH_METHODS + BASELINES + ("genotype",)


class Status:
    RUNNING = "running"      # a process is (or was, if killed) working on it
    SEARCHED = "searched"    # a search finished; its genotype awaits retraining
    COMPLETE = "complete"    # every number of the trial is in result.json
    DIVERGED = "diverged"    # a loss or metric became NaN or infinite; `error` says where
    FAILED = "failed"        # an exception; `error` says which

    FINISHED = (SEARCHED, COMPLETE, DIVERGED)
    ALL = (RUNNING, SEARCHED, COMPLETE, DIVERGED, FAILED)


RESULT, ARGS, CHECKPOINT = "result.json", "args.json", "checkpoint.pt"
DEFAULTS = {"epochs": 50, "order": 1, "width": 16, "batches_per_epoch": 19, "batch_size": 128,
            "sigma_n": 0.1, "noise_sigma": 0.1}  # sigma_n: das.data.SIGMA_NOISE (calibrated, README)
RANDOM_SEARCH_CANDIDATES = 5
# readable folder-name tokens of the settings, in this order
SUFFIX = (("epochs", "e"), ("order", "o"), ("width", "w"), ("batches_per_epoch", "b"), ("batch_size", "bs"),
          ("sigma_n", "sn"), ("noise_sigma", "ns"))
ARCH_STREAM = 1_000_000  # random architectures come from their own stream, apart from the training seed


def check_choice(value, choices, what):
    if not isinstance(value, str) or value not in choices:
        raise UserError(f"unknown {what} {short_repr(value)}; choose one of {list(choices)}")


def check_name(name, what="preset name") -> str:
    """A name that becomes a folder: no separators, no `..`, not empty, not absolute."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or name in (".", ".."):
        raise UserError(f"{what} {short_repr(name)} cannot name a folder; use letters, digits and . _ + - "
                        "(at most 64, starting with a letter or digit)")
    return name


def _int_in(v, lo, hi) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _digest(obj, n=6) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------- the specification
@dataclass(frozen=True)
class TrialSpec:
    """Everything that can change a trial's numbers. `stage` is "search" for the DAS search of
    das / das-single, "train" for everything trained from scratch (a baseline, a genotype file, or
    the retrain of a searched genotype, which carries `genotype` and `retrain_seed`)."""

    space: str
    data: str
    ops: str
    method: str
    preset: str
    hparams: dict
    seed: int
    stage: str = "search"
    epochs: int = DEFAULTS["epochs"]
    order: int = DEFAULTS["order"]
    width: int = DEFAULTS["width"]
    batches_per_epoch: int = DEFAULTS["batches_per_epoch"]
    batch_size: int = DEFAULTS["batch_size"]
    sigma_n: float = DEFAULTS["sigma_n"]
    noise_sigma: float = DEFAULTS["noise_sigma"]
    candidates: int | None = None          # random-search: architectures tried
    genotype: dict | None = field(default=None)   # a retrain: the architecture (no alphas)
    retrain_seed: int | None = None        # a retrain: fresh init and data streams
    retrain_epochs: int | None = None      # a retrain of a search: its epochs (default: the search's)

    # -------------------------------------------------------------- building and checking
    def __post_init__(self):
        check_choice(self.space, SPACES, "space")
        check_choice(self.data, FORMATIONS, "data formation")
        check_choice(self.ops, OPSETS, "op set")
        check_choice(self.method, METHODS, "method")
        check_choice(self.stage, ("search", "train"), "stage")
        check_name(self.preset)
        for name in ("seed", "epochs", "order", "width", "batches_per_epoch", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise UserError(f"{name.replace('_', '-')} must be an integer, got {short_repr(v)}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"seed must be in 0..{MAX_SEED}, got {short_repr(self.seed)}")
        for name, lo, hi in (("epochs", 1, 100_000), ("width", 1, MAX_WIDTH), ("batches_per_epoch", 1, 100_000),
                             ("batch_size", 2, 65_536)):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise UserError(f"--{name.replace('_', '-')} must be in {lo}..{hi}, got {short_repr(v)}")
        if self.order not in (1, 2):
            raise UserError(f"--order must be 1 or 2, got {self.order}")
        for name in ("sigma_n", "noise_sigma"):
            v = getattr(self, name)
            if not is_number(v) or not 0 <= v <= 1000:
                raise UserError(f"--{name.replace('_', '-')} must be a finite number in 0..1000, got {short_repr(v)}")
        if self.method == "das-single" and self.space != "seq":
            raise UserError("das-single is defined for the sequential space (paper 5.4); use --space seq")
        if self.method == "das-single" and self.order != 1:
            raise UserError("das-single searches alpha over frozen weights, so there is no unrolled step; "
                            "use --order 1")
        if self.method == "random-search":
            if not _int_in(self.candidates, 1, 1000):
                raise UserError(f"--candidates must be in 1..1000, got {short_repr(self.candidates)}")
        elif self.candidates is not None:
            raise UserError("--candidates applies to random-search only")
        if self.stage == "search" and self.method not in SEARCH_METHODS:
            raise UserError(f"method {self.method} has no search stage")
        retrain = self.stage == "train" and (self.method in SEARCH_METHODS or self.method == "genotype")
        if retrain and (self.genotype is None or self.retrain_seed is None):
            raise UserError(f"a retrain of a {self.method} genotype needs the genotype and a retrain seed")
        if not retrain and (self.genotype, self.retrain_seed, self.retrain_epochs) != (None, None, None):
            raise UserError(f"a {self.stage} of {self.method} takes no genotype, retrain seed or retrain epochs")
        if self.retrain_seed is not None and not _int_in(self.retrain_seed, 0, MAX_SEED):
            raise UserError(f"retrain seed must be in 0..{MAX_SEED}, got {short_repr(self.retrain_seed)}")
        if self.retrain_epochs is not None and not _int_in(self.retrain_epochs, 1, 100_000):
            raise UserError(f"retrain epochs must be in 1..100000, got {short_repr(self.retrain_epochs)}")
        if self.genotype is not None:
            g = Genotype.from_dict(self.genotype, "the specification's genotype")
            have = (g.space, g.ops, g.data, g.width)
            if have != (self.space, self.ops, self.data, self.width) or g.alphas is not None:
                raise UserError(f"the specification's genotype is for space/ops/data/width {have}, not "
                                f"{(self.space, self.ops, self.data, self.width)}, or carries alphas")
        HParams.from_dict(self.hparams, self.preset, "hyperparameters")  # values checked once, here

    @classmethod
    def make(cls, *, hp: HParams, **kw) -> "TrialSpec":
        if kw.get("method") == "random-search" and kw.get("candidates") is None:
            kw["candidates"] = RANDOM_SEARCH_CANDIDATES
        if kw.get("method") not in ("random-search", None) and kw.get("candidates") == RANDOM_SEARCH_CANDIDATES:
            kw["candidates"] = None  # a shared CLI default that means nothing here
        stage = kw.pop("stage", None) or ("search" if kw.get("method") in SEARCH_METHODS else "train")
        return cls(preset=hp.name, hparams=hp.values(), stage=stage, **kw)

    def hp(self) -> HParams:
        return HParams.from_dict(self.hparams, self.preset, "hyperparameters")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d, source="specification") -> "TrialSpec":
        if not isinstance(d, dict):
            raise UserError(f"{source}: the trial specification is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UserError(f"{source}: unknown specification fields {short_repr(sorted(unknown), 200)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise UserError(f"{source}: incomplete trial specification ({exc})") from None

    def replace(self, **kw) -> "TrialSpec":
        return dataclasses.replace(self, **kw)

    # -------------------------------------------------------------- identity
    def group(self) -> str:
        """Everything but the seeds (and the per-seed genotype): trials of one group may be pooled."""
        d = self.to_dict()
        for k in ("seed", "retrain_seed", "stage"):  # a diverged search counts in its retrains' group
            d.pop(k)
        if d["retrain_epochs"] == self.epochs:
            d["retrain_epochs"] = None
        if self.method != "genotype":
            d.pop("genotype")
        return json.dumps(d, sort_keys=True)

    def differences(self, other: "TrialSpec | dict") -> list[str]:
        a, b = self.to_dict(), other if isinstance(other, dict) else other.to_dict()
        out = []
        for k in sorted(set(a) | set(b)):
            if k == "hparams" and isinstance(b.get(k), dict) and isinstance(a.get(k), dict):
                out += [f"hparams.{h}" for h in sorted(set(a[k]) | set(b[k])) if a[k].get(h) != b[k].get(h)]
            elif a.get(k) != b.get(k):
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
        parts = [f"{tok}{_fmt(getattr(self, name))}" for name, tok in SUFFIX if getattr(self, name) != DEFAULTS[name]]
        if self.method == "random-search" and self.candidates != RANDOM_SEARCH_CANDIDATES:
            parts.append(f"c{self.candidates}")
        shipped = shipped_preset(self.preset)
        if shipped is None or shipped.values() != self.hparams:
            parts.append("h" + _digest(self.hparams))
        return "".join("-" + p for p in parts)

    def label(self) -> str:
        """The preset name plus every non-default setting: a readable name of the group."""
        extra = self._suffix().lstrip("-")
        if self.retrain_epochs is not None and self.retrain_epochs != self.epochs:
            extra = (extra + "-" if extra else "") + f"re{self.retrain_epochs}"
        return f"{self.preset}_{extra}" if extra else self.preset  # safe in file names too

    def folder(self, root) -> Path:
        base = Path(root) / self.space / self.data / self.ops / self.method / self.preset
        if self.method == "genotype":
            g = {k: v for k, v in self.genotype.items() if k != "alphas"}
            return base / f"g{_digest(g, 8)}{self._suffix()}" / self._retrain_name()
        if self.stage == "train" and self.method in SEARCH_METHODS:
            return self.search_spec().folder(root) / self._retrain_name()
        return base / f"seed{self.seed}{self._suffix()}"

    def _retrain_name(self) -> str:
        e = self.retrain_epochs
        return f"retrain-seed{self.retrain_seed}" + (f"-e{e}" if e is not None and e != self.epochs else "")

    def describe(self) -> str:
        s = f"{self.space}/{self.data}/{self.ops}/{self.method}/{self.preset} seed {self.seed}"
        return s + (f" retrain seed {self.retrain_seed}" if self.retrain_seed is not None else "")


# ---------------------------------------------------------------------------- provenance
@functools.lru_cache(maxsize=None)
def git_commit() -> str | None:
    """The commit of the code this process loaded: read once, at import (a commit made while a
    long sweep runs must not be recorded for trials that run the code loaded before it)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        p = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return p.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


git_commit()


def provenance(device) -> dict:
    return {"schema": SCHEMA, "package": das.__version__, "git_commit": git_commit(), **versions(),
            "device": str(device), "threads": torch.get_num_threads(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "finished": None}


# ---------------------------------------------------------------------------- folders and locks
# A trial's lock is a file `.lock` in its folder, made by an exclusive create (O_CREAT|O_EXCL, which
# NFS v3+ and every local filesystem do atomically; fcntl/flock locks are unreliable over NFS). It
# holds its owner (host, pid, start time, a random token); a thread of the owning process touches
# its mtime every LOCK_HEARTBEAT seconds while the trial runs. A lock is stale, and the next taker
# may take it over, when its heartbeat is older than LOCK_STALE seconds, or when its owner ran on
# this host and that pid is gone (killed with -9). Take-over renames the stale file aside (atomic,
# so of two takers only one wins) and creates a fresh one.
LOCK = ".lock"
LOCK_HEARTBEAT = float(os.environ.get("DAS_LOCK_HEARTBEAT", 10))
LOCK_STALE = float(os.environ.get("DAS_LOCK_STALE", 120))


class TrialLocked(UserError):
    """Another live process holds the trial: a sweep skips it for now and retries it later."""

    def __init__(self, path, owner: dict):
        self.path, self.owner = Path(path), owner
        super().__init__(f"{path}: another process is running this trial ({_owner_text(owner)}); wait for it or "
                         "stop it first")


_locks: dict[str, tuple[Path, str]] = {}   # resolved folder -> (lock file, our token)
_locks_guard = threading.Lock()
_heartbeat: threading.Thread | None = None


def _owner_text(owner: dict) -> str:
    return f"host {owner.get('host')} pid {owner.get('pid')} since {owner.get('since')}"


def _read_owner(lock: Path) -> dict | None:
    """The lock's owner, {} for an unreadable or half-written one, None when there is no lock."""
    try:
        text = lock.read_text()
        mtime = lock.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        owner = json.loads(text)
    except ValueError:
        owner = {}
    owner = owner if isinstance(owner, dict) else {}
    owner["_mtime"] = mtime
    return owner


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, someone else's
    return True


def lock_is_stale(owner: dict, now: float | None = None) -> bool:
    """The stale rule: heartbeat older than LOCK_STALE s, or the owner was on this host and its pid is gone."""
    now = time.time() if now is None else now
    if now - owner.get("_mtime", 0) > LOCK_STALE:
        return True
    if owner.get("host") == socket.gethostname() and "pid" in owner:
        return not _pid_alive(owner["pid"])
    return False


def _beat():
    while True:
        time.sleep(LOCK_HEARTBEAT)
        with _locks_guard:
            held = list(_locks.values())
        for lock, _ in held:
            try:
                os.utime(lock)
            except OSError:
                pass  # released meanwhile, or taken over after a long pause; the owner finds out at unlock


def _start_heartbeat():
    global _heartbeat
    if _heartbeat is None or not _heartbeat.is_alive():
        _heartbeat = threading.Thread(target=_beat, name="das-lock-heartbeat", daemon=True)
        _heartbeat.start()


def lock_trial(path: Path) -> None:
    """Hold the trial folder's lock until released (or this process ends), so two processes, on one
    machine or on two sharing the results tree, never write one trial at once. Raises TrialLocked
    when a live owner holds it."""
    path = Path(path)
    key = str(path.resolve())
    if key in _locks:
        return
    lock = path / LOCK
    for _ in range(5):
        token = uuid.uuid4().hex
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _read_owner(lock)
            if owner is None:
                continue  # released between our two looks
            if not lock_is_stale(owner):
                raise TrialLocked(path, owner) from None
            _take_over(lock, owner)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "token": token}, f)
        with _locks_guard:
            _locks[key] = (lock, token)
        _start_heartbeat()
        return
    raise TrialLocked(path, _read_owner(lock) or {})


def _take_over(lock: Path, stale: dict) -> None:
    """Move a stale lock aside. Of two processes taking over at once only one renames the stale file;
    if what we renamed turns out to be a fresh lock (someone took over first), it is put back."""
    aside = lock.with_name(f"{LOCK}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    moved = _read_owner(aside) or {}
    if moved.get("token") != stale.get("token"):
        try:
            os.link(aside, lock)  # back, unless a third process made one meanwhile
        except OSError:
            pass
    aside.unlink(missing_ok=True)


def _release(key: str) -> None:
    with _locks_guard:
        lock, token = _locks.pop(key, (None, None))
    if lock is None:
        return
    owner = _read_owner(lock) or {}
    if owner.get("token") == token:  # never remove a lock another process took over
        lock.unlink(missing_ok=True)


def unlock_trial(path: Path) -> None:
    _release(str(Path(path).resolve()))


def unlock_under(root) -> None:
    """Release the trials this process holds under root (a BOHB worker thread's own evaluation, or a
    sweep task's retrains)."""
    prefix = str(Path(root).resolve()) + os.sep
    for key in [k for k in list(_locks) if k.startswith(prefix)]:
        _release(key)


def unlock_all() -> None:
    for key in list(_locks):
        _release(key)


atexit.register(unlock_all)  # a normal exit, or an exception that ends the script, leaves no lock behind
os.register_at_fork(after_in_child=_locks.clear)  # a forked child holds none of its parent's locks


def read_result(path: Path) -> dict | None:
    """The checked result.json of a trial folder, or None when there is none."""
    f = Path(path) / RESULT
    if not (f.exists() or f.is_symlink()):
        return None
    fix = f"move the folder {path} aside or rerun with --overwrite"
    r = read_json(f, "result file", fix)
    problem = result_problem(r)
    if problem:
        raise UserError(f"{f}: not a result file of this project ({problem}); {fix}")
    return r


def result_problem(r: dict) -> str | None:
    """What is wrong with a result record's fields (types, ranges, what its status promises), or None.
    The specification itself is checked by TrialSpec.from_dict."""
    if not isinstance(r.get("spec"), dict):
        return "no trial specification"
    status, stage = r.get("status"), r["spec"].get("stage")
    if not isinstance(status, str) or status not in Status.ALL:
        return f"status {short_repr(status)} is not one of {list(Status.ALL)}"
    for k in ("one_shot_psnr", "architecture_psnr"):
        if r.get(k) is not None and not is_number(r[k]):
            return f"{k} is {short_repr(r[k])}, not a number"
    if status == Status.COMPLETE and stage == "train" and r.get("architecture_psnr") is None:
        return "a complete training without architecture_psnr"
    if status == Status.SEARCHED and (r.get("one_shot_psnr") is None or r.get("genotype") is None):
        return "a finished search without one_shot_psnr or genotype"
    for k in ("error", "role"):
        if r.get(k) is not None and not isinstance(r[k], str):
            return f"{k} is {short_repr(r[k])}, not a string"
    ws = r.get("wall_seconds")
    if ws is not None and not (isinstance(ws, dict) and all(is_number(v) for v in ws.values())):
        return f"wall_seconds is {short_repr(ws)}, not seconds per stage"
    problem = _genotype_problem(r.get("genotype"))
    if problem:
        return problem
    if r.get("alphas") is not None and _rect(r["alphas"]) != 2:
        return "alphas is not a table of numbers"
    problem = _history_problem(r.get("history"))
    if problem:
        return problem
    cands = r.get("candidates")
    if cands is not None:
        if not isinstance(cands, list) or not all(isinstance(c, dict) for c in cands):
            return f"candidates is {short_repr(cands)}, not a list of objects"
        for k, c in enumerate(cands):
            problem = _candidate_problem(c)
            if problem:
                return f"candidate {k}: {problem}"
    return None


def _candidate_problem(c: dict) -> str | None:
    status, psnr = c.get("status", Status.COMPLETE), c.get("architecture_psnr")
    if not isinstance(status, str) or status not in Status.ALL:
        return f"status {short_repr(status)} is not a status"
    if psnr is not None and not is_number(psnr):
        return f"architecture_psnr is {short_repr(psnr)}, not a number"
    if status == Status.COMPLETE and psnr is None:
        return "complete without architecture_psnr"
    if c.get("seconds") is not None and not is_number(c["seconds"]):
        return f"seconds is {short_repr(c['seconds'])}, not a number"
    if c.get("error") is not None and not isinstance(c["error"], str):
        return f"error is {short_repr(c['error'])}, not a string"
    return _genotype_problem(c.get("genotype")) or _history_problem(c.get("history"))


def _genotype_problem(g) -> str | None:
    """What is wrong with a recorded genotype, or None (also when there is none)."""
    if g is None:
        return None
    try:
        Genotype.from_dict(g, "genotype")
    except UserError as exc:
        return str(exc).split(";")[0]
    return None


def _history_problem(h) -> str | None:
    """A history is per-epoch lists of numbers (or null); `alphas*` entries are rectangular tables."""
    if h is None:
        return None
    if not isinstance(h, dict):
        return f"history is {short_repr(h)}, not an object"
    for k, v in h.items():
        if k.startswith("alphas"):
            if v is not None and _rect(v) is None:
                return f"history[{short_repr(k)}] is not a rectangular table of numbers"
        elif not (isinstance(v, list) and all(x is None or is_number(x) for x in v)):
            return f"history[{short_repr(k)}] is {short_repr(v)}, not a list of numbers"
    return None


def _rect(v) -> int | None:
    """The number of dimensions of v if it is a rectangular nested list of numbers (at most 4
    deep), else None."""
    shape = _shape(v, 0)
    return None if shape is None else len(shape)


def _shape(v, depth: int):
    if is_number(v):
        return ()
    if not isinstance(v, list) or depth >= 4:
        return None
    shapes = {_shape(x, depth + 1) for x in v}
    if len(shapes) > 1 or None in shapes:
        return None
    return (len(v),) + (shapes.pop() if shapes else ())


def stored_spec(path: Path) -> dict | None:
    """The specification recorded in a trial folder (result.json, else args.json), or None."""
    for name in (RESULT, ARGS):
        f = Path(path) / name
        if f.exists() or f.is_symlink():
            d = read_json(f, name, f"move the folder {path} aside or rerun with --overwrite")
            return d.get("spec") if isinstance(d.get("spec"), dict) else {}
    return None


def check_same_spec(spec: TrialSpec, path: Path) -> None:
    stored = stored_spec(path)
    if stored is None:
        return
    diff = spec.differences(stored)
    if diff:
        raise UserError(f"{path}: holds a trial of another specification (differs in {', '.join(diff)}); "
                        "pass the same settings to resume it, or --overwrite to replace it")


def check_resume_target(spec: TrialSpec, root) -> None:
    """--resume names a run to continue. When this specification has no folder yet but the same
    seed ran with other settings, the user most likely mistyped a flag: say which ones differ."""
    target = spec.folder(root)
    if (target / RESULT).exists() or (target / ARGS).exists():
        return
    parent = target.parent
    if not parent.is_dir() or spec.stage == "train" and spec.method in SEARCH_METHODS:
        return
    stem = target.name.split("-")[0]
    best = None
    for sibling in sorted(parent.iterdir()):
        if sibling == target or not (sibling.name == stem or sibling.name.startswith(stem + "-")):
            continue
        try:
            stored = stored_spec(sibling)
        except UserError:
            continue
        if stored:
            diff = spec.differences(stored)
            if best is None or len(diff) < len(best[1]):
                best = (sibling, diff)
    if best is not None:
        raise UserError(f"--resume: no run of these settings to continue; {best[0]} differs in "
                        f"{', '.join(best[1])}; pass its settings to resume it, or drop --resume to start "
                        "a new trial")


def prepare_folder(spec: TrialSpec, root, *, resume: bool, overwrite: bool) -> tuple[Path, bool]:
    """Make (or take over) the trial's folder, locked. Returns (folder, resuming)."""
    path = spec.folder(root)
    existing = [f for f in (RESULT, ARGS, CHECKPOINT) if (path / f).exists()]
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder; move it aside")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create the trial folder ({exc.strerror}); choose a writable --out") from None
    lock_trial(path)  # before anything is read or deleted
    if existing and overwrite:
        for child in path.iterdir():
            if child.name == LOCK or child.name.startswith(LOCK + ".stale-"):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        return path, False
    if existing and not resume:
        raise UserError(f"{path}: run folder already holds {', '.join(existing)}; pass --resume to continue it "
                        "or --overwrite to start again")
    if existing:
        check_same_spec(spec, path)
    return path, bool(existing)


# ---------------------------------------------------------------------------- records
def new_result(spec: TrialSpec, device, role: str | None = None) -> dict:
    """The result schema: spec, status, numbers, provenance. Flat copies of the main fields keep
    result.json readable on its own."""
    return {"schema": SCHEMA, "spec": spec.to_dict(), "status": Status.RUNNING,
            "space": spec.space, "data": spec.data, "ops": spec.ops, "method": spec.method,
            "preset": spec.preset, "seed": spec.seed, "retrain_seed": spec.retrain_seed,
            "one_shot_psnr": None, "architecture_psnr": None, "genotype": None, "alphas": None,
            "history": None, "wall_seconds": {}, "error": None, "role": role, "provenance": provenance(device)}


def _finish(result: dict, folder: Path, status: str, **fields) -> dict:
    result.update(status=status, **fields)
    result["provenance"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(folder / RESULT, result)
    return result


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def batch_key(spec: TrialSpec) -> str:
    """Trials with the same key run as one batch: everything but the seeds and the architecture."""
    d = spec.to_dict()
    for k in ("seed", "retrain_seed", "genotype", "method", "candidates"):
        d.pop(k)
    if spec.stage == "search":
        d["method"] = spec.method  # das-single keeps its weights frozen
    return json.dumps(d, sort_keys=True)


def _load_state(ckpt: Path, spec: TrialSpec, epochs: int):
    """A trial's epoch checkpoint, checked against its specification and epochs, or None."""
    if not ckpt.exists():
        return None
    fix = "rerun with --overwrite"
    state = load_checkpoint(ckpt, "epoch checkpoint", fix)
    if not isinstance(state.get("spec"), dict):
        raise UserError(f"{ckpt}: epoch checkpoint records no trial specification, so it cannot be checked "
                        f"against this trial; {fix}")
    if state["spec"] != spec.to_dict():
        diff = spec.differences(state["spec"])
        raise UserError(f"{ckpt}: checkpoint of another trial (differs in {', '.join(diff)[:200]}); {fix}")
    if not _int_in(state.get("epoch"), 1, epochs):
        raise UserError(f"{ckpt}: checkpoint is at epoch {short_repr(state.get('epoch'))}, not within this "
                        f"trial's 1..{epochs}; {fix}")
    return state


def _train_groups(jobs, epochs, build, *, device, log, desc, **trainer_kw):
    """Train jobs (dicts with seed, ckpt, spec, state) as batches of one start epoch each.

    build(jobs) -> model. Yields (jobs, model, trainer) after training each batch."""
    by_epoch: dict[int, list] = {}
    for j in jobs:
        by_epoch.setdefault(j["state"]["epoch"] if j["state"] else 0, []).append(j)
    for start, group in sorted(by_epoch.items()):
        model = build(group)
        trainer = Trainer(model, group[0]["spec"].hp(), group[0]["spec"].data, [j["seed"] for j in group], epochs,
                          device, log=log, desc=desc, **trainer_kw)
        if start:
            try:
                trainer.load_state_dicts([j["state"] for j in group])
            except Exception as exc:  # wrong shapes, keys or types: one line, not the state_dict's report
                raise UserError(f"{group[0]['ckpt']}: checkpoint does not fit this trial ({type(exc).__name__}); "
                                "rerun with --overwrite") from None
            log(f"resuming from epoch {start} ({len(group)} trial{'s' if len(group) > 1 else ''})")
        extra = [{"spec": j["spec"].to_dict()} for j in group]
        trainer.run(lambda tr: save_checkpoints(tr, [j["ckpt"] for j in group], extra))
        yield group, model, trainer


def _failing(jobs):
    """Context: an exception while training (bad input found late, such as a refused checkpoint, or
    a bug) marks every unfinished trial of the batch `failed` with its message rather than leaving
    it `running`, then propagates. An interrupt leaves them running, to be resumed."""
    class Guard:
        def __enter__(self):
            return self

        def __exit__(self, kind, exc, tb):
            if exc is None or not isinstance(exc, Exception):
                return False
            message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            for j in jobs:
                result = j.get("result")
                if result is not None and result.get("status") == Status.RUNNING:
                    _finish(result, j["folder"], Status.FAILED, error=message[:500])
            return False
    return Guard()


def _chunks(items, size):
    size = max(1, int(size or len(items) or 1))
    return [items[k:k + size] for k in range(0, len(items), size)]


def _batch_log(specs, folders, quiet):
    """Log lines of a batch go to every trial's log.txt (and once to stderr); a line about one
    trial (folder=...) to its own log.txt only."""
    logs = {Path(f): Log(Path(f) / "log.txt", True) for f in folders}
    echo = Log(None, quiet)

    def log(msg, folder=None):
        for f, entry in logs.items():
            if folder is None or f == Path(folder):
                entry(msg)
        echo(msg)
    return log


def _open(spec: TrialSpec, root, resume, overwrite, device, args, role):
    """Take a trial's folder (locked) for a stage: (folder, resuming, previous result, new result);
    the new result is None when the previous one is finished and kept as it is."""
    folder, resuming = prepare_folder(spec, root, resume=resume, overwrite=overwrite)
    previous = read_result(folder) if resuming else None
    if previous and previous.get("status") in Status.FINISHED:
        return folder, resuming, previous, None
    write_json(folder / ARGS, {"spec": spec.to_dict(), "argv": args, "provenance": provenance(device)})
    return folder, resuming, previous, new_result(spec, device, role)


def run_search(spec: TrialSpec, root, **kw) -> dict:
    """Search, derive, write genotype.json / supernet.pt / result.json; return the result."""
    return run_searches([spec], root, **kw)[0]


def run_searches(specs: list[TrialSpec], root, *, device="cpu", resume=False, overwrite=False, quiet=False,
                 args: dict | None = None, pretrained=None, role: str | None = None, max_batch: int = 64) -> list[dict]:
    """Searches of one batch key, run as batches of at most max_batch trials; one result per spec.

    das-single trains (or reuses) its grad-only and net-only networks first, unless `pretrained`
    names their network.pt files. `role` marks a result that is not a study's trial (BOHB)."""
    if any(s.stage != "search" for s in specs) or len({batch_key(s) for s in specs}) > 1:
        raise ValueError("run_searches takes search specifications of one batch key")
    if specs[0].method == "das-single" and pretrained is None:
        pretrained = pretrain_das_single(specs, root, device=device, quiet=quiet, max_batch=max_batch)
    elif pretrained is not None:
        pretrained = [pretrained] * len(specs)
    results: list[dict | None] = [None] * len(specs)
    jobs = []
    for n, spec in enumerate(specs):
        folder, resuming, previous, result = _open(spec, root, resume, overwrite, device, args, role)
        if result is None:
            results[n] = {**previous, "dir": str(folder)}
            continue
        write_json(folder / RESULT, result)
        job = {"n": n, "spec": spec, "folder": folder, "result": result, "seed": spec.seed, "ckpt": folder / CHECKPOINT,
               "state": None, "pretrained": pretrained[n] if pretrained else None}
        if resuming:
            with _failing([job]):
                job["state"] = _load_state(folder / CHECKPOINT, spec, spec.epochs)
        jobs.append(job)
    s0 = specs[0]
    for chunk in _chunks(jobs, max_batch):
        log = _batch_log(specs, [j["folder"] for j in chunk], quiet)

        def build(group):
            net = model_lib.build_supernet(s0.space, s0.data, s0.ops, [j["seed"] for j in group], s0.width,
                                           s0.noise_sigma)
            for t, j in enumerate(group):
                if j["pretrained"] is not None:
                    load_pretrained_ops(net, t, *j["pretrained"], j["spec"])
            return net

        desc = f"search {s0.space}/{s0.data}/{s0.ops}" + (f" {len(chunk)} trials" if len(chunk) > 1
                                                          else f" seed {chunk[0]['seed']}")
        with _failing(chunk):
            for group, net, trainer in _train_groups(chunk, s0.epochs, build, device=device, log=log, desc=desc,
                                                     search=True, order=s0.order,
                                                     train_theta=(s0.method != "das-single"), batch=s0.batch_size,
                                                     batches_per_epoch=s0.batches_per_epoch, sigma_n=s0.sigma_n):
                one_shot = evaluate(net, s0.data, device, sigma_n=s0.sigma_n)
                ranking = _one_shot_ranking(net, group, device)
                for t, j in enumerate(group):
                    results[j["n"]] = _finish_search(j, net, trainer, t, one_shot[t], ranking[t], log)
    return results


def _one_shot_ranking(net, group, device) -> list[list[dict]]:
    """Per trial: the candidates random search trains for the same seed, and the derived genotype,
    scored on the trained supernet with one-hot alpha (no training): the supernet's ranking, to set
    against their stand-alone architecture PSNR."""
    s0 = group[0]["spec"]
    cands = [baseline_genotypes(j["spec"].replace(method="random-search", stage="train",
                                                  candidates=RANDOM_SEARCH_CANDIDATES)) for j in group]
    derived = net.genotypes()
    out = [[] for _ in group]
    rows = [("derived", derived)] + [(f"random-search candidate {k}", [c[k] for c in cands])
                                     for k in range(RANDOM_SEARCH_CANDIDATES)]
    for kind, genotypes in rows:
        scores = one_hot_psnr(net, genotypes, s0.data, device, sigma_n=s0.sigma_n)
        for t in range(len(group)):
            g = {k: v for k, v in genotypes[t].to_dict().items() if k != "alphas"}
            out[t].append({"kind": kind, "genotype": g, "one_hot_psnr": scores[t]})
    return out


def _finish_search(j, net, trainer, t, one_shot, ranking, log) -> dict:
    spec, folder, result = j["spec"], j["folder"], j["result"]
    history = trainer.history[t]
    result["wall_seconds"]["search"] = history["seconds"] and sum(history["seconds"])
    result["provenance"]["trials_in_batch"] = trainer.T
    if trainer.diverged[t] is not None or not finite(one_shot):
        reason = trainer.diverged[t] or "one-shot PSNR is not finite"
        log(f"seed {spec.seed} diverged: {reason}", folder)
        _finish(result, folder, Status.DIVERGED, error=reason, history=history)
    else:
        genotype = net.genotype(t)
        genotype.to_json(folder / "genotype.json")
        save_torch(folder / "supernet.pt", {"kind": "supernet", "spec": spec.to_dict(),
                                            "model": {k: v[t:t + 1].clone() for k, v in net.state_dict().items()},
                                            "genotype": genotype.to_dict()})
        diagnostics = alpha_diagnostics(history["alphas_init"], genotype.alphas)
        _finish(result, folder, Status.SEARCHED, one_shot_psnr=one_shot, genotype=genotype.to_dict(),
                alphas=genotype.alphas, history=history, diagnostics=diagnostics, one_shot_ranking=ranking)
        log(f"seed {spec.seed} search done: one-shot PSNR {one_shot:.2f} dB, genotype {genotype.describe()}", folder)
    (folder / CHECKPOINT).unlink(missing_ok=True)
    return {**result, "dir": str(folder)}


def baseline_genotypes(spec: TrialSpec) -> list[Genotype]:
    """The architectures a training trial trains: one, or random search's candidates."""
    if spec.genotype is not None:
        return [Genotype.from_dict(spec.genotype, "genotype")]
    if spec.method in ("grad-only", "net-only"):
        op = spec.method.split("-")[0]
        return [model_lib.uniform_genotype(spec.space, spec.data, spec.ops, op, spec.width)]
    g = torch.Generator().manual_seed(ARCH_STREAM + spec.seed)
    count = spec.candidates if spec.method == "random-search" else 1
    return [model_lib.random_genotype(spec.space, spec.data, spec.ops, g, spec.width) for _ in range(count)]


def run_train(spec: TrialSpec, root, **kw) -> dict:
    """Train a baseline, a genotype file, or a searched genotype (one retrain seed); write result.json."""
    return run_trains([spec], root, **kw)[0]


def run_trains(specs: list[TrialSpec], root, *, device="cpu", resume=False, overwrite=False, quiet=False,
               args: dict | None = None, role: str | None = None, max_batch: int = 64) -> list[dict]:
    """Training trials of one batch key: every network they train (random search: each candidate)
    runs in batches of at most max_batch networks; one result per spec."""
    if any(s.stage != "train" for s in specs) or len({batch_key(s) for s in specs}) > 1:
        raise ValueError("run_trains takes training specifications of one batch key")
    results: list[dict | None] = [None] * len(specs)
    pending, jobs = {}, []
    for n, spec in enumerate(specs):
        folder, resuming, previous, result = _open(spec, root, resume, overwrite, device, args, role)
        if result is None:
            results[n] = {**previous, "dir": str(folder)}
            continue
        result["candidates"] = previous["candidates"] if previous and isinstance(previous.get("candidates"), list) else []
        if spec.method in SEARCH_METHODS:
            search = read_result(folder.parent) or {}
            result["one_shot_psnr"] = search.get("one_shot_psnr")
            result["search_dir"] = ".."
        write_json(folder / RESULT, result)
        genotypes = baseline_genotypes(spec)
        pending[n] = {"spec": spec, "folder": folder, "result": result, "count": len(genotypes), "done": {}}
        for k, genotype in enumerate(genotypes):
            if k < len(result["candidates"]):
                continue  # finished before an interruption
            tag = "network" if len(genotypes) == 1 else f"candidate{k}"
            ckpt = folder / f"{tag}_checkpoint.pt"
            state = None
            if resuming:
                with _failing([pending[n]]):
                    state = _load_state(ckpt, spec, spec.train_epochs())
            jobs.append({"n": n, "k": k, "spec": spec, "folder": folder, "genotype": genotype, "tag": tag,
                         "seed": spec.train_seed(), "ckpt": ckpt, "state": state})
    s0 = specs[0]
    for chunk in _chunks(jobs, max_batch):
        log = _batch_log(specs, list(dict.fromkeys(j["folder"] for j in chunk)), quiet)

        def build(group):
            return model_lib.build_network([j["genotype"] for j in group], s0.data, [j["seed"] for j in group],
                                           s0.noise_sigma)

        desc = f"train {s0.space}/{s0.data}" + (f" {len(chunk)} networks" if len(chunk) > 1
                                                else f" seed {chunk[0]['seed']}")
        with _failing(list(pending.values())):
            for group, net, trainer in _train_groups(chunk, s0.train_epochs(), build, device=device, log=log,
                                                     desc=desc, batch=s0.batch_size,
                                                     batches_per_epoch=s0.batches_per_epoch, sigma_n=s0.sigma_n):
                psnrs = evaluate(net, s0.data, device, sigma_n=s0.sigma_n)
                for t, j in enumerate(group):
                    pending[j["n"]]["done"][j["k"]] = _finish_network(j, net, trainer, t, psnrs[t], log)
                    p = pending[j["n"]]
                    # candidates are recorded in order, so an interrupted random search resumes where it was
                    while len(p["result"]["candidates"]) in p["done"]:
                        p["result"]["candidates"].append(p["done"].pop(len(p["result"]["candidates"])))
                    p["result"]["wall_seconds"]["train"] = sum(c["seconds"] for c in p["result"]["candidates"])
                    write_json(p["folder"] / RESULT, p["result"])
    for n, p in pending.items():
        results[n] = _finish_train(p)
    return results


def _finish_network(j, net, trainer, t, psnr, log) -> dict:
    history = trainer.history[t]
    seconds = sum(history["seconds"])
    j["ckpt"].unlink(missing_ok=True)
    if trainer.diverged[t] is not None or not finite(psnr):
        reason = trainer.diverged[t] or "architecture PSNR is not finite"
        log(f"{j['tag']} seed {j['seed']} diverged: {reason}", j["folder"])
        return {"genotype": j["genotype"].to_dict(), "status": Status.DIVERGED, "architecture_psnr": None,
                "seconds": seconds, "history": history, "error": reason}
    save_torch(j["folder"] / f"{j['tag']}.pt", {
        "kind": "network", "spec": j["spec"].to_dict(), "data": j["spec"].data, "genotype": j["genotype"].to_dict(),
        "model": {k: v[t:t + 1].clone() for k, v in net.state_dict().items()}, "architecture_psnr": psnr,
        "seed": j["seed"]})
    log(f"{j['tag']} seed {j['seed']} done: architecture PSNR {psnr:.2f} dB ({j['genotype'].describe()})", j["folder"])
    return {"genotype": j["genotype"].to_dict(), "status": Status.COMPLETE, "architecture_psnr": psnr,
            "seconds": seconds, "history": history, "error": None}


def _finish_train(p) -> dict:
    result, folder = p["result"], p["folder"]
    result["provenance"]["trials_in_batch"] = None
    candidates = result["candidates"]
    scored = [c for c in candidates if c["status"] == Status.COMPLETE]
    if p["count"] == 1:
        only = result.pop("candidates")[0]
        result["history"] = only["history"]
        if only["status"] != Status.COMPLETE:
            return {**_finish(result, folder, Status.DIVERGED, error=only["error"], genotype=only["genotype"]),
                    "dir": str(folder)}
        _finish(result, folder, Status.COMPLETE, architecture_psnr=only["architecture_psnr"], genotype=only["genotype"])
    elif scored:
        best = max(scored, key=lambda c: c["architecture_psnr"])
        _finish(result, folder, Status.COMPLETE, architecture_psnr=best["architecture_psnr"], genotype=best["genotype"])
    else:
        return {**_finish(result, folder, Status.DIVERGED, error="every candidate diverged"), "dir": str(folder)}
    Genotype.from_dict(result["genotype"]).to_json(folder / "genotype.json")
    return {**result, "dir": str(folder)}


def retrain_spec(search: TrialSpec, genotype: Genotype, retrain_seed: int | None = None,
                 retrain_epochs: int | None = None) -> TrialSpec:
    g = {k: v for k, v in genotype.to_dict().items() if k != "alphas"}
    if retrain_epochs == search.epochs:
        retrain_epochs = None  # the search's own epochs, given or not: one trial, one folder
    return search.replace(stage="train", genotype=g, retrain_seed=search.seed if retrain_seed is None else retrain_seed,
                          retrain_epochs=retrain_epochs)


def run_trials(specs: list[TrialSpec], root, *, retrain_seeds=None, device="cpu", quiet=True,
               max_batch: int = 64) -> list[dict]:
    """The runner's unit: trials of one batch key, searched (or trained) together, then the
    retrain(s) of every searched genotype together. Resumes what a killed run left; returns every
    stage's result."""
    if specs[0].stage == "train":
        return run_trains(specs, root, device=device, resume=True, quiet=quiet, max_batch=max_batch)
    searched = run_searches(specs, root, device=device, resume=True, quiet=quiet, max_batch=max_batch)
    retrains = []
    for spec, s in zip(specs, searched):
        if s["status"] == Status.SEARCHED:
            g = Genotype.from_dict(s["genotype"], "searched genotype")
            retrains += [retrain_spec(spec, g, r) for r in (retrain_seeds or [spec.seed])]
    done = run_trains(retrains, root, device=device, resume=True, quiet=quiet, max_batch=max_batch) if retrains else []
    return searched + done


def group_batches(specs: list[TrialSpec], max_batch: int = 64) -> list[list[TrialSpec]]:
    """Specs grouped by batch key, in chunks of at most max_batch (the sweep's tasks)."""
    by: dict[str, list[TrialSpec]] = {}
    for s in specs:
        by.setdefault(batch_key(s), []).append(s)
    return [chunk for group in by.values() for chunk in _chunks(group, max_batch)]


def trial_done(spec: TrialSpec, root, retrain_seeds=None) -> bool:
    """Finished with this exact specification (a sweep skips it)."""
    specs = [spec]
    if spec.stage == "search":
        r = _read_quiet(spec.folder(root))
        if r is None or r.get("spec") != spec.to_dict():
            return False
        if r.get("status") == Status.DIVERGED:
            return True
        if r.get("status") != Status.SEARCHED:
            return False
        g = Genotype.from_dict(r["genotype"], "searched genotype")
        specs = [retrain_spec(spec, g, s) for s in (retrain_seeds or [spec.seed])]
    for s in specs:
        r = _read_quiet(s.folder(root))
        if r is None or r.get("spec") != s.to_dict() or r.get("status") not in (Status.COMPLETE, Status.DIVERGED):
            return False
    return True


def _read_quiet(folder: Path) -> dict | None:
    try:
        return read_result(folder)
    except UserError:
        return None


# ---------------------------------------------------------------------------- DAS-single
def pretrain_das_single(specs: list[TrialSpec], root, *, device="cpu", quiet=False, max_batch=64) -> list[tuple]:
    """DAS-single's pretrained ops: per spec a grad-only and a net-only network of the same settings,
    trained as ordinary baseline trials (reused when they exist). Returns their network.pt paths."""
    paths = [[] for _ in specs]
    for method in ("grad-only", "net-only"):
        base = [s.replace(method=method, stage="train", candidates=None) for s in specs]
        done = run_trains(base, root, device=device, resume=True, quiet=quiet, max_batch=max_batch)
        for n, r in enumerate(done):
            if r["status"] != Status.COMPLETE:
                raise UserError(f"{r['dir']}: the {method} network DAS-single needs did not train ({r['status']}); "
                                "look at its log.txt")
            unlock_trial(Path(r["dir"]))
            paths[n].append(Path(r["dir"]) / "network.pt")
    return [tuple(p) for p in paths]


def load_pretrained_ops(net: torch.nn.Module, t: int, grad_ckpt, net_ckpt, spec: TrialSpec) -> None:
    """Trial t's layer j grad and net ops take the weights of layer j of the pretrained networks."""
    for path, op in ((grad_ckpt, "grad"), (net_ckpt, "net")):
        ck = load_checkpoint(path, "pretrained checkpoint", "rerun with --overwrite")
        g = ck.get("genotype") if isinstance(ck.get("genotype"), dict) else {}
        if ck.get("kind") != "network" or g.get("space") != "seq" or set(g.get("layers") or []) != {op}:
            raise UserError(f"{path}: not a sequential {op}-only network checkpoint; rerun with --overwrite")
        if ck.get("data") != spec.data or g.get("width") != spec.width:
            raise UserError(f"{path}: pretrained for data {ck.get('data')!r} width {g.get('width')}, but the "
                            f"search uses {spec.data!r} width {spec.width}; rerun with --overwrite")
        source = model_lib.build_network(Genotype.from_dict(g, str(path)), spec.data, [0], spec.noise_sigma)
        try:
            source.load_state_dict(ck["model"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise UserError(f"{path}: weights do not fit a {op}-only network ({type(exc).__name__})") from None
        for layer, src in zip(net.layers, source.layers):
            layer.bank.copy_slot(t, layer.cnn_slot[op], src.bank, 0, 0)
            if op == "grad":
                with torch.no_grad():
                    layer.tau[t] = src.tau[0]


# ---------------------------------------------------------------------------- reading a tree
def _result_files(root: Path, skipped: list):
    """result.json paths under root, following links without looping; a folder reached a second
    time through a link is reported once (as "linked") and not read again. A result.json that is a
    folder or a broken link is yielded too, so that it is reported as unreadable."""
    seen_dirs, top = set(), os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs or real != top and (top + os.sep).startswith(real.rstrip(os.sep) + os.sep):
            # read before, or a link to a folder above the tree (.., /): a loop through everything
            skipped.append(("linked", dirpath))
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        if RESULT in filenames or RESULT in dirnames:
            yield Path(dirpath) / RESULT
        # real folders before links, so the linked copy is the one reported
        dirnames[:] = sorted((d for d in dirnames if d not in ("analysis", "bohb", RESULT) and not d.startswith(".")),
                             key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d))


SKIP_REASONS = {
    "unreadable": "result files that cannot be read (a folder, a broken link or no permission; check the "
                  "path and its permissions)",
    "corrupt": "invalid JSON (truncated, NaN or Infinity tokens, or nested too deeply; look at the file, then "
               "rerun the trial with --overwrite)",
    "foreign": "not a result file of this project's schema 2 (an older run, or another program's)",
    "invalid": "result files with a value of the wrong type or range (the reason follows each path)",
    "running": "unfinished runs (a sweep still running, or killed: rerun with --resume)",
    "failed": "runs stopped by an exception (the error follows each path; rerun with --resume)",
    "searched": "searched but not retrained yet (retrain.py --genotype)",
    "duplicate": "the same specification in two folders (neither is used; remove one)",
    "linked": "folders reached a second time through a link (read once)",
    "bohb": "BOHB evaluations (not trials of a study)",
    "diverged": "diverged trials (a loss or PSNR became NaN or infinite; kept out of the statistics)",
    "extra retrain": "retrains under extra seeds (the retraining spread; not pooled into the tables)",
}


def _reason(exc_or_text, path) -> str:
    text = str(exc_or_text)
    for prefix in (f"{path}: ", "result file: "):
        text = text[len(prefix):] if text.startswith(prefix) else text
    text = " ".join(text.split("; ")[0].split())  # one line, whatever the file held
    return text if len(text) <= 120 else text[:117] + "..."


def read_record(path: Path) -> tuple[str | None, str, dict | None, "TrialSpec | None"]:
    """Read one result.json for analysis: (skip kind or None, reason, result, specification)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return "unreadable", "a broken link", None, None
    if not path.is_file():
        return "unreadable", "not a file", None, None
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return "unreadable", exc.strerror or type(exc).__name__, None, None
    try:
        r = read_json(path, "result file")
    except UserError as exc:
        return "corrupt", _reason(exc, path), None, None
    if not isinstance(r.get("spec"), dict):
        return "foreign", "no trial specification", r, None
    try:
        spec = TrialSpec.from_dict(r["spec"], str(path))
    except (UserError, RecursionError) as exc:
        return "invalid", _reason(exc, path), r, None
    problem = result_problem(r)
    if not problem:  # the fields are well-formed; do they belong to this specification?
        genotypes = [r.get("genotype")] + [c.get("genotype") for c in r.get("candidates") or []]
        have = (spec.space, spec.ops, spec.data, spec.width)
        if any(g is not None and (g["space"], g["ops"], g.get("data", "blur"), g.get("width", 16)) != have
               for g in genotypes):
            problem = f"a genotype of another space, op set, data or width than its specification {have}"
    if problem:
        return "invalid", _reason(problem, path), r, spec
    return None, "", r, spec


def load_trials(root) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every trial record under root as a flat dict (one per training of an architecture; a DAS
    record carries its search's one-shot PSNR and alphas), and (reason, path) for what was skipped.
    Every file is checked (read_record) before anything of it is used, so a hostile tree is
    reported, never a traceback.

    Rule for duplicates: two folders holding the same full specification are both left out and
    reported, since neither can be preferred without a guess.
    """
    records, skipped, by_key, seen_real = [], [], {}, set()
    for path in _result_files(Path(root), skipped):
        real = os.path.realpath(path)
        if real in seen_real:
            skipped.append(("linked", str(path)))
            continue
        seen_real.add(real)
        kind, why, r, spec = read_record(path)
        if kind is not None:
            skipped.append((kind, f"{path} ({why})" if kind in ("invalid", "unreadable") else str(path)))
            continue
        if r.get("role") == "bohb-evaluation":
            skipped.append(("bohb", str(path)))
            continue
        status = r["status"]
        search = None
        if spec.stage == "train" and spec.method in SEARCH_METHODS:
            search_path = path.parent.parent / RESULT
            if search_path.exists() or search_path.is_symlink():  # else: no one-shot PSNR to pair with
                kind, why, search, search_spec = read_record(search_path)
                if kind is None and search_spec != spec.search_spec():
                    kind, why = "invalid", "holds another specification"
                if kind is not None:
                    skipped.append(("invalid", f"{path} (its search's result.json: {why})"))
                    continue
        if spec.stage == "search":
            if status == Status.SEARCHED and not any((d / RESULT).exists() for d in path.parent.glob("retrain-seed*")):
                skipped.append(("searched", str(path.parent)))
            if status == Status.RUNNING:
                skipped.append(("running", str(path)))
            if status in (Status.SEARCHED, Status.RUNNING):
                continue  # counted through its retrains
            # a diverged search is a trial of its group that has no architecture PSNR
        elif status == Status.RUNNING:
            skipped.append(("running", str(path)))
            continue
        if status == Status.FAILED:
            skipped.append(("failed", f"{path} ({short_repr(r.get('error'), 100)})"))
            continue
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key in by_key:
            skipped.append(("duplicate", str(path)))
            first = by_key[key]
            if first is not None:
                skipped.append(("duplicate", first["dir"]))
                records.remove(first)
                by_key[key] = None
            continue
        rec = _record(spec, r, path.parent, search)
        by_key[key] = rec
        records.append(rec)
    return records, skipped


def _record(spec: TrialSpec, r: dict, folder: Path, search: dict | None) -> dict:
    def num(v):
        return float(v) if is_number(v) else None

    if spec.stage == "search":
        search = r
    search = search or {}
    hist = search.get("history") if isinstance(search.get("history"), dict) else {}
    d = spec.to_dict()
    return {**{k: d[k] for k in d if k not in ("genotype",)},
            "group": spec.group(),
            "label": spec.label(),
            "primary": spec.retrain_seed in (None, spec.seed),
            "status": r.get("status"),
            "one_shot_psnr": num(search.get("one_shot_psnr")) if search else None,
            "architecture_psnr": num(r.get("architecture_psnr")) if spec.stage == "train" else None,
            "genotype": r.get("genotype") if isinstance(r.get("genotype"), dict) else spec.genotype,
            "alphas": search.get("alphas"),
            "alphas_init": hist.get("alphas_init"),
            # a DAS record's history is its search's (losses, alphas per epoch); its retrain's beside it
            "history": (hist or None) if spec.method in SEARCH_METHODS else
            (r.get("history") if isinstance(r.get("history"), dict) else None),
            "retrain_history": r.get("history") if spec.method in SEARCH_METHODS and spec.stage == "train"
            and isinstance(r.get("history"), dict) else None,
            "wall_seconds": {**(search.get("wall_seconds") or {}), **(r.get("wall_seconds") or {})}
            if isinstance(r.get("wall_seconds"), dict) else {},
            "candidates": r.get("candidates") or [],
            "one_shot_ranking": search.get("one_shot_ranking"),
            "error": r.get("error"),
            "provenance": r.get("provenance"),
            "dir": str(folder)}


def summarize_skipped(skipped) -> list[str]:
    by: dict[str, list[str]] = {}
    for reason, path in skipped:
        by.setdefault(reason, []).append(str(path))
    lines = []
    for reason, paths in by.items():
        shown = ", ".join(paths[:3]) + (f", ... (+{len(paths) - 3})" if len(paths) > 3 else "")
        lines.append(f"skipped {len(paths)} {SKIP_REASONS[reason]}: {shown}")
    return lines
