"""The stages that fill trial folders, many trials as one computation: searches (das, das-single),
trainings (baselines, genotype files, retrains of searched genotypes), and the runner's unit
`run_trials` (a batch of searches, then the retrains of their genotypes).

Every stage takes trials of one batch key (das.spec.batch_key: the same settings, different seeds
and architectures), trains them as batches of at most `max_batch` trials through das.train.Trainer,
and writes each trial's own folder (das.folder). A trial whose epoch checkpoint cannot be used is
marked failed with the fix and the others of its batch go on; an exception while training marks
every unfinished trial of the batch failed; an interrupt leaves them running, to be resumed.
"""
from __future__ import annotations

from pathlib import Path

import torch

from das import model as model_lib
from das.diagnostics import alpha_diagnostics
from das.folder import (ARGS, CHECKPOINT, RESULT, Status, check_folders, finish, finite, load_state, new_result,
                        prepare_folder, provenance, read_result)
from das.genotype import Genotype
from das.locks import unlock_trial
from das.ops import CNN_OPS, OPS
from das.spec import TrialSpec, batch_key, retrain_spec
from das.train import Trainer, evaluate_averagings, one_hot_psnr, save_checkpoints
from das.utils import Log, UserError, load_checkpoint, save_torch, write_json
from das.vocab import METHODS, OP_SETS, uniform_method

ARCH_STREAM = 1_000_000  # random architectures come from their own stream, apart from the training seed


# ---------------------------------------------------------------------------- training a batch
def _trainer(group, epochs, build, device, log=None, desc="", **trainer_kw) -> Trainer:
    spec = group[0]["spec"]
    return Trainer(build(group), spec.hp(), spec.data, [j["seed"] for j in group], epochs, device, log=log,
                   desc=desc, batch=spec.batch_size, batches_per_epoch=spec.batches_per_epoch, sigma_n=spec.sigma_n,
                   theta_optimizer=spec.theta_optimizer, **trainer_kw)


def _resumable(jobs, epochs, build, fail, **trainer_kw) -> list[dict]:
    """The jobs whose epoch checkpoint (if any) can be resumed: each is read, checked against its
    specification and loaded into a trainer of its own, so one truncated or foreign checkpoint fails
    its own trial (fail(job, message)) and never the batch."""
    good = []
    for j in jobs:
        if j.pop("resuming", False):
            try:
                j["state"] = load_state(j["ckpt"], j["spec"], epochs)
                if j["state"] is not None:
                    try:
                        _trainer([j], epochs, build, "cpu", **trainer_kw).load_state_dicts([j["state"]])
                    except Exception as exc:  # wrong shapes, keys or types: one line, not the state_dict's report
                        raise UserError(f"{j['ckpt']}: checkpoint does not fit this trial ({type(exc).__name__}); "
                                        "rerun this trial with --overwrite") from None
            except UserError as exc:
                fail(j, str(exc))
                continue
        good.append(j)
    return good


def _train_groups(jobs, epochs, build, *, device, log, desc, tensorboard=False, **trainer_kw):
    """Train jobs (dicts with seed, ckpt, spec, state) as batches of one start epoch each.

    build(jobs) -> model. Yields (jobs, model, trainer) after training each batch. With
    tensorboard, every network's metrics also go to TensorBoard (TensorBoardScalars)."""
    by_epoch: dict[int, list] = {}
    for j in jobs:
        by_epoch.setdefault(j["state"]["epoch"] if j["state"] else 0, []).append(j)
    for start, group in sorted(by_epoch.items()):
        trainer = _trainer(group, epochs, build, device, log, desc, **trainer_kw)
        if start:
            trainer.load_state_dicts([j["state"] for j in group])
            log(f"resuming from epoch {start} ({len(group)} trial{'s' if len(group) > 1 else ''})")
        extra = [{"spec": j["spec"].to_dict()} for j in group]
        written = set()
        board = TensorBoardScalars() if tensorboard else None

        def after_epoch(tr):
            save_checkpoints(tr, [j["ckpt"] for j in group], extra)
            write_metrics(tr, group, written)
            if board is not None:
                board.write(tr, group)

        try:
            trainer.run(after_epoch)
        finally:
            if board is not None:
                board.close()
        yield group, trainer.model, trainer


METRICS = ("epoch", "train_loss", "train_psnr", "val_loss", "seconds")


def _candidate(job) -> str | None:
    """The network's name among its trial's networks: candidate<k> for random search's candidates,
    None for a trial's only network (a search, or a single architecture)."""
    tag = job.get("tag")
    return None if tag in (None, "network") else tag


def _epochs_to_write(history: dict, first: bool):
    """Indices of the history's epochs to log after an epoch: all of them at the first write of a
    start (a resumed run logs the checkpoint's epochs again, once), else the newest."""
    return range(len(history["epoch"])) if first else [len(history["epoch"]) - 1]


def metrics_file(job) -> Path:
    """The tidy per-epoch metrics of one network beside its result.json: metrics.csv (a search or a
    single network), candidate<k>_metrics.csv (random search's candidates)."""
    tag = _candidate(job)
    return job["folder"] / ("metrics.csv" if tag is None else f"{tag}_metrics.csv")


def write_metrics(trainer, group, written: set) -> None:
    """After each epoch, the epoch's row of every network (the whole file again at the first epoch
    of a start, so a resumed run's file holds exactly the checkpoint's epochs)."""
    for t, j in enumerate(group):
        h, path = trainer.history[t], metrics_file(j)
        rows = _epochs_to_write(h, path not in written)
        lines = [] if path in written else [",".join(METRICS)]
        for k in rows:
            lines.append(",".join("" if h.get(m) is None or h[m][k] is None else repr(h[m][k]) if m != "epoch"
                                  else str(h[m][k]) for m in METRICS))
        with open(path, "a" if path in written else "w") as f:
            f.write("\n".join(lines) + "\n")
        written.add(path)


class TensorBoardScalars:
    """--tensorboard: the metrics.csv columns of every network as TensorBoard scalars (train/loss,
    train/psnr, val/loss, seconds; step = epoch) in <trial folder>/tensorboard (a random search's
    candidates in tensorboard/candidate<k>). The first write of a start writes every epoch of the
    history again and purges the folder's later steps, so a resumed run shows each epoch once."""

    TAGS = {"train_loss": "train/loss", "train_psnr": "train/psnr", "val_loss": "val/loss", "seconds": "seconds"}

    def __init__(self):
        self.writers = {}

    @staticmethod
    def folder(job) -> Path:
        return job["folder"] / "tensorboard" / (_candidate(job) or "")

    def write(self, trainer, group) -> None:
        from torch.utils.tensorboard import SummaryWriter  # here: only runs that ask need tensorboard

        for t, j in enumerate(group):
            h, path = trainer.history[t], self.folder(j)
            w = self.writers.get(path)
            rows = _epochs_to_write(h, w is None)
            if w is None:
                w = self.writers[path] = SummaryWriter(str(path), purge_step=h["epoch"][0] if h["epoch"] else 0)
            for k in rows:
                for m, tag in self.TAGS.items():
                    v = h.get(m)[k] if h.get(m) is not None else None
                    if v is not None:
                        w.add_scalar(tag, float(v), int(h["epoch"][k]))
            w.flush()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


# ---------------------------------------------------------------------------- a batch's folders and logs
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
                    finish(result, j["folder"], Status.FAILED, error=message[:500])
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


def _open_batch(specs, root, results, resume, overwrite, device, args, role):
    """Take every trial folder of a batch, all checked before any is written (das.folder.check_folders):
    a finished trial's result goes into `results`; the others are yielded as (n, spec, folder,
    resuming, previous result, new result)."""
    resumes = check_folders(specs, root, resume=resume, overwrite=overwrite, device=device)
    for n, spec in enumerate(specs):
        folder, resuming, previous, result = _open(spec, root, resumes[n], overwrite, device, args, role)
        if result is None:
            results[n] = {**previous, "dir": str(folder)}
        else:
            yield n, spec, folder, resuming, previous, result


# ---------------------------------------------------------------------------- searches
def run_search(spec: TrialSpec, root, **kw) -> dict:
    """Search, derive, write genotype.json / supernet.pt / result.json; return the result."""
    return run_searches([spec], root, **kw)[0]


def run_searches(specs: list[TrialSpec], root, *, device="cpu", resume=False, overwrite=False, quiet=False,
                 args: dict | None = None, pretrained=None, role: str | None = None, max_batch: int = 64,
                 tensorboard: bool = False) -> list[dict]:
    """Searches of one batch key, run as batches of at most max_batch trials; one result per spec.

    das-single trains (or reuses) its grad-only and net-only networks first, unless `pretrained`
    names their network.pt files. `role` marks a result that is not a study's trial (BOHB)."""
    if any(s.stage != "search" for s in specs) or len({batch_key(s) for s in specs}) > 1:
        raise ValueError("run_searches takes search specifications of one batch key")
    s0 = specs[0]
    frozen = METHODS[s0.method].frozen_weights
    if frozen and pretrained is None:
        pretrained = pretrain_das_single(specs, root, device=device, quiet=quiet, max_batch=max_batch,
                                         tensorboard=tensorboard)
    elif pretrained is not None:
        pretrained = [pretrained] * len(specs)
    results: list[dict | None] = [None] * len(specs)
    jobs = []
    for n, spec, folder, resuming, previous, result in _open_batch(specs, root, results, resume, overwrite, device,
                                                                   args, role):
        write_json(folder / RESULT, result)
        jobs.append({"n": n, "spec": spec, "folder": folder, "result": result, "seed": spec.seed,
                     "ckpt": folder / CHECKPOINT, "state": None, "resuming": resuming,
                     "pretrained": pretrained[n] if pretrained else None})

    def build(group):
        net = model_lib.build_supernet(s0.space, s0.data, s0.ops, [j["seed"] for j in group], s0.net_config())
        for t, j in enumerate(group):
            if j["pretrained"] is not None:
                load_pretrained_ops(net, t, *j["pretrained"], spec=j["spec"])
        return net

    def fail(j, message):
        failed = finish(j["result"], j["folder"], Status.FAILED, error=message[:500])
        results[j["n"]] = {**failed, "dir": str(j["folder"])}

    kw = dict(search=True, order=s0.order, train_theta=not frozen)
    jobs = _resumable(jobs, s0.epochs, build, fail, **kw)
    for chunk in _chunks(jobs, max_batch):
        log = _batch_log(specs, [j["folder"] for j in chunk], quiet)
        desc = f"search {s0.space}/{s0.data}/{s0.ops}" + (f" {len(chunk)} trials" if len(chunk) > 1
                                                          else f" seed {chunk[0]['seed']}")
        with _failing(chunk):
            for group, net, trainer in _train_groups(chunk, s0.epochs, build, device=device, log=log, desc=desc,
                                                     tensorboard=tensorboard, **kw):
                one_shot = evaluate_averagings(net, s0.data, device, sigma_n=s0.sigma_n)
                ranking = _one_shot_ranking(net, group, device)
                for t, j in enumerate(group):
                    results[j["n"]] = _finish_search(j, net, trainer, t, one_shot[t], ranking[t], log)
    return results


def _one_shot_ranking(net, group, device) -> list[list[dict]]:
    """Per trial: the candidates random search trains for the same seed, and the derived genotype,
    scored on the trained supernet with one-hot alpha (no training): the supernet's ranking, to set
    against their stand-alone architecture PSNR."""
    s0 = group[0]["spec"]
    count = METHODS["random-search"].candidates
    cands = [baseline_genotypes(j["spec"].replace(method="random-search", stage="train", candidates=count))
             for j in group]
    derived = net.genotypes()
    out = [[] for _ in group]
    rows = [("derived", derived)] + [(f"random-search candidate {k}", [c[k] for c in cands]) for k in range(count)]
    for kind, genotypes in rows:
        scores = one_hot_psnr(net, genotypes, s0.data, device, sigma_n=s0.sigma_n, averaging=s0.psnr)
        for t in range(len(group)):
            g = {k: v for k, v in genotypes[t].to_dict().items() if k != "alphas"}
            out[t].append({"kind": kind, "genotype": g, "one_hot_psnr": scores[t]})
    return out


def _finish_search(j, net, trainer, t, averagings, ranking, log) -> dict:
    spec, folder, result = j["spec"], j["folder"], j["result"]
    one_shot = averagings[spec.psnr]
    history = trainer.history[t]
    result["wall_seconds"]["search"] = history["seconds"] and sum(history["seconds"])
    result["provenance"]["trials_in_batch"] = trainer.T
    if trainer.diverged[t] is not None or not finite(one_shot):
        reason = trainer.diverged[t] or "one-shot PSNR is not finite"
        log(f"seed {spec.seed} diverged: {reason}", folder)
        finish(result, folder, Status.DIVERGED, error=reason, history=history)
    else:
        genotype = net.genotype(t)
        genotype.to_json(folder / "genotype.json")
        save_torch(folder / "supernet.pt", {"kind": "supernet", "spec": spec.to_dict(),
                                            "model": {k: v[t:t + 1].clone() for k, v in net.state_dict().items()},
                                            "genotype": genotype.to_dict()})
        diagnostics = alpha_diagnostics(history["alphas_init"], genotype.alphas)
        finish(result, folder, Status.SEARCHED, one_shot_psnr=one_shot, genotype=genotype.to_dict(),
               alphas=genotype.alphas, history=history, diagnostics=diagnostics, one_shot_ranking=ranking,
               psnr_averagings={"one_shot": averagings})
        log(f"seed {spec.seed} search done: one-shot PSNR {one_shot:.2f} dB, genotype {genotype.describe()}", folder)
    (folder / CHECKPOINT).unlink(missing_ok=True)
    return {**result, "dir": str(folder)}


# ---------------------------------------------------------------------------- trainings
def baseline_genotypes(spec: TrialSpec) -> list[Genotype]:
    """The architectures a training trial trains: its genotype (a retrain or a genotype file), or
    what its method draws (das.vocab.Method.architectures) from the trial's architecture stream."""
    if spec.genotype is not None:
        return [Genotype.from_dict(spec.genotype, "genotype")]
    return METHODS[spec.method].architectures(spec, torch.Generator().manual_seed(ARCH_STREAM + spec.seed))


def run_train(spec: TrialSpec, root, **kw) -> dict:
    """Train a baseline, a genotype file, or a searched genotype (one retrain seed); write result.json."""
    return run_trains([spec], root, **kw)[0]


def run_trains(specs: list[TrialSpec], root, *, device="cpu", resume=False, overwrite=False, quiet=False,
               args: dict | None = None, role: str | None = None, max_batch: int = 64,
               tensorboard: bool = False) -> list[dict]:
    """Training trials of one batch key: every network they train (random search: each candidate)
    runs in batches of at most max_batch networks; one result per spec."""
    if any(s.stage != "train" for s in specs) or len({batch_key(s) for s in specs}) > 1:
        raise ValueError("run_trains takes training specifications of one batch key")
    results: list[dict | None] = [None] * len(specs)
    pending, jobs = {}, []
    for n, spec, folder, resuming, previous, result in _open_batch(specs, root, results, resume, overwrite, device,
                                                                   args, role):
        earlier = previous.get("candidates") if previous else None
        result["candidates"] = earlier if isinstance(earlier, list) else []
        if METHODS[spec.method].kind == "search":
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
            jobs.append({"n": n, "k": k, "spec": spec, "folder": folder, "genotype": genotype, "tag": tag,
                         "seed": spec.train_seed(), "ckpt": folder / f"{tag}_checkpoint.pt", "state": None,
                         "resuming": resuming})
    s0 = specs[0]

    def build(group):
        return model_lib.build_network([j["genotype"] for j in group], s0.data, [j["seed"] for j in group],
                                       s0.net_config())

    failed = set()

    def fail(j, message):  # a trial with one unusable checkpoint fails as a whole, its other networks too
        failed.add(j["n"])
        p = pending[j["n"]]
        if p["result"]["status"] == Status.RUNNING:
            results[j["n"]] = {**finish(p["result"], p["folder"], Status.FAILED, error=message[:500]),
                               "dir": str(p["folder"])}

    jobs = [j for j in _resumable(jobs, s0.train_epochs(), build, fail) if j["n"] not in failed]
    for n in failed:
        pending.pop(n)
    for chunk in _chunks(jobs, max_batch):
        log = _batch_log(specs, list(dict.fromkeys(j["folder"] for j in chunk)), quiet)
        desc = f"train {s0.space}/{s0.data}" + (f" {len(chunk)} networks" if len(chunk) > 1
                                                else f" seed {chunk[0]['seed']}")
        with _failing(list(pending.values())):
            for group, net, trainer in _train_groups(chunk, s0.train_epochs(), build, device=device, log=log,
                                                     desc=desc, tensorboard=tensorboard):
                psnrs = evaluate_averagings(net, s0.data, device, sigma_n=s0.sigma_n)
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


def _finish_network(j, net, trainer, t, averagings, log) -> dict:
    psnr = averagings[j["spec"].psnr]
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
            "seconds": seconds, "history": history, "error": None, "psnr_averagings": averagings}


def _finish_train(p) -> dict:
    result, folder = p["result"], p["folder"]
    result["provenance"]["trials_in_batch"] = None
    candidates = result["candidates"]
    scored = [c for c in candidates if c["status"] == Status.COMPLETE]
    if p["count"] == 1:
        only = result.pop("candidates")[0]
        result["history"] = only["history"]
        if only["status"] != Status.COMPLETE:
            return {**finish(result, folder, Status.DIVERGED, error=only["error"], genotype=only["genotype"]),
                    "dir": str(folder)}
        _add_averagings(result, only.get("psnr_averagings"))
        finish(result, folder, Status.COMPLETE, architecture_psnr=only["architecture_psnr"], genotype=only["genotype"])
    elif scored:
        best = max(scored, key=lambda c: c["architecture_psnr"])
        _add_averagings(result, best.get("psnr_averagings"))
        finish(result, folder, Status.COMPLETE, architecture_psnr=best["architecture_psnr"], genotype=best["genotype"])
    else:
        return {**finish(result, folder, Status.DIVERGED, error="every candidate diverged"), "dir": str(folder)}
    Genotype.from_dict(result["genotype"]).to_json(folder / "genotype.json")
    return {**result, "dir": str(folder)}


def _add_averagings(result: dict, architecture: dict | None) -> None:
    """The trained network's PSNR under every averaging, beside the search's one-shot ones (a retrain)."""
    if architecture is not None:
        result["psnr_averagings"] = {**(result.get("psnr_averagings") or {}), "architecture": architecture}


# ---------------------------------------------------------------------------- the runner's unit
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


# ---------------------------------------------------------------------------- DAS-single
def pretrained_ops(ops: str) -> list[str]:
    """The ops DAS-single takes pretrained and frozen: those of the op set that carry a CNN."""
    return [op for op in OP_SETS[ops].ops if op in CNN_OPS]


def pretrain_das_single(specs: list[TrialSpec], root, *, device="cpu", quiet=False, max_batch=64,
                        tensorboard=False) -> list[tuple]:
    """DAS-single's pretrained ops: per spec, for each CNN op of its op set, the network of that op at
    every layer (grad-only, net-only) with the same settings, trained as ordinary baseline trials
    (reused when they exist). Returns their network.pt paths, in pretrained_ops order."""
    paths = [[] for _ in specs]
    for op in pretrained_ops(specs[0].ops):
        method = uniform_method(op)
        base = [s.replace(method=method, stage="train", candidates=None) for s in specs]
        done = run_trains(base, root, device=device, resume=True, quiet=quiet, max_batch=max_batch,
                          tensorboard=tensorboard)
        for n, r in enumerate(done):
            if r["status"] != Status.COMPLETE:
                raise UserError(f"{r['dir']}: the {method} network DAS-single needs did not train ({r['status']}); "
                                "look at its log.txt")
            unlock_trial(Path(r["dir"]))
            paths[n].append(Path(r["dir"]) / "network.pt")
    return [tuple(p) for p in paths]


def load_pretrained_ops(net: torch.nn.Module, t: int, *paths, spec: TrialSpec) -> None:
    """Trial t's layer j ops take the weights of layer j of the pretrained networks (one per op of
    pretrained_ops). A network that cannot be used names its trial and how to train it again."""
    for path, op in zip(paths, pretrained_ops(spec.ops)):
        path = Path(path)
        redo = (f"train it again: python retrain.py --method {uniform_method(op)} --ops {spec.ops} --data {spec.data} "
                f"--seed {spec.seed} --overwrite (with this search's settings), or delete {path.parent}")
        ck = load_checkpoint(path, "pretrained checkpoint", redo)
        g = ck.get("genotype") if isinstance(ck.get("genotype"), dict) else {}
        if ck.get("kind") != "network" or g.get("space") != "seq" or set(g.get("layers") or []) != {op}:
            raise UserError(f"{path}: not a sequential {op}-only network checkpoint; {redo}")
        if ck.get("data") != spec.data or g.get("width") != spec.width:
            raise UserError(f"{path}: pretrained for data {ck.get('data')!r} width {g.get('width')}, but the "
                            f"search uses {spec.data!r} width {spec.width}; {redo}")
        source = model_lib.build_network(Genotype.from_dict(g, str(path)), spec.data, [0], spec.net_config())
        try:
            source.load_state_dict(ck["model"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise UserError(f"{path}: weights do not fit a {op}-only network ({type(exc).__name__}); {redo}") from None
        for layer, src in zip(net.layers, source.layers):
            layer.bank.copy_slot(t, layer.cnn_slot[op], src.bank, 0, 0)
            if OPS[op].tau:
                with torch.no_grad():
                    layer.tau[t] = src.tau[0]
