"""Retrain an architecture from scratch and record its architecture PSNR; run the baselines.

    python retrain.py --genotype results/seq/blur/all/das/H1/seed3/genotype.json             # retrain seed 3
    python retrain.py --genotype results/seq/blur/all/das/H1/seed3/genotype.json --seed 0-4  # five retrains
    python retrain.py --method grad-only --space seq --data blur --ops good --seed 3
    python retrain.py --method random-search --ops all --seed 0-74     # best of 5 random architectures
    python retrain.py --genotype results/seq/blur/all/das/H1            # every searched genotype there, one batch

A retrain of a searched genotype is a record of its own in <search folder>/retrain-seed<R>/ and
takes the search's settings (preset values, width, data, ...), when the search lies in a results
tree and no other --out is named; otherwise (a search folder copied elsewhere, or --out naming
another tree) it is retrained as a genotype file with the search's settings, under --out. A
genotype file from elsewhere goes to <out>/<space>/<data>/<ops>/genotype/<preset>/g<digest>/
retrain-seed<R>/; a baseline gets its own trial folder <out>/<space>/<data>/<ops>/<method>/
<preset>/seed<N>[-<settings>]/. Nothing is written outside --out (default results/) but beside
a searched genotype in its own tree.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from das import cli
from das.folder import Status, check_resume_target, read_result
from das.genotype import load_genotype
from das.locks import unlock_all
from das.spec import SETTINGS, TrialSpec, bare_genotype, batch_key, defaults, retrain_spec
from das.stages import run_trains
from das.utils import UserError, set_threads
from das.vocab import METHODS, training_methods

# what a retrain of a searched genotype takes from the search (a flag given must agree)
FROM_SEARCH = ("space", "ops", "data", "preset") + tuple(s.name for s in SETTINGS if s.name != "epochs")
DEFAULT_OUT = "results"


def get_parser():
    p = cli.parser(__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--genotype", nargs="+", help="genotype.json file(s) to retrain (written by search.py, or your "
                     "own), or folders: every searched genotype under them; those of one setting train as one batch")
    src.add_argument("--method", "--arch", dest="method", choices=training_methods(),
                     help="a baseline instead of a genotype (--arch is the old name)")
    cli.add_setting_args(p, seed_help="seed(s): a baseline's trial seed, or a genotype's retrain seed(s) "
                                      "(default: the search's seed, or 0)", defaults=False)
    p.add_argument("--candidates", type=int, default=None,
                   help="random-search: architectures to try (default 5)")
    cli.add_run_args(p, out_help=f"results tree (default {DEFAULT_OUT}/; a searched genotype in a results tree is "
                                 "retrained in that tree unless --out names another)")
    # None = not given: a retrain of a search takes the search's value, anything else the default
    p.set_defaults(**{k: None for k in ("space", "ops", "data", "seed", "out")})
    return p


def main(args) -> dict:
    try:
        return _main(args)
    finally:
        unlock_all()


def _main(args) -> dict:
    set_threads(args.threads)
    device = cli.check_device(args)
    cli.check_tensorboard(args)
    jobs = _genotype_jobs(args) if args.genotype else [_baseline_specs(args)]
    # trials of one results tree and one batch key train as one computation (at most --max-batch networks)
    groups: dict[tuple, list] = {}
    seen = set()
    for specs, root in jobs:
        for spec in specs:
            key = (str(root), json.dumps(spec.to_dict(), sort_keys=True))
            if key in seen:  # two files naming one search (its genotype and a retrain's copy): one trial
                continue
            seen.add(key)
            if args.resume:
                check_resume_target(spec, root)
            groups.setdefault((str(root), batch_key(spec)), []).append(spec)
    results = []
    for (root, _), specs in groups.items():
        results += run_trains(specs, root, device=device, resume=args.resume, overwrite=args.overwrite,
                              quiet=args.quiet, args=vars(args), max_batch=args.max_batch, tensorboard=args.tensorboard)
    unlock_all()
    if not args.quiet:
        for r in results:
            if r["status"] != Status.FAILED:
                _report(r)
    cli.raise_failed(results)
    return {**results[-1], "results": results}


def _defaults(args):
    for k, v in dict(space="seq", ops="all", data="blur", seed="0", out=DEFAULT_OUT, **defaults()).items():
        if getattr(args, k, 0) is None:
            setattr(args, k, v)


def _baseline_specs(args):
    _defaults(args)
    if args.candidates is not None and METHODS[args.method].candidates is None:
        raise UserError(f"--candidates applies to {', '.join(m for m in METHODS if METHODS[m].candidates)} only")
    return [cli.spec_from_args(args, method=args.method, seed=s, candidates=args.candidates)
            for s in cli.seeds_of(args)], args.out


def _searched(folder: Path) -> bool:
    """The folder holds a finished search of a study (not a baseline, not a BOHB evaluation)."""
    try:
        r = read_result(folder)
    except UserError:
        return False
    return bool(r) and r.get("status") == Status.SEARCHED and r["spec"].get("stage") == "search" \
        and r.get("role") is None


def genotype_files(items) -> list[Path]:
    """The genotype files named: files as they are, and under a folder every searched genotype (the
    genotype.json of each finished search; not a retrain's copy, a baseline's record or a BOHB
    evaluation's); one line when there is none."""
    files = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(f for f in path.rglob("genotype.json") if _searched(f.parent))
            if not found:
                raise UserError(f"{path}: no genotype.json of a finished search under this folder; run search.py "
                                "first or name the files")
            files += found
        else:
            files.append(path)
    if len(set(files)) != len(files):
        raise UserError("--genotype names a genotype file twice")
    return files


def _genotype_jobs(args) -> list[tuple]:
    """(specifications, results tree) per genotype file, each read with its own copy of the flags."""
    import copy

    return [_genotype_specs(copy.copy(args), path) for path in genotype_files(args.genotype)]


def _genotype_specs(args, path):
    path = Path(path)
    genotype = load_genotype(path)
    search = read_result(path.parent)
    spec = search.get("spec") if isinstance(search, dict) else None
    if isinstance(spec, dict) and spec.get("stage") == "train" and METHODS.get(spec.get("method")) \
            and METHODS[spec["method"]].kind == "search":
        # the genotype.json of a retrain is its search's genotype: retrain it as that search's, with its settings
        searched = path.parent.parent / "genotype.json"
        if searched.is_file() and bare_genotype(load_genotype(searched)) == bare_genotype(genotype):
            path, genotype = searched, load_genotype(searched)
            search = read_result(path.parent)
            spec = search.get("spec") if isinstance(search, dict) else None
    if isinstance(spec, dict) and spec.get("stage") == "search":
        return _search_retrain_specs(args, path, genotype, search, spec)
    for flag, value, have in (("space", args.space, genotype.space), ("data", args.data, genotype.data),
                              ("ops", args.ops, genotype.ops), ("width", args.width, genotype.width)):
        if value is not None and value != have:
            raise UserError(f"{path}: mismatched genotype: it is for {flag} {have!r}, but --{flag} {value!r} was "
                            f"given; drop --{flag} or use a matching genotype")
    args.space, args.ops, args.data, args.width = genotype.space, genotype.ops, genotype.data, genotype.width
    _defaults(args)
    g = bare_genotype(genotype)
    return [cli.spec_from_args(args, method="genotype", seed=s, genotype=g, retrain_seed=s)
            for s in cli.seeds_of(args)], args.out


def _search_retrain_specs(args, path: Path, genotype, search: dict, spec: dict):
    """A searched genotype: its retrain takes the search's settings; it lands beside the search when
    that lies in a results tree and --out names no other tree, else under --out as a genotype file."""
    search_spec = TrialSpec.from_dict(spec, str(path.parent / "result.json"))
    if search.get("status") != Status.SEARCHED:
        raise UserError(f"{path.parent}: the search is {search.get('status')}, not searched; finish it with "
                        "search.py --resume first")
    recorded = bare_genotype(search.get("genotype") or {})
    if recorded != bare_genotype(genotype):
        raise UserError(f"{path}: does not match the genotype recorded in {path.parent / 'result.json'}; "
                        "copy the genotype file elsewhere to retrain it as a genotype of its own")
    if args.set:
        raise UserError(f"{path}: a retrain of this search takes its hyperparameters; drop --set, or copy the "
                        "genotype file elsewhere to retrain it with other values")
    given = {k: getattr(args, k) for k in FROM_SEARCH if getattr(args, k) is not None}
    if "preset" in given:
        from das.hparams import load_hparams
        hp = load_hparams(given["preset"])
        given["preset"] = hp.name if hp.values() == search_spec.hparams else given["preset"] + " (other values)"
    clash = [k for k, v in given.items() if v != getattr(search_spec, k)]
    if clash:
        raise UserError(f"{path}: mismatched genotype: a retrain of this search takes its "
                        f"{', '.join(clash)} ({', '.join(f'{k}={getattr(search_spec, k)!r}' for k in clash)}); "
                        "drop those flags, or copy the genotype file elsewhere to retrain it with other settings")
    seeds = cli.seeds_of(args) if args.seed is not None else [search_spec.seed]
    folder = path.parent
    root = folder
    for _ in range(len(search_spec.folder(".").parts)):
        root = root.parent  # the results tree the search would live in
    in_tree = os.path.realpath(search_spec.folder(root)) == os.path.realpath(folder)
    if in_tree and (args.out is None or os.path.realpath(args.out) == os.path.realpath(root)):
        return [retrain_spec(search_spec, genotype, s, args.epochs) for s in seeds], root
    # a search folder copied out of its tree, or --out naming another tree: a genotype file with the
    # search's settings, under --out (never beside a folder whose tree is unknown)
    out = args.out or DEFAULT_OUT
    g = bare_genotype(genotype)
    epochs = args.epochs or search_spec.epochs
    return [search_spec.replace(method="genotype", stage="train", genotype=g, retrain_seed=s, epochs=epochs,
                                candidates=None) for s in seeds], out


def _report(r):
    cli.report(r, "architecture_psnr", Status.COMPLETE, f"python analyze.py {_tree_of(r)}")


def _tree_of(r) -> str:
    spec = TrialSpec.from_dict(r["spec"])
    root = Path(r["dir"])
    for _ in range(len(spec.folder(".").parts)):
        root = root.parent
    return str(root)


if __name__ == "__main__":
    cli.run_main(main, get_parser())
