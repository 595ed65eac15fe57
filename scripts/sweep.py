"""Run many trials in parallel processes: the paper's Table 1 by default, skipping finished ones.

    python scripts/sweep.py --seeds 0-74 --jobs 2                 # Table 1: 2 data x 2 op sets x methods
    python scripts/sweep.py --space cell --seeds 0-9 --methods das,random --jobs 2
    python scripts/sweep.py --presets H1,H2 --methods das --seeds 0-4 --dry-run

Each trial is a short list of commands (search then retrain for DAS; one retrain.py call for a
baseline). Trials whose result.json says complete are skipped; interrupted ones continue with
--resume. Each process gets --threads torch threads (default 1): on a small CPU, N processes x
1 thread finish more trials per hour than 1 process x N threads.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from das.utils import trial_dir  # noqa: E402

TABLE1_METHODS = ["das", "grad-only", "net-only", "random", "random-search"]


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            seeds += list(range(int(a), int(b) + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="seq", help="seq or cell (default seq)")
    p.add_argument("--data", default="blur,downsample", help="comma list (default blur,downsample)")
    p.add_argument("--ops", default="good,all", help="comma list (default good,all)")
    p.add_argument("--methods", default=",".join(TABLE1_METHODS), help=f"comma list (default {','.join(TABLE1_METHODS)})")
    p.add_argument("--presets", default="H1", help="comma list of presets (default H1)")
    p.add_argument("--seeds", default="0-2", help="seeds, e.g. 0-74 or 0,3,5 (default 0-2)")
    p.add_argument("--epochs", type=int, default=50, help="epochs of every search and retrain (default 50)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes (default: cores)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--out", default="results", help="results tree (default results/)")
    p.add_argument("--device", default="cpu", help="device of every trial (default cpu)")
    p.add_argument("--dry-run", action="store_true", help="list the trials and exit")
    return p


def trial_commands(a, space, data, ops, method, preset, seed) -> tuple[Path, list[list[str]]]:
    py = sys.executable
    common = ["--seed", str(seed), "--epochs", str(a.epochs), "--threads", str(a.threads), "--device", a.device,
              "--resume", "--quiet"]
    d = trial_dir(a.out, space, data, ops, method, preset, seed)
    if method in ("das", "das-single"):
        search = [py, str(ROOT / "search.py"), "--space", space, "--data", data, "--ops", ops, "--method", method,
                  "--hparams", preset, "--out", a.out, *common]
        if method == "das-single":
            search.append("--pretrain")
        return d, [search, [py, str(ROOT / "retrain.py"), "--genotype", str(d / "genotype.json"), *common]]
    return d, [[py, str(ROOT / "retrain.py"), "--arch", method, "--space", space, "--data", data, "--ops", ops,
                "--hparams", preset, "--out", a.out, *common]]


def is_complete(d: Path) -> bool:
    try:
        r = json.loads((d / "result.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return r.get("status") in ("complete", "diverged")


def run_trial(cmds) -> tuple[int, str]:
    for cmd in cmds:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            return p.returncode, (p.stderr.strip().splitlines() or ["(no output)"])[-1]
    return 0, ""


def main(a) -> dict:
    trials = []
    for preset in a.presets.split(","):
        for data in a.data.split(","):
            for ops in a.ops.split(","):
                for method in a.methods.split(","):
                    if method in ("grad-only", "net-only") and ops == "all" and "good" in a.ops.split(","):
                        continue  # the same networks as under good ops (paper Table 1 lists them once)
                    for seed in parse_seeds(a.seeds):
                        trials.append(trial_commands(a, a.space, data, ops, method, preset, seed))
    todo = [(d, c) for d, c in trials if not is_complete(d)]
    print(f"{len(trials)} trials, {len(trials) - len(todo)} already complete, {len(todo)} to run "
          f"with {a.jobs} processes x {a.threads} threads", flush=True)
    if a.dry_run:
        for d, cmds in todo:
            print(d)
        return {"trials": len(trials), "todo": len(todo)}
    t0, done, failed = time.perf_counter(), 0, []
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futures = {pool.submit(run_trial, cmds): d for d, cmds in todo}
        for f in as_completed(futures):
            d = futures[f]
            rc, msg = f.result()
            done += 1
            if rc:
                failed.append((d, msg))
            rate = done / (time.perf_counter() - t0) * 3600
            print(f"[{done}/{len(todo)}] {'FAILED ' if rc else ''}{d} {msg} ({rate:.0f} trials/hour)", flush=True)
    hours = (time.perf_counter() - t0) / 3600
    print(f"finished {done - len(failed)} trials, {len(failed)} failed, {hours * 3600:.0f}s")
    return {"trials": len(trials), "ran": done, "failed": failed, "seconds": hours * 3600}


if __name__ == "__main__":
    result = main(get_parser().parse_args())
    sys.exit(1 if result.get("failed") else 0)
