"""Run a study of the paper (or a part of it) as many trials in parallel, skipping finished ones.

    python scripts/sweep.py --study table1 --seed 0-74          # the paper's Table 1 (75 seeds)
    python scripts/sweep.py --study table2 --data blur          # Table 2, blur only, its 100 seeds
    python scripts/sweep.py --study table1 --seed 0-1 --epochs 2 --out results/quick
    python scripts/sweep.py --study table3 --method das --preset H2 --dry-run

A trial is skipped when its result records the same full specification and is complete or
diverged; an interrupted one continues from its last epoch checkpoint, so the same command
continues a killed sweep. Each worker process runs one trial at a time with --threads torch
threads (default 1): on a small CPU, N processes x 1 thread finish more trials per hour.
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from das import cli  # noqa: E402
from das.study import STUDIES  # noqa: E402
from das.trial import DEFAULTS, Status, TrialSpec, group_batches, trial_done  # noqa: E402
from das.utils import UserError, parse_seeds  # noqa: E402


def get_parser():
    p = cli.parser(__doc__)
    p.add_argument("--study", default="table1", choices=sorted(STUDIES), help="which study (default table1)")
    p.add_argument("--seed", "--seeds", dest="seed", default=None,
                   help="seeds, e.g. 0-74 or 0,3,5 (default: the study's count, 75 or 100)")
    p.add_argument("--space", default=None, help="keep only these spaces (comma list)")
    p.add_argument("--data", default=None, help="keep only these data formations (comma list)")
    p.add_argument("--ops", default=None, help="keep only these op sets (comma list)")
    p.add_argument("--method", "--methods", dest="method", default=None, help="keep only these methods (comma list)")
    p.add_argument("--preset", "--presets", dest="preset", default=None, help="keep only these presets (comma list)")
    p.add_argument("--retrain-seeds", default=None,
                   help="retrain each searched genotype under these seeds (default: the search's own seed)")
    for name, kind in (("epochs", int), ("order", int), ("width", int), ("batches-per-epoch", int),
                       ("batch-size", int), ("sigma-n", float), ("noise-sigma", float)):
        key = name.replace("-", "_")
        p.add_argument(f"--{name}", type=kind, default=DEFAULTS[key], help=f"every trial's {key} (default {DEFAULTS[key]})")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: cores)")
    p.add_argument("--jobs", type=int, default=None, help="renamed: use --workers")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--max-batch", type=int, default=64, help="most trials run as one computation (default 64)")
    p.add_argument("--out", default="results", help="results tree (default results/)")
    p.add_argument("--device", default="cpu", help="device of every trial (default cpu)")
    p.add_argument("--dry-run", action="store_true", help="list the trials to run and exit")
    return p


def _keep(values, allowed, what):
    if allowed is None:
        return values
    wanted = allowed.split(",")
    unknown = [w for w in wanted if w not in {getattr(v, what) for v in values}]
    if unknown:
        have = sorted({getattr(v, what) for v in values})
        raise UserError(f"--{what} {','.join(unknown)}: not in this study; it has {','.join(have)}")
    return [v for v in values if getattr(v, what) in wanted]


def plan(a) -> list[TrialSpec]:
    if a.jobs is not None:
        raise UserError("--jobs was renamed --workers; pass --workers N")
    if not 1 <= a.workers <= 256:
        raise UserError(f"--workers must be in 1..256, got {a.workers}")
    study = STUDIES[a.study]
    cells = list(study.cells)
    for what in ("space", "data", "ops", "method", "preset"):
        cells = _keep(cells, getattr(a, what), what)
    seeds = parse_seeds(a.seed) if a.seed is not None else range(study.seeds)
    settings = dict(epochs=a.epochs, order=a.order, width=a.width, batches_per_epoch=a.batches_per_epoch,
                    batch_size=a.batch_size, sigma_n=a.sigma_n, noise_sigma=a.noise_sigma)
    specs = []
    for spec in type(study)(study.name, study.title, tuple(cells), study.seeds).specs(seeds, **settings):
        specs.append(spec if spec.stage == "search" else spec.replace(order=DEFAULTS["order"]))
    return specs


def _run(spec_dicts, out, retrain_seeds, device, threads, max_batch):
    """One task: trials of one batch key as one computation (searches, then their retrains)."""
    import torch

    from das.trial import run_trials, unlock_all

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    specs = [TrialSpec.from_dict(d) for d in spec_dicts]
    try:
        results = run_trials(specs, out, retrain_seeds=retrain_seeds, device=device, max_batch=max_batch)
    except Exception as exc:  # one failed batch never stops the sweep; it is reported and retried next time
        return spec_dicts, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0, []
    finally:
        unlock_all()
    bad = [f"{r['dir']}: {r['status']}" + (f" ({r.get('error')})" if r.get("error") else "")
           for r in results if r["status"] not in (Status.SEARCHED, Status.COMPLETE)]
    return spec_dicts, "", time.perf_counter() - t0, bad


def main(a) -> dict:
    specs = plan(a)
    retrain_seeds = parse_seeds(a.retrain_seeds) if a.retrain_seeds else None
    device = cli.check_device(a)
    todo = [s for s in specs if not trial_done(s, a.out, retrain_seeds)]
    # batches of one key, small enough that every worker gets work
    size = max(1, min(a.max_batch, -(-len(todo) // a.workers) if todo else 1))
    batches = group_batches(todo, size)
    print(f"{len(specs)} trials, {len(specs) - len(todo)} already done, {len(todo)} to run in {len(batches)} "
          f"batches on {a.workers} processes x {a.threads} threads", flush=True)
    if a.dry_run:
        for s in todo:
            print(s.folder(a.out))
        return {"trials": len(specs), "todo": len(todo)}
    t0, done, failed, diverged = time.perf_counter(), 0, [], []
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        futures = [pool.submit(_run, [s.to_dict() for s in b], a.out, retrain_seeds, device, a.threads, size)
                   for b in batches]
        for f in as_completed(futures):
            spec_dicts, msg, seconds, bad = f.result()
            done += len(spec_dicts)
            first = TrialSpec.from_dict(spec_dicts[0])
            if msg:
                failed.append((str(first.folder(a.out)), msg))
            diverged += bad
            rate = done / (time.perf_counter() - t0) * 3600
            eta = (len(todo) - done) / rate * 3600 if rate else 0
            print(f"[{done}/{len(todo)}] {'FAILED ' if msg else ''}{len(spec_dicts)} x {first.describe()} "
                  f"{seconds:.0f}s {msg}{f' ({len(bad)} diverged)' if bad else ''} ({rate:.0f} trials/hour, "
                  f"ETA {int(eta) // 60}:{int(eta) % 60:02d})", flush=True)
    seconds = time.perf_counter() - t0
    for line in diverged:
        print(f"diverged: {line}")
    print(f"finished {done - sum(1 for _ in failed)} trials ({len(diverged)} stages diverged), {len(failed)} batches "
          f"failed, in {seconds:.0f}s; next: python analyze.py {a.out}", flush=True)
    return {"trials": len(specs), "ran": done, "failed": failed, "diverged": diverged, "seconds": seconds}


if __name__ == "__main__":
    p = get_parser()
    args = p.parse_args()
    try:
        result = main(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if result.get("failed") else 0)
