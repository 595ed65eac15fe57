"""DAS search: train the supernet, derive the genotype, record the one-shot PSNR.

    python search.py --space seq --ops all --data blur --seed 3 --hparams H1
    python search.py --space cell --ops good --seed 0 --epochs 5          # a quick CPU run
    python search.py --method das-single --pretrained-grad G.pt --pretrained-net N.pt

Writes results/<space>/<data>/<ops>/<method>/<preset>/seed<seed>/{args.json, log.txt,
result.json, genotype.json, supernet.pt}. Retrain the genotype with retrain.py --genotype.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from das.hparams import load_hparams
from das.trial import DATA, OPS, SPACES, run_search, unlock_all
from das.utils import UserError, add_run_args, run_main, set_threads, trial_dir


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="seq", help=f"search space: {' | '.join(SPACES)} (default seq)")
    p.add_argument("--ops", default="all", help=f"op set: {' | '.join(OPS)} (default all)")
    p.add_argument("--data", default="blur", help=f"data formation: {' | '.join(DATA)} (default blur)")
    p.add_argument("--seed", type=int, default=0, help="trial seed: init, data streams, noise (default 0)")
    p.add_argument("--hparams", default="H1", help="preset name in configs/ or a JSON file (default H1)")
    p.add_argument("--epochs", type=int, default=50, help="search epochs of 19 batches of 128 (default 50)")
    p.add_argument("--order", type=int, default=1, choices=(1, 2), help="1: first-order DAS, 2: unrolled (default 1)")
    p.add_argument("--method", default="das", choices=("das", "das-single"),
                   help="das, or das-single: search alpha only over frozen pretrained ops (paper 5.4)")
    p.add_argument("--pretrained-grad", default=None, help="das-single: network.pt of a grad-only network")
    p.add_argument("--pretrained-net", default=None, help="das-single: network.pt of a net-only network")
    p.add_argument("--pretrain", action="store_true",
                   help="das-single: train the grad-only and net-only networks first (same seed and preset)")
    p.add_argument("--width", type=int, default=16, help="channels C of the 2-layer CNN (default 16)")
    p.add_argument("--no-plot", action="store_true", help="do not draw genotype.png")
    add_run_args(p)
    return p


def main(args) -> dict:
    try:
        return _main(args)
    finally:
        unlock_all()


def _main(args) -> dict:
    set_threads(args.threads)
    if args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    hp = load_hparams(args.hparams)
    out_dir = trial_dir(args.out, args.space, args.data, args.ops, args.method, hp.name, args.seed)
    pretrained = (args.pretrained_grad, args.pretrained_net)
    if args.method == "das-single" and args.pretrain:
        import retrain

        paths = []
        for arch in ("grad-only", "net-only"):
            r = retrain.main(retrain.get_parser().parse_args([
                "--arch", arch, "--space", args.space, "--data", args.data, "--ops", args.ops,
                "--seed", str(args.seed), "--hparams", args.hparams, "--epochs", str(args.epochs),
                "--batches-per-epoch", str(args.batches_per_epoch), "--out", args.out, "--device", args.device,
                "--width", str(args.width), "--resume"] + (["--quiet"] if args.quiet else [])))
            paths.append(str(Path(r["dir"]) / "network.pt"))
        pretrained = tuple(paths)
    result = run_search(out_dir, space=args.space, data=args.data, ops=args.ops, hp=hp, seed=args.seed,
                        epochs=args.epochs, order=args.order, method=args.method, width=args.width,
                        device=args.device, batches_per_epoch=args.batches_per_epoch, resume=args.resume,
                        overwrite=args.overwrite, pretrained=pretrained, quiet=args.quiet,
                        args={**vars(args), "hparams_values": hp.to_dict()})
    result["dir"] = str(out_dir)
    if result["status"] == "searched" and not args.no_plot and not (out_dir / "genotype.png").exists():
        from das.genotype import Genotype
        from das.plot import plot_genotype

        plot_genotype(Genotype.from_dict(result["genotype"]), out_dir / "genotype.png")
    if not args.quiet:
        print(f"{out_dir}: status {result['status']}, one-shot PSNR {result.get('one_shot_psnr')}", file=sys.stderr)
    return result


if __name__ == "__main__":
    run_main(main, get_parser())
