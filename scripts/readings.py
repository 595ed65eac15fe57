"""The readings screen's scores, its pre-registered choice, and the paper's claims under every reading.

    python scripts/readings.py results/readings                    # the screen's results tree
    python scripts/readings.py reproduction/readings/trials.csv --out reproduction/readings

Reads the screen's trials (a results tree or a trials.csv of analyze.py), scores the defaults,
every single reading and every stage-2 combination by the rule of das/readings.py (docs/readings.md),
prints the scores and the choice, and writes into --out (default: <tree>/analysis/readings):
screen.{csv,md} (every candidate: cells, trials, MAD, Kendall tau, whether it helps), medians.csv
(every candidate's median per cell beside the paper's), choice.json (the rule, every score, the
choice), claims_by_reading.{csv,md} (every claim's verdict under every candidate),
claims_robustness.{csv,md} (per comparison: under how many readings it holds) and
fig_claims_by_reading.{pdf,png}.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from das import cli  # noqa: E402
from das.utils import UserError, write_json, write_text_atomic  # noqa: E402


def get_parser():
    p = cli.parser(__doc__)
    p.add_argument("root", nargs="+", help="the screen's results trees or trials.csv (.gz) files written by analyze.py "
                   "(pooled: a screen run in parts)")
    p.add_argument("--out", default=None, help="output folder (default <root>/analysis/readings, or beside trials.csv)")
    p.add_argument("--no-claims", action="store_true", help="scores and choice only (the claims take a minute)")
    p.add_argument("--format", default="pdf,png", help="figure formats (default pdf,png)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per interval (default 2000)")
    p.add_argument("--export", default=None, metavar="TRIALS_CSV",
                   help="also write the pooled trials as a compact trials.csv (no per-epoch histories), the form "
                        "in which a screen's finished part is committed (reproduction/readings/trials.csv)")
    return p


def main(args) -> dict:
    import pandas as pd

    from das import collect, plot, readings, report, stats

    records = []
    for item in args.root:
        root = Path(item)
        if root.is_file():
            records += collect.read_trials_csv(root)
        elif root.is_dir():
            records += collect.load_trials(root)[0]
        else:
            raise UserError(f"{root}: no such results tree or trials.csv; run scripts/sweep.py --study readings first")
    root = Path(args.root[0])
    out = Path(args.out) if args.out else (root.parent if root.is_file() else root / "analysis" / "readings")
    records = collect.once(records, ", ".join(args.root))  # one trial in two sources counts once
    if not records:
        raise UserError(f"{root}: no finished trials; run scripts/sweep.py --study readings --out {root} first")
    out.mkdir(parents=True, exist_ok=True)
    if args.export:
        collect.write_trials_csv(records, args.export, compact_records=True)
    choice = readings.choose(records)
    base = choice["baseline"]
    rows = []
    for s in choice["candidates"]:
        rows.append({"reading": s["reading"], "changed settings": len(s["settings"]), "cells": s["cells"],
                     "own cells run": f"{s['own'][0]}/{s['own'][1]}", "trials": s["trials"], "MAD (dB)": s["mad"],
                     "Kendall tau": s["tau"], "MAD change (dB)": s["mad"] - base["mad"],
                     "helps": readings.helps(s, base),
                     "chosen": s["reading"] == choice["chosen"]["reading"]})
    tables = [report.rows_table("screen", "Readings screen: every candidate's mean absolute deviation (MAD) of the "
                                "28 medians from the paper's and Kendall tau of the orderings (seeds 1000-1009)",
                                rows, 1, {"changed settings": "{:.0f}", "cells": "{:.0f}", "trials": "{:.0f}"})]
    medians = []
    for cell in readings.cells():
        key = "/".join(cell)
        row = {"cell": key, "paper": readings.PAPER[(*cell, "H1")][2]}
        for s in choice["candidates"]:
            row[s["reading"]] = s["medians"].get(key)
        medians.append(row)
    write_text_atomic(out / "medians.csv", pd.DataFrame(medians).to_csv(index=False))
    write_json(out / "choice.json", choice)
    lines = [f"# Readings screen of {root}", "", f"Rule: {choice['rule']}", ""]
    clock = stats.wall_clock(records)
    if clock["trials"]:
        lines += [f"Wall clock: {clock['trials']} of the {len(records)} trials carry their times and ran over "
                  f"{clock['wall_hours']:.2f} h ({clock['trial_hours']:.2f} trial-hours side by side).", ""]
    if choice["incomplete"]:
        lines += [f"Candidates with trials missing in some of the 28 cells (not eligible; scored on the cells "
                  f"they have, where the defaults' trials stand in wherever a reading cannot change a cell, so "
                  f"'own cells run' says how much of a row is the reading's own trials; their claims are not "
                  f"shown): {', '.join(choice['incomplete'])}", ""]
    status = "Chosen" if choice["final"] else "Chosen so far (provisional: the screen is not finished)"
    lines += [report.to_markdown(tables[0]),
              f"{status}: **{choice['chosen']['reading']}** (MAD {choice['chosen']['mad']:.2f} dB, tau "
              f"{choice['chosen']['tau']:.2f}; the defaults: MAD {base['mad']:.2f} dB, tau {base['tau']:.2f})", ""]
    figures = []
    if not args.no_claims:
        # complete candidates only: a partial one's view is mostly the defaults' trials, whose verdicts
        # would be shown under its name
        candidates = [s["settings"] for s in choice["candidates"] if readings.complete(s)]
        claim_rows = readings.claims_by_reading(records, candidates, resamples=args.resamples)
        summary = readings.robustness_summary(claim_rows)
        tables += [report.rows_table("claims_by_reading", "The paper's claims under every reading of the screen "
                                     "(10 seeds each: a verdict is a screen's, not a confirmation)", claim_rows, 4,
                                     {"n_x": "{:.0f}", "n_y": "{:.0f}", "p": "{:.3g}"}),
                   report.rows_table("claims_robustness", "Per comparison: under how many readings each verdict",
                                     summary, 3, {k: "{:.0f}" for k in ("readings", "holds", "does not hold",
                                                                        "undecided", "not enough trials")})]
        lines += [report.to_markdown(tables[2])]
        formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
        figures = plot.claims_by_reading_figure(claim_rows, out, formats=formats,
                                                highlight=choice["chosen"]["reading"])
    for t in tables:
        report.write_table(t, out, latex=False)
    text = "\n".join(lines) + "\n"
    write_text_atomic(out / "readings.md", text)
    print(text)
    print(f"wrote {len(tables)} tables, medians.csv, choice.json and {len(figures)} figure files to {out}")
    return {"choice": choice, "tables": tables, "figures": figures, "out": out}


if __name__ == "__main__":
    cli.run_main(main, get_parser())
