"""A trial's folder: the result schema and its checks, status words, provenance, preparing a folder
for a stage (lock, overwrite, resume checks), epoch checkpoints, and whether a trial is done.

    <folder>/args.json      the specification and the command line of the last start
    <folder>/result.json    the record: spec, status, numbers, genotype, alphas, history, provenance
    <folder>/log.txt        log lines of every start
    <folder>/checkpoint.pt  the last epoch's state while the stage runs (removed when it ends)

A record is believed only when it is consistent: its status says what it holds (a complete
training has an architecture PSNR, a diverged one has none, a search is searched or diverged,
never complete), and every PSNR lies in the range a float32 reconstruction can reach (PSNR_RANGE).
"""
from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import torch

import das
from das.genotype import Genotype
from das.locks import LOCK, lock_trial, unlock_trial
from das.spec import TrialSpec, retrain_spec
from das.utils import UserError, int_in, is_number, load_checkpoint, read_json, short_repr, versions, write_json
from das.vocab import is_search

SCHEMA = 2
RESULT, ARGS, CHECKPOINT = "result.json", "args.json", "checkpoint.pt"
# PSNR (dB) a float32 reconstruction can reach: |x_hat| <= 3.4e38 bounds the error below (about -770 dB);
# float32 rounding of signals of order 1 bounds it above (far below 400 dB). A number outside is not a PSNR.
PSNR_RANGE = (-800.0, 400.0)


class Status:
    RUNNING = "running"      # a process is (or was, if killed) working on it
    SEARCHED = "searched"    # a search finished; its genotype awaits retraining
    COMPLETE = "complete"    # every number of the trial is in result.json
    DIVERGED = "diverged"    # a loss or metric became NaN or infinite; `error` says where
    FAILED = "failed"        # an exception; `error` says which

    FINISHED = (SEARCHED, COMPLETE, DIVERGED)
    ALL = (RUNNING, SEARCHED, COMPLETE, DIVERGED, FAILED)



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


# ---------------------------------------------------------------------------- the result schema and its checks
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
        problem = psnr_problem(r.get(k), k)
        if problem:
            return problem
    if status == Status.COMPLETE and stage == "train" and r.get("architecture_psnr") is None:
        return "a complete training without architecture_psnr"
    if stage == "search" and status in (Status.COMPLETE,):
        return "a search marked complete (a search ends searched or diverged; its retrain completes)"
    if status == Status.SEARCHED and (stage != "search" or r.get("one_shot_psnr") is None
                                      or r.get("genotype") is None):
        return "a finished search without one_shot_psnr or genotype, or a training marked searched"
    if status == Status.DIVERGED and stage == "train" and r.get("architecture_psnr") is not None:
        return "a diverged training with an architecture PSNR (diverged means no finite number)"
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
    problem = psnr_problem(psnr, "architecture_psnr")
    if problem:
        return problem
    if status == Status.COMPLETE and psnr is None:
        return "complete without architecture_psnr"
    if status == Status.DIVERGED and psnr is not None:
        return "diverged with an architecture PSNR"
    if c.get("seconds") is not None and not is_number(c["seconds"]):
        return f"seconds is {short_repr(c['seconds'])}, not a number"
    if c.get("error") is not None and not isinstance(c["error"], str):
        return f"error is {short_repr(c['error'])}, not a string"
    return _genotype_problem(c.get("genotype")) or _history_problem(c.get("history"))


def psnr_problem(v, name: str) -> str | None:
    """What is wrong with a recorded PSNR (None is allowed: the status says why it is missing)."""
    if v is None:
        return None
    if not is_number(v):
        return f"{name} is {short_repr(v)}, not a number"
    if not PSNR_RANGE[0] <= v <= PSNR_RANGE[1]:
        return (f"{name} is {short_repr(v)} dB, outside the {PSNR_RANGE[0]:g}..{PSNR_RANGE[1]:g} dB a "
                "reconstruction can reach")
    return None


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


# ---------------------------------------------------------------------------- preparing a folder for a stage
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
    if not parent.is_dir() or spec.stage == "train" and is_search(spec.method):
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


def check_same_device(path: Path, device) -> None:
    """An unfinished trial's checkpoint continues on the kind of device that wrote it: CPU and CUDA
    numbers differ (README, "Measured here"), so a trial half on each would match neither."""
    if device is None or not (path / CHECKPOINT).exists():
        return
    try:
        previous = read_result(path)
    except UserError:
        return  # the resume itself reports an unreadable result
    prov = (previous or {}).get("provenance")
    was = prov.get("device") if isinstance(prov, dict) else None
    if not isinstance(was, str) or previous.get("status") in Status.FINISHED:
        return  # a record from before devices were recorded: nothing to compare
    try:
        kind = torch.device(was).type
    except (RuntimeError, ValueError):
        kind = short_repr(was)
    if kind != torch.device(str(device)).type:
        raise UserError(f"{path}: this unfinished trial's checkpoint was written on {short_repr(was)}; continue it "
                        f"with --device {kind} (CPU and CUDA numbers differ), or start it again with --overwrite")


def check_folders(specs, root, *, resume: bool, overwrite: bool, device=None) -> list[bool]:
    """Before a batch writes anything: whether each trial resumes. A folder holding a finished trial
    of the same specification is kept as it is (a batch skips its done trials); any other earlier
    run needs --resume or --overwrite (and, to resume, the device kind that wrote its checkpoint),
    and then the first problem is one error, with nothing of the batch written."""
    flags = []
    for spec in specs:
        path = spec.folder(root)
        if path.exists() and not path.is_dir():
            raise UserError(f"{path}: exists and is not a folder; move it aside")
        existing = [f for f in (RESULT, ARGS, CHECKPOINT) if (path / f).exists()]
        if existing and overwrite:
            _check_deletable(path, root)
        elif existing and resume:
            check_same_spec(spec, path)
            check_same_device(path, device)
        elif existing:
            previous = None
            try:
                previous = read_result(path)
            except UserError:
                pass
            if not (previous and previous.get("status") in Status.FINISHED and spec.same_as(previous.get("spec"))):
                raise UserError(f"{path}: run folder already holds {', '.join(existing)} of an unfinished or other "
                                "run; pass --resume to continue it or --overwrite to start again")
        flags.append(bool(existing) and (resume or not overwrite))
    return flags


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
        _empty(path, root)
        return path, False
    if existing and not resume:
        raise UserError(f"{path}: run folder already holds {', '.join(existing)}; pass --resume to continue it "
                        "or --overwrite to start again")
    if existing:
        check_same_spec(spec, path)
    return path, bool(existing)

def _empty(path: Path, root) -> None:
    """Delete a locked trial folder's files (never through a link, never outside the tree)."""
    _check_deletable(path, root)
    for child in path.iterdir():
        if child.name == LOCK or child.name.startswith(LOCK + ".stale-"):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def reset_trial(spec: TrialSpec, root) -> bool:
    """Empty a trial's folder so that it runs again from scratch (sweep.py --overwrite); returns
    whether there was anything. Raises TrialLocked when a live process runs it."""
    path = spec.folder(root)
    if not path.is_dir() or not any(p.name != LOCK for p in path.iterdir()):
        return False
    lock_trial(path)
    try:
        _empty(path, root)
    finally:
        unlock_trial(path)
    return True


def _check_deletable(path: Path, root) -> None:
    """--overwrite empties a trial folder: never through a link, never outside the results tree."""
    top = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if path.is_symlink() or top not in real.parents:
        raise UserError(f"{path}: is a link or leads outside the results tree {root}; --overwrite never deletes "
                        "through a link: remove the link (or the trial folder) by hand, then rerun")


# ---------------------------------------------------------------------------- records, checkpoints, done-ness
def new_result(spec: TrialSpec, device, role: str | None = None) -> dict:
    """The result schema: spec, status, numbers, provenance. Flat copies of the main fields keep
    result.json readable on its own."""
    return {"schema": SCHEMA, "spec": spec.to_dict(), "status": Status.RUNNING,
            "space": spec.space, "data": spec.data, "ops": spec.ops, "method": spec.method,
            "preset": spec.preset, "seed": spec.seed, "retrain_seed": spec.retrain_seed,
            "one_shot_psnr": None, "architecture_psnr": None, "genotype": None, "alphas": None,
            "history": None, "wall_seconds": {}, "error": None, "role": role, "provenance": provenance(device)}


def finish(result: dict, folder: Path, status: str, **fields) -> dict:
    """Write a stage's final record with its status and end time."""
    result.update(status=status, **fields)
    result["provenance"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(folder / RESULT, result)
    return result


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_state(ckpt: Path, spec: TrialSpec, epochs: int):
    """A trial's epoch checkpoint, checked against its specification and epochs, or None."""
    if not ckpt.exists():
        return None
    fix = "rerun with --overwrite"
    state = load_checkpoint(ckpt, "epoch checkpoint", fix)
    if not isinstance(state.get("spec"), dict):
        raise UserError(f"{ckpt}: epoch checkpoint records no trial specification, so it cannot be checked "
                        f"against this trial; {fix}")
    if not spec.same_as(state["spec"]):
        diff = spec.differences(state["spec"])
        raise UserError(f"{ckpt}: checkpoint of another trial (differs in {', '.join(diff)[:200]}); {fix}")
    if not int_in(state.get("epoch"), 1, epochs):
        raise UserError(f"{ckpt}: checkpoint is at epoch {short_repr(state.get('epoch'))}, not within this "
                        f"trial's 1..{epochs}; {fix}")
    return state


def trial_done(spec: TrialSpec, root, retrain_seeds=None) -> bool:
    """Finished with this exact specification (a sweep skips it)."""
    specs = [spec]
    if spec.stage == "search":
        r = _read_quiet(spec.folder(root))
        if r is None or not spec.same_as(r.get("spec")):
            return False
        if r.get("status") == Status.DIVERGED:
            return True
        if r.get("status") != Status.SEARCHED:
            return False
        g = Genotype.from_dict(r["genotype"], "searched genotype")
        specs = [retrain_spec(spec, g, s) for s in (retrain_seeds or [spec.seed])]
    for s in specs:
        r = _read_quiet(s.folder(root))
        if r is None or not s.same_as(r.get("spec")) or r.get("status") not in (Status.COMPLETE, Status.DIVERGED):
            return False
    return True


def _read_quiet(folder: Path) -> dict | None:
    try:
        return read_result(folder)
    except UserError:
        return None
