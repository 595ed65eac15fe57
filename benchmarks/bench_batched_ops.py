"""Time the trial-batched ops on T trials against T separate calls with T = 1 and against the _ref twins.

    python benchmarks/bench_batched_ops.py [--threads 1] [--trials 1 8 32 75] [--banks 2 4] [--clock cpu]

Forward+backward, batch 128, length 50, width C=16, float32, CPU. Every figure is time per trial
(call time / T), so a batched op that amortises its per-call overhead shows a falling figure
as T grows. The CNN bank's GFLOP/s counts its nominal arithmetic (see `cnn_flops`).
`--clock cpu` times by the process's CPU time and keeps the fastest call, which is steadier than
wall time on a machine that other jobs share (with one thread, CPU time is the work time).
"""
from __future__ import annotations

import argparse
import time

from common import machine, print_table, timeit, write_json

import torch

from das import operators as O

B, L, C = 128, 50, 16
CLOCK = "wall"


def timed(fn, repeat):
    """Seconds per call of fn: the median wall time, or with --clock cpu the least process CPU time."""
    if CLOCK == "wall":
        return timeit(fn, warmup=2, repeat=repeat)
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def cnn_flops(T: int, K: int, k: int = 3) -> float:
    """Nominal flops of one forward+backward of T banks, per (trial, bank, channel, sample, position):
    forward 2k (conv1) + 6 (BN statistics and affine, ReLU) + 2k (conv2); backward 2k (conv1
    recomputed) + 4 (normalise, ReLU) + 4 * 2k (conv2 and conv1 weight and input gradients)
    + 9 (ReLU mask, BN reductions and BN backward). A multiply-add counts 2."""
    per_point = 2 * k + 6 + 2 * k + 2 * k + 4 + 4 * 2 * k + 9
    return float(T * K * C * B * L * per_point)


def cnn_case(T, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g)
    u = rnd(T, B, 1, L)
    params = [rnd(T, K, C, 3), rnd(T, K, C), rnd(T, K, C).abs() + 0.5, rnd(T, K, C), rnd(T, K, C, 3), rnd(T, K)]
    stats = [torch.zeros(T, K, C), torch.ones(T, K, C)]
    return [t.requires_grad_() for t in [u] + params], stats, rnd(T, K, B, 1, L)


def step_case(T, seed=0):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g)
    A = O.Operator("blur")
    xs = [rnd(T, B, 1, L), rnd(T, B, 1, A.measured_length), rnd(T).abs() + 0.5, rnd(T, B, 1, L)]
    return A, [t.requires_grad_() for t in xs], rnd(T, B, 1, L)


def bench_cnn(T, K, repeat):
    xs, stats, go = cnn_case(T, K)

    def batched(bank):
        return lambda: torch.autograd.grad(bank(*xs, *stats, True), xs, go)

    # one call per trial (T = 1) on that trial's slices (slicing is part of the cost a per-trial loop pays)
    def separate():
        for t in range(T):
            ts = [x[t:t + 1] for x in xs]
            torch.autograd.grad(O.cnn_bank_batched(*ts, stats[0][t:t + 1], stats[1][t:t + 1], True), ts, go[t:t + 1])

    return {"batched": timed(batched(O.cnn_bank_batched), repeat) / T,
            "separate": timed(separate, repeat) / T,
            "ref": timed(batched(O.cnn_bank_batched_ref), repeat) / T}


def bench_step(T, repeat):
    A, xs, go = step_case(T)

    def batched(step):
        return lambda: torch.autograd.grad(step(*xs, A.kernel, A.stride), xs, go)

    def separate():
        for t in range(T):
            ts = [x[t:t + 1] for x in xs]
            torch.autograd.grad(O.grad_step_batched(*ts, A.kernel, A.stride), ts, go[t:t + 1])

    return {"batched": timed(batched(O.grad_step_batched), repeat) / T,
            "separate": timed(separate, repeat) / T,
            "ref": timed(batched(O.grad_step_batched_ref), repeat) / T}


def main(args):
    global CLOCK
    CLOCK = args.clock
    torch.set_num_threads(args.threads)
    # one discarded round first: the first timed case would otherwise pay one-time costs
    # (allocator growth, first dispatch of each op)
    bench_cnn(1, args.banks[0], 3)
    bench_step(1, 3)
    rows, records = [], []
    for K in args.banks:
        for T in args.trials:
            r = bench_cnn(T, K, args.repeat)
            gflops = cnn_flops(1, K) / r["batched"] / 1e9
            rows.append([f"cnn_bank K={K}", T, f"{r['batched'] * 1e6:.0f}", f"{r['separate'] * 1e6:.0f}",
                         f"{r['ref'] * 1e6:.0f}", f"{r['separate'] / r['batched']:.2f}",
                         f"{r['ref'] / r['batched']:.2f}", f"{gflops:.1f}"])
            records.append({"op": "cnn_bank", "K": K, "T": T, **{f"{k}_us_per_trial": v * 1e6 for k, v in r.items()},
                            "gflops": gflops})
    for T in args.trials:
        r = bench_step(T, args.repeat)
        rows.append(["grad_step (blur)", T, f"{r['batched'] * 1e6:.1f}", f"{r['separate'] * 1e6:.1f}",
                     f"{r['ref'] * 1e6:.1f}", f"{r['separate'] / r['batched']:.2f}", f"{r['ref'] / r['batched']:.2f}",
                     ""])
        records.append({"op": "grad_step", "T": T, **{f"{k}_us_per_trial": v * 1e6 for k, v in r.items()}})
    print(f"forward+backward per trial, B={B}, L={L}, C={C}, float32, cpu, {args.threads} thread(s), "
          f"{'median wall' if CLOCK == 'wall' else 'least CPU'} time of {args.repeat}")
    print_table(["op", "T", "batched us", "T calls us", "ref us", "calls/batched", "ref/batched", "GFLOP/s"], rows)
    write_json(args.out, {"machine": machine(), "B": B, "L": L, "C": C, "threads": args.threads,
                          "clock": args.clock, "ops": records})
    return records


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--trials", type=int, nargs="+", default=[1, 8, 32, 75], help="trial counts T (default 1 8 32 75)")
    p.add_argument("--banks", type=int, nargs="+", default=[2, 4], help="CNNs per bank K (default 2 4)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per case (default 5)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: median wall time; cpu: least process CPU time, steadier on a shared machine")
    p.add_argument("--out", default="bench_out/batched_ops.json",
                   help="JSON output (default bench_out/batched_ops.json)")
    return p


if __name__ == "__main__":
    main(get_parser().parse_args())
