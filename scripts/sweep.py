"""Run a study of the paper (or a part of it) as many trials in parallel, skipping finished ones.

    python scripts/sweep.py --study table1 --seed 0-74          # the paper's Table 1 (75 seeds)
    python scripts/sweep.py --study table2 --data blur          # Table 2, blur only, its 100 seeds
    python scripts/sweep.py --study table1 --seed 0-1 --epochs 2 --out results/quick
    python scripts/sweep.py --study table3 --method das --preset H2 --dry-run

    # a cluster with TLS (docs/multi-machine.md: certificates, PYTHONPATH, dask scheduler / dask worker)
    python scripts/sweep.py --study table1 --scheduler tls://HEAD:8786 --tls-ca-file ca.pem \
        --tls-cert node.pem --tls-key node.key --out /shared/results

A trial is skipped when its result records the same full specification and is complete or
diverged; an interrupted one continues from its last epoch checkpoint, so the same command
continues a killed sweep. Trials run as Dask tasks (das/runner.py): by default on an embedded
cluster of --workers processes with one thread each and --threads torch threads (on a small CPU,
N processes x 1 thread finish more trials per hour), or on a running cluster (--scheduler), or
one after another in this process (--inline). Two sweeps over one tree never run a trial twice:
a trial another sweep is running is reported as running elsewhere and looked at again later.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from das import cli  # noqa: E402
from das.folder import trial_done  # noqa: E402
from das.runner import RETRY_WAIT, run_sweep, scheduler_security  # noqa: E402
from das.spec import TrialSpec  # noqa: E402


def study_names() -> list[str]:
    from das.readings import study_names

    return study_names()


def get_study(name: str, out: str, done_in=()):
    """A study by name (das.readings.named_study); the readings screen's stage 2 is planned from the
    stage-1 trials under out and in the --done-in trials.csv files."""
    from das import readings

    records = []
    if name == "readings-combined":
        from das.collect import load_trials, read_trials_csv

        records, _ = load_trials(out) if os.path.isdir(out) else ([], [])
        for f in done_in:
            records += read_trials_csv(f)
        unique = {}
        for r in records:  # a trial both in the tree and in a committed table counts once
            unique.setdefault((r["group"], r["seed"], r.get("retrain_seed")), r)
        records = list(unique.values())
    study = readings.named_study(name, records)
    if name == "readings-combined" and not study.cells:
        raise UserError(f"{out}: no stage-1 reading helps by the pre-registered rule (or stage 1 is not "
                        "finished there); run --study readings first, then python scripts/readings.py "
                        f"{out}")
    return study


from das.utils import UserError, parse_seeds, set_threads  # noqa: E402


def get_parser():
    p = cli.parser(__doc__)
    p.add_argument("--study", default="table1", choices=sorted(study_names()), help="which study (default table1); "
                   "readings: the screen of the paper's open details (das/readings.py), readings-combined: its "
                   "stage 2, planned from the stage-1 trials under --out; confirmation-NAME: the study NAME "
                   "(table1..table4, figure5) under the reading the screen chose "
                   "(reproduction/readings/choice.json)")
    p.add_argument("--seed", "--seeds", dest="seed", default=None,
                   help="seeds, e.g. 0-74 or 0,3,5 (default: the study's count, 75 or 100)")
    p.add_argument("--space", default=None, help="keep only these spaces (comma list)")
    p.add_argument("--data", default=None, help="keep only these data formations (comma list)")
    p.add_argument("--ops", default=None, help="keep only these op sets (comma list)")
    p.add_argument("--method", "--methods", dest="method", default=None, help="keep only these methods (comma list)")
    p.add_argument("--preset", "--presets", dest="preset", default=None,
                   help="keep only these presets (comma list); a JSON preset file (e.g. bohb.py's incumbent.json) "
                        "runs the study's rows under it too (only files named: every preset of the study, and the "
                        "files')")
    p.add_argument("--retrain-seeds", default=None,
                   help="retrain each searched genotype under these seeds (default: the search's own seed)")
    cli.add_settings(p, defaults=False,
                     help_prefix="every trial's setting (default: the study's, else das/spec.py's): ")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes of the embedded Dask cluster (default: cores); ignored with --scheduler")
    p.add_argument("--jobs", type=int, default=None, help="renamed: use --workers")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1: one worker "
                   "process per core)")
    p.add_argument("--max-batch", type=int, default=64,
                   help="most trials of one kind run as one computation in a task (default 64)")
    p.add_argument("--scheduler", default=None,
                   help="address of a running Dask scheduler (tls://HOST:8786 with --tls-*, or an unauthenticated "
                        "tcp://HOST:8786); its workers must see --out at the same path")
    p.add_argument("--inline", action="store_true", help="no Dask: run the trials one after another in this process")
    p.add_argument("--retry-wait", type=float, default=RETRY_WAIT,
                   help=f"seconds before a trial running elsewhere is looked at again (default {RETRY_WAIT:g})")
    p.add_argument("--out", default="results", help="results tree (default results/)")
    p.add_argument("--device", default=None, help=cli.DEVICE_HELP)
    p.add_argument("--dry-run", action="store_true", help="list the trials to run and exit")
    p.add_argument("--done-in", action="append", default=[], metavar="TRIALS_CSV",
                   help="a trials.csv or trials.csv.gz (analyze.py's) whose trials count as done: a study continued in another "
                        "results tree, such as one whose finished part is committed as data (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="start the selected trials again from scratch (their folders are emptied first), finished "
                        "or not; select them with --seed, --method, ... (a trial failed by a bad checkpoint needs it)")
    # --- TLS for --scheduler tls://HOST:8786 (the flag names of `dask scheduler` and `dask worker`;
    # docs/multi-machine.md). The embedded cluster needs none: it makes its own credentials per run.
    p.add_argument("--tls-ca-file", default=None,
                   help="with --scheduler tls://...: the CA certificate (PEM) that signed the cluster's certificates")
    p.add_argument("--tls-cert", default=None,
                   help="with --scheduler tls://...: this client's certificate (PEM), signed by that CA")
    p.add_argument("--tls-key", default=None, help="with --scheduler tls://...: the private key of --tls-cert (PEM)")
    # --- end of the TLS flags
    return p


def plan(a) -> list[TrialSpec]:
    if a.jobs is not None:
        raise UserError("--jobs was renamed --workers; pass --workers N")
    if not 1 <= a.workers <= 256:
        raise UserError(f"--workers must be in 1..256, got {a.workers}")
    study = get_study(a.study, a.out, a.done_in)
    a.reread = study.reread
    for what in ("space", "data", "ops", "method"):
        study = study.keep(what, getattr(a, what))
    seeds = parse_seeds(a.seed) if a.seed is not None else study.seed_list()
    return study.with_presets(a.preset).specs(seeds, **cli.settings_of(a))


def check_out(out: str) -> None:
    """--out must be a folder this process can create and write into: one line, not a traceback."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder; pass a folder for the results tree")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write the results tree there ({exc.strerror or exc}); pass a "
                        "writable folder") from None


def done_elsewhere(files, reread=()) -> set:
    """(group, seed) of every trial finished in these trials.csv files (a search counts as done through
    its own retrain, whose group is the search's); with `reread` (the study's evaluation-only
    settings, e.g. psnr=pooled), only a trial that holds its numbers under them (a run older than
    those numbers must run again)."""
    from das.collect import as_run_group, read_trials_csv, reread as read_under

    keys = set()
    for f in files:  # a trial exported as reread (analyze.py --reading) is the trial as run
        keys |= {(as_run_group(r), r["seed"]) for r in read_trials_csv(f)
                 if r.get("primary") is not False and r.get("status") in ("complete", "diverged")
                 and (not reread or read_under([r], **dict(reread)))}
    return keys


def main(a) -> dict:
    a.out = os.path.abspath(a.out)  # against the caller's folder; workers elsewhere get the same path
    specs = plan(a)
    if a.done_in:
        elsewhere = done_elsewhere(a.done_in, a.reread)
        kept = [s for s in specs if (s.group(), s.seed) not in elsewhere]
        under = "".join(f", readable under {k}={v}" for k, v in a.reread)
        print(f"{len(specs) - len(kept)} trials done in {', '.join(a.done_in)}{under}", flush=True)
        specs = kept
    retrain_seeds = parse_seeds(a.retrain_seeds) if a.retrain_seeds else None
    device = cli.check_device(a)
    set_threads(a.threads)
    if a.scheduler is not None and a.inline:
        raise UserError("--scheduler and --inline exclude each other")
    if not 0 <= a.retry_wait <= 86400:
        raise UserError(f"--retry-wait must be in 0..86400 seconds, got {a.retry_wait:g}")
    if not 1 <= a.max_batch <= 4096:
        raise UserError(f"--max-batch must be in 1..4096, got {a.max_batch}")
    if not a.inline:  # the TLS flags, checked (and their files loaded) before anything is written
        scheduler_security(a.scheduler, a.tls_ca_file, a.tls_cert, a.tls_key)
    if not a.dry_run:  # every flag checked above: now the results tree may be created
        check_out(a.out)
    if a.overwrite and not a.dry_run:
        from das.folder import reset_trial

        emptied = sum(reset_trial(s, a.out) for s in specs)
        print(f"--overwrite: emptied {emptied} trial folders", flush=True)
    todo = [s for s in specs if not trial_done(s, a.out, retrain_seeds)]
    where = ("in this process" if a.inline else f"on the Dask cluster at {a.scheduler}" if a.scheduler
             else f"with {a.workers} processes")
    print(f"{len(specs)} trials, {len(specs) - len(todo)} already done, {len(todo)} to run {where} x "
          f"{a.threads} threads, at most {a.max_batch} trials per batch", flush=True)
    if a.dry_run:
        for s in todo:
            print(s.folder(a.out))
        return {"trials": len(specs), "todo": len(todo)}
    r = run_sweep(specs, a.out, retrain_seeds=retrain_seeds, device=device, threads=a.threads, workers=a.workers,
                  scheduler=a.scheduler, inline=a.inline, retry_wait=a.retry_wait, max_batch=a.max_batch,
                  tls_ca_file=a.tls_ca_file, tls_cert=a.tls_cert, tls_key=a.tls_key)
    print(f"finished {r['ran'] - len(r['failed'])} trials ({r['diverged']} diverged), {len(r['failed'])} failed "
          f"in {r['seconds']:.0f}s; next: python analyze.py {a.out}", flush=True)
    for folder, msg in r["failed"]:
        print(f"FAILED {folder}: {msg}", flush=True)
    return r


if __name__ == "__main__":
    p = get_parser()
    args = p.parse_args()
    try:
        result = main(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # the results tree went away or filled up mid-sweep
        name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {name}{exc.strerror or exc}; check that --out is a writable folder with space left",
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; the same command continues the sweep", file=sys.stderr)
        sys.exit(130)
    sys.exit(1 if result.get("failed") else 0)
