"""Time each extension op against its _ref twin, forward and forward+backward, batch 128, length 50
(the gradient step and the CNN bank for one trial, T = 1).

    python benchmarks/bench_ops.py [--threads 2] [--device cpu] [--out bench_out/ops.json]

Prints a table with the ratio _ref / extension (above 1: the extension is faster), side by side
in one run, and writes it as JSON.
"""
from __future__ import annotations

import argparse

from common import machine, print_table, timeit, write_json

import torch

from das import operators as O


def cases(device):
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.randn(*s, generator=g).to(device)
    out = []
    for data in ("blur", "downsample"):
        A = O.Operator(data, device=device)
        u, y, r = rnd(128, 1, 50), rnd(128, 1, A.measured_length), rnd(128, 1, 50)
        tau = torch.tensor([0.9], device=device)
        out.append((f"blur ({data})", lambda A=A: (lambda x: O.blur(x, A.kernel, A.stride)), [u]))
        out.append((f"blur_adjoint ({data})", lambda A=A: (lambda v: O.blur_adjoint(v, A.kernel, A.stride, 50)), [y]))
        out.append((f"grad_step_batched T=1 ({data})", lambda A=A: (lambda *a: O.grad_step_batched(*a, A.kernel, A.stride)),
                    [u[None], y[None], tau, r[None]]))
    K, C = 2, 16
    params = [rnd(1, K, C, 3), rnd(1, K, C), rnd(1, K, C).abs() + 0.5, rnd(1, K, C), rnd(1, K, C, 3), rnd(1, K)]
    stats = [torch.zeros(1, K, C, device=device), torch.ones(1, K, C, device=device)]
    u = rnd(1, 128, 1, 50)
    out.append(("cnn_bank_batched T=1 K=2 C=16", lambda: (lambda *a: O.cnn_bank_batched(*a, *stats, True)), [u] + params))
    return out


def main(args):
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device == "cuda" else None
    rows, records = [], []
    for name, make, inputs in cases(args.device):
        fn = make()
        res = {}
        for ext in (True, False):
            xs = [t.clone().requires_grad_() for t in inputs]
            with O.use_extension(ext):
                fwd = timeit(lambda: fn(*xs), repeat=args.repeat, sync=sync)

                def fwd_bwd():
                    out = fn(*xs)
                    out.sum().backward()

                both = timeit(fwd_bwd, repeat=args.repeat, sync=sync)
            res["ext" if ext else "ref"] = (fwd, both)
        (ef, eb), (rf, rb) = res["ext"], res["ref"]
        rows.append([name, f"{ef * 1e6:.0f}", f"{rf * 1e6:.0f}", f"{rf / ef:.2f}", f"{eb * 1e6:.0f}", f"{rb * 1e6:.0f}",
                     f"{rb / eb:.2f}"])
        records.append({"op": name, "ext_fwd_us": ef * 1e6, "ref_fwd_us": rf * 1e6, "fwd_ratio": rf / ef,
                        "ext_fwd_bwd_us": eb * 1e6, "ref_fwd_bwd_us": rb * 1e6, "fwd_bwd_ratio": rb / eb})
    print(f"ops, batch 128, length 50, {args.device}, {args.threads} threads (median of {args.repeat})")
    print_table(["op", "ext fwd us", "ref fwd us", "ratio", "ext fwd+bwd us", "ref fwd+bwd us", "ratio"], rows)
    write_json(args.out, {"machine": machine(), "device": args.device, "ops": records})


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--repeat", type=int, default=200, help="timed calls per case (default 200)")
    p.add_argument("--out", default="bench_out/ops.json", help="JSON output (default bench_out/ops.json)")
    main(p.parse_args())
