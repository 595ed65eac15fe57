"""Trials per hour of the trial-batched engine against the engine before it, side by side in one run.

    python benchmarks/bench_engine.py                          # 20-epoch trials, T = 16, baseline 97aa425
    python benchmarks/bench_engine.py --epochs 50 --trials 32  # the paper's epochs

(a) the earlier engine (git ref --baseline, built in a temporary folder): 2 processes x 1 thread,
    one trial at a time each, through its own search.py / retrain.py;
(b) this engine: 2 processes x 1 thread, each running T trials as one computation
    (search.py --seed a-b, retrain.py --method random --seed a-b).
For sequential searches (all ops, blur, H1), retrains of random architectures (all ops) and cell
searches. Trials per hour are measured wall-clock over the whole run of both processes and
scaled to 50 epochs (epochs / 50). Then the peak memory (max RSS) of one process against T.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, print_table, write_json  # noqa: E402


def run_pair(commands, cwd) -> float:
    """Start the commands side by side (one per process), wait for both; wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"benchmark command failed: {' '.join(map(str, p.args))}\n{err.decode()[-2000:]}")
    return time.perf_counter() - t0


def old_tree(ref: str, where: Path) -> Path:
    """The engine at git ref, built (its own setup.py) in a temporary folder."""
    src = where / "old"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(src), ref], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=src, check=True,
                   capture_output=True)
    return src


def cases(a):
    """(name, old command for seed s, new command for seeds a..b); out is filled in later."""
    py, E = sys.executable, str(a.epochs)
    common_old = ["--epochs", E, "--threads", "1", "--quiet", "--device", "cpu"]
    common_new = ["--epochs", E, "--threads", "1", "--quiet", "--device", "cpu", "--max-batch", str(a.trials)]
    return [
        ("seq search", lambda s, out: [py, "search.py", "--space", "seq", "--ops", "all", "--seed", str(s),
                                       "--out", out, "--no-plot", *common_old],
         lambda lo, hi, out: [py, "search.py", "--space", "seq", "--ops", "all", "--seed", f"{lo}-{hi}",
                              "--out", out, "--no-plot", *common_new], a.old_trials),
        ("retrain (random, all ops)", lambda s, out: [py, "retrain.py", "--arch", "random", "--ops", "all",
                                                      "--seed", str(s), "--out", out, *common_old],
         lambda lo, hi, out: [py, "retrain.py", "--method", "random", "--ops", "all", "--seed", f"{lo}-{hi}",
                              "--out", out, *common_new], a.old_trials * 3),
        ("cell search", lambda s, out: [py, "search.py", "--space", "cell", "--ops", "all", "--seed", str(s),
                                        "--out", out, "--no-plot", *common_old],
         lambda lo, hi, out: [py, "search.py", "--space", "cell", "--ops", "all", "--seed", f"{lo}-{hi}",
                              "--out", out, "--no-plot", *common_new], a.old_trials),
    ]


def old_sequence(make, seeds, out):
    """One process running the old engine's trials one after another (a shell loop over seeds)."""
    return ["bash", "-c", " && ".join(" ".join(map(str, make(s, out))) for s in seeds)]


def peak_memory(T: int, tmp: Path) -> float:
    """Max RSS (MiB) of one process running T sequential searches as one computation (1 epoch)."""
    cmd = [sys.executable, "search.py", "--space", "seq", "--ops", "all", "--seed", f"0-{T - 1}", "--epochs", "1",
           "--threads", "1", "--quiet", "--no-plot", "--device", "cpu", "--max-batch", str(T),
           "--out", str(tmp / f"mem{T}")]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if status:
        raise SystemExit(f"memory run for T={T} failed")
    return usage.ru_maxrss / 1024


def main(a):
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}; epochs {a.epochs}, "
          f"T = {a.trials} per process, baseline {a.baseline}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    rows, out = [], {"machine": info, "epochs": a.epochs, "trials_per_process": a.trials, "baseline": a.baseline}
    try:
        old = old_tree(a.baseline, tmp) if a.baseline else None
        scale = a.epochs / 50
        for name, old_cmd, new_cmd, old_n in cases(a):
            if a.only and a.only not in name:
                continue
            new_wall = run_pair([new_cmd(k * a.trials, (k + 1) * a.trials - 1, str(tmp / f"new{name[:3]}{k}"))
                                 for k in range(2)], ROOT)
            new_rate = 2 * a.trials / new_wall * 3600 * scale
            row = {"case": name, "new_wall_s": new_wall, "new_trials_per_hour": new_rate}
            if old:
                old_wall = run_pair([old_sequence(old_cmd, range(k * old_n, (k + 1) * old_n),
                                                  str(tmp / f"old{name[:3]}{k}")) for k in range(2)], old)
                old_rate = 2 * old_n / old_wall * 3600 * scale
                row.update(old_wall_s=old_wall, old_trials_per_hour=old_rate, ratio=new_rate / old_rate)
            rows.append(row)
            print(f"{name}: new {new_rate:.0f} trials/hour" + (f", old {row['old_trials_per_hour']:.0f}, "
                                                               f"ratio {row['ratio']:.2f}x" if old else ""), flush=True)
        out["throughput"] = rows
        print()
        print_table(["case", "(a) old: 2 proc x 1 trial", "(b) batched: 2 proc x T", "ratio", "amortised s/trial (b)"],
                    [[r["case"], f"{r.get('old_trials_per_hour', float('nan')):.0f}/h",
                      f"{r['new_trials_per_hour']:.0f}/h", f"{r.get('ratio', float('nan')):.2f}x",
                      f"{3600 * 2 / r['new_trials_per_hour'] / 2:.1f}"] for r in rows])
        if a.memory:
            mem = [(T, peak_memory(T, tmp)) for T in a.memory]
            out["peak_rss_mib"] = dict(mem)
            print()
            print_table(["T (seq searches in one process)", "peak RSS MiB"], [[T, f"{m:.0f}"] for T, m in mem])
    finally:
        if (tmp / "old").exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "old")],
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(a.out, out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20, help="epochs of every trial (default 20; rates scale to 50)")
    p.add_argument("--trials", type=int, default=16, help="trials per process in the batched engine (default 16)")
    p.add_argument("--old-trials", type=int, default=1, help="searches per process of the old engine (default 1)")
    p.add_argument("--baseline", default="97aa425", help="git ref of the engine to compare (default 97aa425; '' skips)")
    p.add_argument("--only", default=None, help="run only the case whose name contains this")
    p.add_argument("--memory", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 8, 32, 75],
                   help="T values for the peak-memory table (default 1,8,32,75; empty skips)")
    p.add_argument("--out", default="bench_out/engine.json", help="JSON output (default bench_out/engine.json)")
    main(p.parse_args())
