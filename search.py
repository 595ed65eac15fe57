"""DAS search: train the supernet, derive the genotype, record the one-shot PSNR.

    python search.py --space seq --ops all --data blur --seed 3 --preset H1
    python search.py --space cell --ops good --seed 0-4 --epochs 5           # five quick CPU runs
    python search.py --method das-single --preset BOHB-DAS-single --seed 0   # pretrains grad-/net-only first

Writes results/<space>/<data>/<ops>/<method>/<preset>/seed<N>[-<settings>]/{args.json, log.txt,
result.json, genotype.json, supernet.pt}; the folder name carries every setting that differs
from the defaults (docs/spec.md), so runs of different settings never share a folder. Retrain the genotype
with `python retrain.py --genotype <folder>/genotype.json`.
"""
from __future__ import annotations


from das import cli
from das.folder import Status, check_resume_target
from das.locks import unlock_all
from das.stages import run_searches
from das.utils import UserError, set_threads
from das.vocab import display, search_methods


def get_parser():
    p = cli.parser(__doc__)
    cli.add_setting_args(p)
    p.add_argument("--method", default="das", choices=search_methods(),
                   help="the search method: " + ", ".join(f"{m} ({display('method', m)})" for m in search_methods())
                        + "; das-single searches alpha only over frozen pretrained ops (paper 5.4) (default das)")
    p.add_argument("--pretrain", action="store_true",
                   help="(kept for old command lines) das-single always trains or reuses its grad-only and "
                        "net-only networks first")
    p.add_argument("--pretrained-grad", default=None, help="removed: das-single pretrains in its own trial folders")
    p.add_argument("--pretrained-net", default=None, help="removed: das-single pretrains in its own trial folders")
    p.add_argument("--no-plot", action="store_true", help="do not draw genotype.png")
    cli.add_run_args(p)
    return p


def main(args) -> dict:
    """Run one search per seed; returns the last result (with "results": all of them)."""
    try:
        return _main(args)
    finally:
        unlock_all()


def _main(args) -> dict:
    if args.pretrained_grad or args.pretrained_net:
        raise UserError("--pretrained-grad/--pretrained-net were removed: das-single trains (or reuses) the "
                        "grad-only and net-only networks of the same settings itself; drop the flags")
    set_threads(args.threads)
    device = cli.check_device(args)
    cli.check_tensorboard(args)
    specs = [cli.spec_from_args(args, method=args.method, seed=s) for s in cli.seeds_of(args)]
    if args.resume:
        for spec in specs:
            check_resume_target(spec, args.out)
    # every seed in one computation (batches of at most --max-batch trials)
    results = run_searches(specs, args.out, device=device, resume=args.resume, overwrite=args.overwrite,
                           quiet=args.quiet, args=vars(args), max_batch=args.max_batch, tensorboard=args.tensorboard)
    unlock_all()
    for r in results:
        if r["status"] == Status.SEARCHED and not args.no_plot:
            _draw(r)
        if not args.quiet and r["status"] != Status.FAILED:
            _report(r)
    cli.raise_failed(results)
    return {**results[-1], "results": results}


def _draw(r):
    from pathlib import Path

    from das.genotype import Genotype
    from das.plot import plot_genotype

    target = Path(r["dir"]) / "genotype.png"
    if not target.exists():
        plot_genotype(Genotype.from_dict(r["genotype"]), target)


def _report(r):
    cli.report(r, "one_shot_psnr", Status.SEARCHED, f"python retrain.py --genotype {r['dir']}/genotype.json")


if __name__ == "__main__":
    cli.run_main(main, get_parser())
