"""Speed of a DAS trial: search and retrain steps (fast path vs _ref path), full runs, start-up,
and sweep throughput; on a GPU too when there is one.

    python benchmarks/bench_search.py                 # the full benchmark (~10 minutes on 2 cores)
    python benchmarks/bench_search.py --quick         # 10-epoch full runs, fewer steps

Sequential space, all ops, batch 128, width 16. Ratios are measured side by side in one run.
Prints a table and writes bench_out/search.json.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from common import ROOT, machine, print_table, timeit, write_json

import torch
import torch.nn.functional as F

from das import model as M
from das import operators as O
from das.data import DataSource
from das.genotype import Genotype
from das.hparams import load_hparams
from das.train import Architect

RETRAIN_GENOTYPE = ["grad", "net"] * 5


def step_functions(device):
    """One search step (theta step + alpha step) and one retrain step, on fresh models."""
    torch.manual_seed(0)
    hp = load_hparams("H1")
    src = DataSource("blur", 1, device)
    (x, y), (xv, yv) = src.batch(), src.batch()
    sup = M.SeqSupernet("blur", "all").to(device)
    opt = torch.optim.Adam(sup.weights(), lr=1e-3, fused=True)
    arch = Architect(sup, hp)

    def search_step():
        opt.zero_grad(set_to_none=True)
        F.mse_loss(sup(y), x).backward()
        opt.step()
        arch.step(None, (xv, yv), 1e-3)

    net = M.build_network(Genotype(space="seq", ops="all", layers=RETRAIN_GENOTYPE)).to(device)
    opt2 = torch.optim.Adam(net.weights(), lr=1e-3, fused=True)

    def retrain_step():
        opt2.zero_grad(set_to_none=True)
        F.mse_loss(net(y), x).backward()
        opt2.step()

    return search_step, retrain_step


def step_times(device, repeat):
    sync = torch.cuda.synchronize if device == "cuda" else None
    out = {}
    for ext in (True, False):
        with O.use_extension(ext):
            search_step, retrain_step = step_functions(device)
            out["ext" if ext else "ref"] = (timeit(search_step, 5, repeat, sync), timeit(retrain_step, 5, repeat, sync))
    return out


PEAK = ("import resource, runpy, sys, time; sys.argv = sys.argv[1:]; t = time.perf_counter(); "
        "runpy.run_path(sys.argv[0], run_name='__main__'); "
        "print('BENCH', time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")


def full_run(args, script, extra):
    """Wall seconds and peak RSS (MiB) of one script run in its own process."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", PEAK, script, *extra], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(p.stderr[-2000:])
    line = [l for l in p.stderr.splitlines() if l.startswith("BENCH")][-1].split()
    return wall, float(line[1]), float(line[2]) / 1024


FIRST_STEP = ("import time; t0 = time.time(); import sys; sys.path.insert(0, {root!r}); import torch; "
              "torch.set_num_threads({threads}); from das import model as M; from das.data import DataSource; "
              "import torch.nn.functional as F; net = M.SeqSupernet('blur', 'all'); x, y = DataSource('blur', 0).batch(); "
              "F.mse_loss(net(y), x).backward(); print(time.time())")


def startup(threads):
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", FIRST_STEP.format(root=str(ROOT), threads=threads)], capture_output=True,
                       text=True, check=True)
    return float(p.stdout.strip()) - t0


def throughput(args, tmp):
    """Trials per hour of short searches: 1 process x 2 threads against 2 processes x 1 thread."""
    def trial(seed, threads, out):
        return [sys.executable, str(ROOT / "search.py"), "--epochs", str(args.trial_epochs), "--seed", str(seed),
                "--threads", str(threads), "--out", out, "--quiet", "--no-plot", "--device", "cpu"]

    res = {}
    t0 = time.perf_counter()
    for s in range(args.trials):
        subprocess.run(trial(s, 2, f"{tmp}/a"), check=True, capture_output=True)
    res["1x2"] = args.trials / (time.perf_counter() - t0) * 3600
    t0 = time.perf_counter()
    procs = []
    for s in range(args.trials):
        procs.append(subprocess.Popen(trial(s, 1, f"{tmp}/b"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if len(procs) == 2:
            [p.wait() for p in procs]
            procs = []
    [p.wait() for p in procs]
    res["2x1"] = args.trials / (time.perf_counter() - t0) * 3600
    return res


def main(args):
    torch.set_num_threads(args.threads)
    report = {"machine": machine(), "threads": args.threads}
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        st = step_times(device, args.repeat)
        (es, er), (rs, rr) = st["ext"], st["ref"]
        report[f"{device}_steps_ms"] = {"search_ext": es * 1e3, "search_ref": rs * 1e3, "search_ratio": rs / es,
                                        "retrain_ext": er * 1e3, "retrain_ref": rr * 1e3, "retrain_ratio": rr / er}
        rows.append([f"search step ({device})", f"{es * 1e3:.1f} ms", f"{rs * 1e3:.1f} ms", f"{rs / es:.2f}x"])
        rows.append([f"retrain step ({device})", f"{er * 1e3:.1f} ms", f"{rr * 1e3:.1f} ms", f"{rr / er:.2f}x"])
    epochs = 10 if args.quick else 50
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--epochs", str(epochs), "--threads", str(args.threads), "--quiet", "--device", "cpu"]
        s_wall, s_in, s_mem = full_run(args, "search.py", ["--out", tmp, "--no-plot", *common])
        g = f"{tmp}/seq/blur/all/das/H1/seed0/genotype.json"
        r_wall, r_in, r_mem = full_run(args, "retrain.py", ["--genotype", g, *common])
        report["full_search"] = {"epochs": epochs, "wall_s": s_wall, "in_process_s": s_in, "peak_rss_mib": s_mem}
        report["full_retrain"] = {"epochs": epochs, "wall_s": r_wall, "in_process_s": r_in, "peak_rss_mib": r_mem}
        rows.append([f"full search, {epochs} epochs (cpu)", f"{s_wall:.1f} s", f"peak {s_mem:.0f} MiB", ""])
        rows.append([f"full retrain, {epochs} epochs (cpu)", f"{r_wall:.1f} s", f"peak {r_mem:.0f} MiB", ""])
        up = startup(args.threads)
        report["startup_to_first_step_s"] = up
        rows.append(["process start to first step", f"{up:.2f} s", "", ""])
        if not args.no_throughput:
            tp = throughput(args, tmp)
            report["trials_per_hour"] = {"trial_epochs": args.trial_epochs, **tp}
            rows.append([f"trials/hour ({args.trial_epochs}-epoch searches)", f"1 proc x 2 thr: {tp['1x2']:.0f}",
                         f"2 proc x 1 thr: {tp['2x1']:.0f}", f"{tp['2x1'] / tp['1x2']:.2f}x"])
    print(f"\nDAS trial speed, seq space, all ops, batch 128, width 16; {report['machine']['cpu']}, "
          f"{args.threads} threads")
    print_table(["what", "fast path", "_ref path / other", "ratio"], rows)
    write_json(args.out, report)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--repeat", type=int, default=40, help="timed steps per case (default 40)")
    p.add_argument("--quick", action="store_true", help="10-epoch full runs instead of 50")
    p.add_argument("--trials", type=int, default=4, help="trials per throughput mode (default 4)")
    p.add_argument("--trial-epochs", type=int, default=5, help="epochs of each throughput trial (default 5)")
    p.add_argument("--no-throughput", action="store_true", help="skip the trials-per-hour comparison")
    p.add_argument("--out", default="bench_out/search.json", help="JSON output (default bench_out/search.json)")
    main(p.parse_args())
