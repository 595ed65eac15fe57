"""Trials per hour on a GPU against the CPU cores of the same machine, and how far CUDA's numbers
are from the CPU's, side by side in one run.

    python benchmarks/bench_gpu.py                       # 10-epoch trials, rates scaled to 50 epochs
    python benchmarks/bench_gpu.py --epochs 20 --trials 1,16,64,256

For each case (sequential DAS search, cell DAS search, retrain of random architectures; blur, all
ops, H1) it runs, through the real scripts:
(a) one process on the GPU with T trials as one computation, for each T of --trials;
(b) the machine's CPU cores: one process per core (1 thread each), each with --cpu-trials trials
    as one computation, side by side (the way a sweep uses a CPU machine).
Trials per hour are wall-clock over the whole run (start-up included), scaled to 50 epochs.
Then agreement: the same trials (seeds 0..cpu-trials-1) on CUDA and on the CPU, the largest PSNR
difference and how many derived genotypes are the same; and on CUDA alone, seed 0 run alone
against seed 0 in the largest batch (batch invariance on the GPU).
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

CASES = {
    "seq search": ["search.py", "--space", "seq", "--ops", "all", "--data", "blur", "--no-plot"],
    "cell search": ["search.py", "--space", "cell", "--ops", "all", "--data", "blur", "--no-plot"],
    "seq retrain random": ["retrain.py", "--method", "random", "--space", "seq", "--ops", "all",
                           "--data", "blur"],
}


def command(case, device, seeds, epochs, out, trials):
    return [sys.executable, *CASES[case], "--device", device, "--threads", "1", "--quiet",
            "--epochs", str(epochs), "--seed", seeds, "--max-batch", str(trials), "--out", str(out)]


def run_all(commands) -> float:
    """Start the commands side by side, wait for all; wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c in commands]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"benchmark command failed: {' '.join(map(str, p.args))}\n{err.decode()[-2000:]}")
    return time.perf_counter() - t0


def psnrs(root: Path) -> dict:
    """seed -> (PSNR, genotype) of every trial under root (one-shot PSNR of a search, architecture
    PSNR of a retrain)."""
    from das.collect import read_record

    out = {}
    for path in root.rglob("result.json"):
        kind, why, r, spec = read_record(path)
        if kind is not None or r.get("status") in ("running", "failed"):
            raise SystemExit(f"benchmark result {path}: {why or r.get('status')}")
        v = r.get("architecture_psnr") if spec.stage == "train" else r.get("one_shot_psnr")
        out[spec.seed] = (float(v) if v is not None else float("nan"), r.get("genotype"))
    return out


def compare(a: dict, b: dict) -> tuple[float, int, int]:
    seeds = sorted(set(a) & set(b))
    diff = max(abs(a[s][0] - b[s][0]) for s in seeds)
    same = sum(a[s][1] == b[s][1] for s in seeds)
    return diff, same, len(seeds)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="epochs of every trial (default 10; rates scale to 50)")
    p.add_argument("--trials", default="1,16,64,256", help="trials per GPU process, comma separated (default 1,16,64,256)")
    p.add_argument("--cpu-trials", type=int, default=16, help="trials per CPU process (default 16)")
    p.add_argument("--cpu-processes", type=int, default=os.cpu_count(), help="CPU processes (default: one per core)")
    p.add_argument("--only", default=None, help="run only the cases whose name contains this")
    p.add_argument("--device", default="cuda", help="the accelerator leg's device (default cuda; cpu for a dry run)")
    p.add_argument("--out", default="bench_out/gpu.json", help="JSON output (default bench_out/gpu.json)")
    a = p.parse_args(argv)
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU (--device cpu for a dry run)")
    sizes = [int(x) for x in a.trials.split(",") if x]
    scale = a.epochs / 50
    rows, records = [], []
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    try:
        for case in CASES:
            if a.only and a.only not in case:
                continue
            gpu = {}
            for T in sizes:
                out = work / f"{case}-cuda-{T}".replace(" ", "_")
                s = run_all([command(case, a.device, f"0-{T - 1}", a.epochs, out, T)])
                rate = T / s * 3600 * scale
                gpu[T] = psnrs(out)
                rows.append([case, f"{a.device}, 1 process, T={T}", f"{s:.1f}", f"{rate:,.0f}"])
                records.append({"case": case, "device": a.device, "processes": 1, "trials": T,
                                "seconds": s, "trials_per_hour_50_epochs": rate})
            n, P = a.cpu_trials, a.cpu_processes
            outs = [work / f"{case}-cpu-{i}".replace(" ", "_") for i in range(P)]
            s = run_all([command(case, "cpu", f"{i * n}-{i * n + n - 1}", a.epochs, o, n) for i, o in enumerate(outs)])
            rate = n * P / s * 3600 * scale
            rows.append([case, f"cpu, {P} processes x 1 thread, T={n}", f"{s:.1f}", f"{rate:,.0f}"])
            records.append({"case": case, "device": "cpu", "processes": P, "trials": n,
                            "seconds": s, "trials_per_hour_50_epochs": rate})
            cpu = psnrs(outs[0])
            big = max(T for T in sizes if T >= n) if any(T >= n for T in sizes) else max(sizes)
            diff, same, m = compare(gpu[big], cpu)
            alone = abs(gpu[min(sizes)][0][0] - gpu[big][0][0]) if 0 in gpu[min(sizes)] else float("nan")
            records.append({"case": case, "cuda_vs_cpu_max_abs_psnr_db": diff, "same_genotype": same,
                            "compared": m, "cuda_seed0_alone_vs_batch_db": alone})
            print(f"{case}: {a.device} vs cpu over {m} trials: largest |PSNR difference| {diff:.2e} dB, "
                  f"{same}/{m} genotypes the same; {a.device} seed 0 alone vs in T={big}: {alone:.2e} dB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"trials per hour at 50 epochs ({a.epochs}-epoch runs, start-up included)")
    print_table(["case", "where", "seconds", "trials/hour"], rows)
    write_json(a.out, {"machine": machine(), "epochs": a.epochs, "results": records})


if __name__ == "__main__":
    main()
