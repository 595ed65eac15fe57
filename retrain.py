"""Retrain an architecture from scratch and record its architecture PSNR; run the baselines.

    python retrain.py --genotype results/seq/blur/all/das/H1/seed3/genotype.json
    python retrain.py --arch grad-only --space seq --data blur --ops good --seed 3
    python retrain.py --arch random-search --ops all --seed 3     # best of 5 random architectures

With --genotype the architecture PSNR goes into that trial's result.json (same folder); a
baseline (--arch) gets its own trial folder under results/<space>/<data>/<ops>/<arch>/<preset>/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from das import model as model_lib
from das.genotype import Genotype, load_genotype
from das.hparams import load_hparams, HParams
from das.trial import (DATA, OPS, RESULT, SPACES, base_result, check_choice, lock_trial, prepare_dir, read_result,
                       train_genotype, unlock_all)
from das.utils import Log, UserError, add_run_args, run_main, set_threads, trial_dir, write_json

ARCHS = ("grad-only", "net-only", "random", "random-search")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--genotype", help="genotype.json to retrain (written by search.py)")
    src.add_argument("--arch", choices=ARCHS, help="a baseline architecture instead of a genotype")
    p.add_argument("--space", default=None, help=f"{' | '.join(SPACES)} (baselines; default seq)")
    p.add_argument("--data", default=None, help=f"{' | '.join(DATA)} (default: the genotype's, or blur)")
    p.add_argument("--ops", default=None, help=f"{' | '.join(OPS)} (baselines; default all)")
    p.add_argument("--seed", type=int, default=None,
                   help="retrain seed: fresh init and data (default: the search's seed, or 0)")
    p.add_argument("--hparams", default=None,
                   help="preset or JSON for the theta optimiser (default: the search's preset, or H1)")
    p.add_argument("--epochs", type=int, default=50, help="training epochs (default 50)")
    p.add_argument("--candidates", type=int, default=5, help="random-search: architectures to try (default 5)")
    p.add_argument("--width", type=int, default=16, help="CNN width C for baselines (default 16)")
    add_run_args(p, "results tree for baselines (default results/)")
    return p


def _retrain_genotype(args) -> dict:
    path = Path(args.genotype)
    genotype = load_genotype(path)
    for flag, value, have in (("--space", args.space, genotype.space), ("--data", args.data, genotype.data),
                              ("--ops", args.ops, genotype.ops)):
        if value is not None and value != have:
            raise UserError(f"{path}: mismatched genotype: it is for {flag.lstrip('-')} {have!r}, "
                            f"but {flag} {value!r} was given; drop {flag} or use a matching genotype")
    out_dir = path.parent
    lock_trial(out_dir)
    result = read_result(out_dir)
    if result is not None and result.get("architecture_psnr") is not None and not args.overwrite:
        if args.resume:
            return result
        raise UserError(f"{out_dir / RESULT}: already retrained; pass --resume to keep it or --overwrite to retrain")
    if result is not None and result.get("genotype") not in (None, genotype.to_dict()):
        raise UserError(f"{path}: does not match the genotype recorded in {out_dir / RESULT}; "
                        "rerun search.py or retrain a copy of the genotype in its own folder")
    if args.hparams is None and result is not None and "hparams" in result:
        # the search's own settings, which may come from a user's file rather than a preset
        hp = HParams.from_dict(result["hparams"], result.get("preset", "H1"), str(out_dir / RESULT))
    else:
        hp = load_hparams(args.hparams or "H1")
    seed = args.seed if args.seed is not None else int((result or {}).get("seed", 0))
    if result is None:
        result = base_result(genotype.space, genotype.data, genotype.ops, "genotype", hp, seed,
                             genotype=genotype.to_dict())
    write_json(out_dir / "retrain_args.json", {**vars(args), "hparams_values": hp.to_dict(), "seed": seed})
    r = train_genotype(out_dir, genotype, hp=hp, seed=seed, epochs=args.epochs, device=args.device,
                       batches_per_epoch=args.batches_per_epoch, resume=args.resume, quiet=args.quiet)
    result["architecture_psnr"] = r["architecture_psnr"]
    result["retrain"] = {"seed": seed, "epochs": args.epochs, "status": r["status"], "history": r["history"]}
    result["wall_seconds"]["retrain"] = r["seconds"]
    result["status"] = "complete" if r["status"] == "complete" else "diverged"
    write_json(out_dir / RESULT, result)
    result["dir"] = str(out_dir)
    return result


def _baseline(args) -> dict:
    space, data, ops = args.space or "seq", args.data or "blur", args.ops or "all"
    check_choice(space, SPACES, "space")
    check_choice(data, DATA, "data formation")
    check_choice(ops, OPS, "op set")
    hp = load_hparams(args.hparams or "H1")
    seed = 0 if args.seed is None else args.seed
    out_dir = trial_dir(args.out, space, data, ops, args.arch, hp.name, seed)
    resuming = prepare_dir(out_dir, args.resume, args.overwrite)
    result = read_result(out_dir) if resuming else None
    if result is not None and result.get("status") in ("complete", "diverged"):
        result["dir"] = str(out_dir)
        return result
    write_json(out_dir / "args.json", {**vars(args), "hparams_values": hp.to_dict()})
    if args.arch in ("grad-only", "net-only"):
        op = args.arch.split("-")[0]
        genotypes = [model_lib.uniform_genotype(space, data, ops, op, args.width)]
    else:
        # the architectures come from their own stream, apart from the training seed
        g = torch.Generator().manual_seed(1_000_000 + seed)
        count = 1 if args.arch == "random" else args.candidates
        genotypes = [model_lib.random_genotype(space, data, ops, g, args.width) for _ in range(count)]
    if result is None:
        result = base_result(space, data, ops, args.arch, hp, seed, epochs=args.epochs, candidates=[])
    write_json(out_dir / RESULT, result)
    log = Log(out_dir / "log.txt", args.quiet)
    for k, genotype in enumerate(genotypes):
        if k < len(result["candidates"]):
            continue  # finished before an interruption
        tag = "retrain" if len(genotypes) == 1 else f"candidate{k}"
        r = train_genotype(out_dir, genotype, hp=hp, seed=seed, epochs=args.epochs, device=args.device,
                           batches_per_epoch=args.batches_per_epoch, resume=args.resume, tag=tag,
                           quiet=args.quiet)
        result["candidates"].append({"genotype": genotype.to_dict(), "architecture_psnr": r["architecture_psnr"],
                                     "status": r["status"], "seconds": r["seconds"],
                                     "final_train_loss": (r["history"]["train_loss"] or [None])[-1]})
        result["wall_seconds"]["retrain"] = sum(c["seconds"] for c in result["candidates"])
        write_json(out_dir / RESULT, result)
    scored = [c for c in result["candidates"] if c["architecture_psnr"] is not None]
    if scored:
        best = max(scored, key=lambda c: c["architecture_psnr"])
        result.update(status="complete", architecture_psnr=best["architecture_psnr"], genotype=best["genotype"])
        Genotype.from_dict(best["genotype"]).to_json(out_dir / "genotype.json")
    else:
        result["status"] = "diverged"
    write_json(out_dir / RESULT, result)
    log(f"{args.arch}: architecture PSNR {result['architecture_psnr']}")
    result["dir"] = str(out_dir)
    return result


def main(args) -> dict:
    try:
        return _main(args)
    finally:
        unlock_all()


def _main(args) -> dict:
    set_threads(args.threads)
    if args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    result = _retrain_genotype(args) if args.genotype else _baseline(args)
    if not args.quiet:
        print(f"{result['dir']}: status {result['status']}, architecture PSNR {result['architecture_psnr']}",
              file=sys.stderr)
    return result


if __name__ == "__main__":
    run_main(main, get_parser())
