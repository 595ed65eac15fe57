"""The sweep runner's overhead: one small sweep run every way, side by side in one run.

    python benchmarks/bench_runner.py                       # 4 DAS trials (search + retrain) of 3 epochs
    python benchmarks/bench_runner.py --trials 6 --epochs 5 --rounds 2

Modes: inline (this process, no Dask), a plain ProcessPoolExecutor (the runner before Dask), and
the embedded Dask LocalCluster with 1 and 2 worker processes, with MALLOC_TRIM_THRESHOLD_ at the
runner's 1 GiB and at Dask's default of 64 KiB (its nanny's setting). Trials per hour count
the wall time from the call to the last result, cluster start included; "in-task s" is the mean
time a trial took inside its worker (no start-up, no scheduling). A second table times the search
step alone inside a Dask worker under each allocator setting, against a plain worker process.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

from common import ROOT, machine, print_table, write_json  # noqa: F401  (ROOT puts the repo on sys.path)

import das.runner as runner  # noqa: E402
from das.hparams import load_hparams  # noqa: E402
from das.runner import Progress, batch_task, run_sweep  # noqa: E402
from das.spec import TrialSpec  # noqa: E402


class Quiet(Progress):
    def update(self, line=None, finished=False):
        pass


def specs(args):
    return [TrialSpec.make(hp=load_hparams("H1"), space="seq", data="blur", ops="all", method="das", seed=s,
                           epochs=args.epochs) for s in range(args.trials)]


def pool(todo, root, workers):
    with ProcessPoolExecutor(max_workers=workers) as ex:
        futures = [ex.submit(batch_task, [s.to_dict()], root, None, "cpu", 1) for s in todo]  # one trial a task
        return [f.result()[0] for f in futures]


def run_mode(name, args, tmp):
    todo = specs(args)
    root = f"{tmp}/{name.replace(' ', '_')}"
    t0 = time.perf_counter()
    if name == "inline":
        outs = run_sweep(todo, root, inline=True, progress=Quiet(len(todo)))["outcomes"]
    elif name.startswith("process pool"):
        outs = pool(todo, root, int(name.split()[-1][0]))
    else:
        workers = int(name.split()[1])
        runner.MALLOC_TRIM_THRESHOLD = 65536 if "64 KiB" in name else 1 << 30
        outs = run_sweep(todo, root, workers=workers, progress=Quiet(len(todo)))["outcomes"]
    wall = time.perf_counter() - t0
    assert all(o["outcome"] == "done" for o in outs), outs
    return {"wall_s": wall, "trials_per_hour": len(todo) / wall * 3600,
            "in_task_s": statistics.mean(o["seconds"] for o in outs)}


def step_ms(repeat: int) -> float:
    """Median milliseconds of one search step (theta + alpha) of one trial where this runs (a worker process)."""
    import torch

    from common import timeit
    from das import model as M
    from das.train import Trainer

    torch.set_num_threads(1)
    hp = load_hparams("H1")
    hp.alpha_warmup = False  # every step has its alpha step
    trainer = Trainer(M.build_supernet("seq", "blur", "all", [0]), hp, "blur", [0], 1, search=True,
                      batches_per_epoch=1)

    def search_step():
        trainer.epoch = 0  # one epoch of one batch: one theta step and one alpha step
        trainer.run()

    return timeit(search_step, warmup=10, repeat=repeat) * 1e3


TRIMS = {"glibc default (unset)": None, "1 GiB (das.runner)": 1 << 30, "64 KiB (Dask's default)": 65536}


def step_table(args) -> dict:
    """The allocator setting alone: search-step time inside a Dask worker per MALLOC_TRIM_THRESHOLD_,
    and in a plain worker process (ProcessPoolExecutor) as the reference; rounds interleaved."""
    from distributed import Client

    times: dict[str, list] = {}
    for _ in range(args.rounds):
        with ProcessPoolExecutor(max_workers=1) as ex:
            times.setdefault("plain process", []).append(ex.submit(step_ms, args.steps).result())
        for name, trim in TRIMS.items():
            runner.MALLOC_TRIM_THRESHOLD = trim
            with runner.local_cluster(1, 1) as cluster, Client(cluster) as client:
                times.setdefault(f"dask worker, {name}", []).append(client.submit(step_ms, args.steps, pure=False).result())
    return {k: statistics.median(v) for k, v in times.items()}


MODES = ("inline", "process pool 1x1", "dask 1 worker, trim 1 GiB", "dask 1 worker, trim 64 KiB", "process pool 2x1",
         "dask 2 workers, trim 1 GiB", "dask 2 workers, trim 64 KiB")


def main(args):
    import torch

    torch.set_num_threads(1)
    report = {"machine": machine(), "trials": args.trials, "epochs": args.epochs, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in MODES:
                res = run_mode(name, args, f"{tmp}/r{r}")
                report["modes"].setdefault(name, []).append(res)
                print(f"round {r}: {name}: {res['trials_per_hour']:.0f} trials/hour, in-task {res['in_task_s']:.2f} s",
                      flush=True)
        steps = step_table(args)
    report["search_step_ms"] = steps
    rows = []
    base = statistics.median(x["trials_per_hour"] for x in report["modes"]["inline"])
    for name, runs in report["modes"].items():
        tph = statistics.median(x["trials_per_hour"] for x in runs)
        task = statistics.median(x["in_task_s"] for x in runs)
        rows.append([name, f"{tph:.0f}", f"{tph / base:.2f}x", f"{task:.2f}"])
    print(f"\nsweep of {args.trials} DAS trials (search + retrain, {args.epochs} epochs, 19 batches), 1 torch thread "
          f"per trial, median of {args.rounds} round(s); {report['machine']['cpu']}, {report['machine']['cores']} cores")
    print_table(["mode", "trials/hour", "vs inline", "in-task s"], rows)
    ref = steps["plain process"]
    print(f"\nsearch step (seq, all ops, batch 128, width 16, 1 thread), median of {args.steps} steps x {args.rounds} "
          "round(s)")
    print_table(["where", "ms", "vs plain process"], [[k, f"{v:.1f}", f"{v / ref:.2f}x"] for k, v in steps.items()])
    write_json(args.out, report)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=4, help="trials per mode (default 4)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each search and retrain (default 3)")
    p.add_argument("--rounds", type=int, default=1, help="times every mode runs, interleaved (default 1)")
    p.add_argument("--steps", type=int, default=60, help="timed search steps per allocator setting (default 60)")
    p.add_argument("--out", default="bench_out/runner.json", help="JSON output (default bench_out/runner.json)")
    main(p.parse_args())
