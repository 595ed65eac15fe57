"""Which reading of the paper's noise level reproduces its absolute numbers: the calibration study
(Table 1's methods at 10 seeds, run at sigma_n 0.01 and 0.1) beside the paper's medians.

    python scripts/sweep.py --study calibration --sigma-n 0.01 --out results/study
    python scripts/sweep.py --study calibration --sigma-n 0.1 --out results/study
    python scripts/calibration.py results/study          # or a trials.csv written by analyze.py

Prints a Markdown table (median with n and its BCa 95% interval per reading, the paper's median)
and, per reading, the mean absolute deviation from the paper's medians and Kendall's tau between
our medians and the paper's over the cells (does the reading order the methods as the paper does).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from scipy import stats as st  # noqa: E402

from das import report, stats  # noqa: E402
from das.study import STUDIES, paper_value  # noqa: E402
from das.vocab import display  # noqa: E402
from das.collect import load_trials, read_trials_csv  # noqa: E402

READINGS = (0.01, 0.1)


def calibration_rows(records, seed=0):
    cells = [(c.data, c.ops, c.method) for c in STUDIES["calibration"].cells]
    summary = stats.group_summary([r for r in records if r.get("primary") is not False and r.get("preset") == "H1"
                                   and r.get("epochs") == 50], seed)
    rows = []
    for data, ops, method in cells:
        row = {"data": data, "ops": ops, "method": display("method", method),
               "paper": paper_value("seq", data, ops, method, "H1")[2]}
        for sigma in READINGS:
            s = next((s for s in summary if (s["space"], s["data"], s["ops"], s["method"]) == ("seq", data, ops, method)
                      and s["sigma_n"] == sigma), None)
            row[sigma] = s
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="results tree or trials.csv holding the calibration study")
    a = p.parse_args(argv)
    source = Path(a.root)
    records = read_trials_csv(source) if source.is_file() else load_trials(source)[0]
    rows = calibration_rows(records)
    head = "| data | ops | method | paper median | " + " | ".join(
        f"sigma_n {s:g}: median [95% CI] (n)" for s in READINGS) + " |"
    lines = [head, "|" + "---|" * (4 + len(READINGS))]
    for r in rows:
        cells = []
        for sigma in READINGS:
            s = r[sigma]
            cells.append("-" if s is None or not s["n"] else
                         f"{s['median']:.2f} [{s['median_ci_low']:.2f}, {s['median_ci_high']:.2f}] ({s['n']})")
        lines.append(f"| {r['data']} | {r['ops']} | {r['method']} | {r['paper']:.2f} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print()
    for sigma in READINGS:
        pairs = [(r[sigma]["median"], r["paper"]) for r in rows if r[sigma] is not None and r[sigma]["n"]]
        if len(pairs) < 3:
            continue
        ours, paper = np.array(pairs).T
        tau, p_tau = st.kendalltau(ours, paper)
        print(f"- sigma_n {sigma:g}: {len(pairs)} cells; mean |ours - paper| = {np.mean(np.abs(ours - paper)):.2f} dB, "
              f"mean (ours - paper) = {np.mean(ours - paper):+.2f} dB; Kendall tau of the medians against the paper's "
              f"{tau:+.2f} (p = {p_tau:.3f})")
    return rows


if __name__ == "__main__":
    main()
