"""One trial on disk: the run folder, its files, and the search / retrain stages that fill it.

search.py, retrain.py and bohb.py call these functions, so every stage is written once.
A trial folder holds args.json, log.txt, result.json, genotype.json and checkpoints; every
file is written atomically, and an epoch checkpoint lets a killed run continue (--resume).
"""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import torch

from das import model as model_lib
from das.genotype import Genotype
from das.hparams import HParams
from das.train import Trainer, evaluate
from das.utils import (Diverged, Log, UserError, load_checkpoint, read_json, save_torch, set_seed, versions,
                       write_json)

DATA = ("blur", "downsample")
SPACES = ("seq", "cell")
OPS = ("good", "all")
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


def check_choice(value, choices, what):
    if value not in choices:
        raise UserError(f"unknown {what} {value!r}; choose one of {list(choices)}")


def prepare_dir(path: Path, resume: bool, overwrite: bool, stage_files=(RESULT, CHECKPOINT)) -> bool:
    """Make the trial folder. Returns True when an earlier run's files are to be resumed."""
    path = Path(path)
    existing = [f for f in stage_files if (path / f).exists()]
    if path.is_dir():
        lock_trial(path)  # before anything is deleted or read
    if existing and overwrite:
        unlock_trial(path)
        shutil.rmtree(path)
    elif existing and not resume:
        raise UserError(f"{path}: run folder already holds {', '.join(existing)}; pass --resume to continue it "
                        "or --overwrite to start again")
    path.mkdir(parents=True, exist_ok=True)
    lock_trial(path)
    return bool(existing) and resume


_locks: dict[str, int] = {}


def lock_trial(path: Path) -> None:
    """Hold an exclusive lock on the trial folder until this process ends, so two sweeps (or a sweep
    and a hand-started run) never write one trial at once."""
    path = Path(path)
    key = str(path.resolve())
    if key in _locks:
        return
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{path}: another process is running this trial; wait for it or stop it first") from None
    _locks[key] = fd


def unlock_trial(path: Path) -> None:
    fd = _locks.pop(str(Path(path).resolve()), None)
    if fd is not None:
        os.close(fd)


def unlock_all() -> None:
    """Release every trial this process holds (a stage is done; a long-lived BOHB worker goes on)."""
    for key in list(_locks):
        os.close(_locks.pop(key))


def read_result(path: Path) -> dict | None:
    f = Path(path) / RESULT
    return read_json(f, "result file", "delete the trial folder or rerun with --overwrite") if f.exists() else None


def base_result(space, data, ops, method, hp: HParams, seed, **extra) -> dict:
    return {"space": space, "data": data, "ops": ops, "method": method,
            "hparams": hp.to_dict(), "preset": hp.name, "seed": seed, "status": "running",
            "one_shot_psnr": None, "architecture_psnr": None, "genotype": None, "alphas": None,
            "wall_seconds": {}, "versions": versions(), **extra}


def _train(trainer: Trainer, ckpt: Path, resume: bool, log: Log):
    if resume and ckpt.exists():
        trainer.load_state_dict(load_checkpoint(ckpt, "epoch checkpoint", "rerun with --overwrite"))
        log(f"resuming from epoch {trainer.epoch}")
    trainer.run(ckpt)


def pretrained_supernet(net: torch.nn.Module, grad_ckpt, net_ckpt, space, data, width):
    """DAS-single: layer j's grad and net ops take the frozen weights of layer j of a pretrained
    grad-only and net-only network (checkpoints written by retrain.py --arch grad-only|net-only)."""
    if space != "seq":
        raise UserError("das-single is defined for the sequential space (paper 5.4); use --space seq")
    fix = "make it with `python retrain.py --arch {0} --space seq --data " + data + "`"
    for path, op in ((grad_ckpt, "grad"), (net_ckpt, "net")):
        if path is None:
            raise UserError(f"das-single needs --pretrained-{op} PATH (a network.pt); " + fix.format(f"{op}-only")
                            + ", or pass --pretrain to train both first")
        ck = load_checkpoint(path, "pretrained checkpoint", fix.format(f"{op}-only"))
        g = ck.get("genotype") or {}
        if ck.get("kind") != "network" or g.get("space") != "seq":
            raise UserError(f"{path}: not a sequential network checkpoint; " + fix.format(f"{op}-only"))
        if set(g.get("layers", [])) != {op}:
            raise UserError(f"{path}: expected a {op}-only network, got layers {g.get('layers')}; "
                            + fix.format(f"{op}-only"))
        if ck.get("data") != data:
            raise UserError(f"{path}: pretrained on data {ck.get('data')!r}, but this search uses {data!r}; "
                            + fix.format(f"{op}-only"))
        if g.get("width") != width:
            raise UserError(f"{path}: pretrained with width {g.get('width')}, but this search uses {width}; "
                            "pass the same --width")
        source = model_lib.build_network(Genotype.from_dict(g, str(path)), data)
        source.load_state_dict(ck["model"])
        for layer, src in zip(net.layers, source.layers):
            slot = layer.cnn_slot[op]
            layer.bank.copy_slot(slot, src.bank, 0)
            if op == "grad":
                with torch.no_grad():
                    layer.tau.copy_(src.tau)


def run_search(out_dir: Path, *, space, data, ops, hp: HParams, seed: int, epochs: int, order: int = 1,
               method: str = "das", width: int = 16, device="cpu", batches_per_epoch: int = 19,
               resume: bool = False, overwrite: bool = False, pretrained=(None, None), quiet=False,
               args: dict | None = None) -> dict:
    """Search, derive, write genotype.json / supernet.pt / result.json into out_dir; return the result."""
    check_choice(space, SPACES, "space")
    check_choice(data, DATA, "data formation")
    check_choice(ops, OPS, "op set")
    resuming = prepare_dir(out_dir, resume, overwrite)
    previous = read_result(out_dir) if resuming else None
    if previous and previous.get("status") in ("searched", "complete", "diverged"):
        return previous  # already finished: a sweep skips it
    log = Log(out_dir / "log.txt", quiet)
    if args is not None:
        write_json(out_dir / "args.json", args)
    set_seed(seed)
    net = model_lib.build_supernet(space, data, ops, width)
    if method == "das-single":
        pretrained_supernet(net, *pretrained, space, data, width)
    result = base_result(space, data, ops, method, hp, seed, order=order, epochs=epochs, width=width)
    write_json(out_dir / RESULT, result)
    trainer = Trainer(net, hp, data, seed, epochs, device, search=True, order=order,
                      train_theta=(method != "das-single"), batches_per_epoch=batches_per_epoch, log=log,
                      desc=f"search {space}/{data}/{ops} seed {seed}")
    try:
        _train(trainer, out_dir / CHECKPOINT, resuming, log)
    except Diverged as exc:
        log(f"diverged: {exc}")
        result.update(status="diverged", error=str(exc), history=trainer.history)
        write_json(out_dir / RESULT, result)
        return result
    one_shot = evaluate(net, data, device)
    genotype = net.genotype()
    genotype.to_json(out_dir / "genotype.json")
    save_torch(out_dir / "supernet.pt", {"kind": "supernet", "space": space, "data": data, "ops": ops,
                                         "width": width, "model": net.state_dict(),
                                         "genotype": genotype.to_dict()})
    result.update(status="searched", one_shot_psnr=one_shot, genotype=genotype.to_dict(),
                  alphas=genotype.alphas, history=trainer.history)
    result["wall_seconds"]["search"] = trainer.elapsed
    write_json(out_dir / RESULT, result)
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
    log(f"search done: one-shot PSNR {one_shot:.2f} dB, genotype {genotype.describe()}")
    return result


def train_genotype(out_dir: Path, genotype: Genotype, *, hp: HParams, seed: int, epochs: int, data=None,
                   device="cpu", batches_per_epoch: int = 19, resume: bool = False, tag: str = "retrain",
                   quiet=False) -> dict:
    """Train a genotype from scratch (fresh init from `seed`); write network.pt (or <tag>.pt).

    Returns {"architecture_psnr", "seconds", "history", "status"}.
    """
    data = data or genotype.data
    log = Log(Path(out_dir) / "log.txt", quiet)
    set_seed(seed)
    net = model_lib.build_network(genotype, data)
    trainer = Trainer(net, hp, data, seed, epochs, device, search=False, batches_per_epoch=batches_per_epoch,
                      log=log, desc=f"{tag} {genotype.space}/{data} seed {seed}")
    ckpt = Path(out_dir) / f"{tag}_checkpoint.pt"
    try:
        _train(trainer, ckpt, resume, log)
    except Diverged as exc:
        log(f"{tag} diverged: {exc}")
        return {"status": "diverged", "architecture_psnr": None, "seconds": trainer.elapsed,
                "history": trainer.history, "error": str(exc)}
    psnr = evaluate(net, data, device)
    name = "network.pt" if tag == "retrain" else f"{tag}.pt"
    save_torch(Path(out_dir) / name, {"kind": "network", "data": data, "genotype": genotype.to_dict(),
                                      "model": net.state_dict(), "architecture_psnr": psnr, "seed": seed})
    ckpt.unlink(missing_ok=True)
    log(f"{tag} done: architecture PSNR {psnr:.2f} dB ({genotype.describe()})")
    return {"status": "complete", "architecture_psnr": psnr, "seconds": trainer.elapsed,
            "history": trainer.history}
