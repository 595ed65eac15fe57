"""Tables, statistics and figures from a results tree (paper Tables 1-4, Figures 3-9, and more).

    python analyze.py results/
    python analyze.py results/ --out results/analysis --latex --format pdf,png
    python analyze.py results/analysis/trials.csv        # the same tables from the per-trial table

Reads every trial under the tree (or a trials.csv written by an earlier run), pools the trials of
one specification (space, data, op set, method, preset, training settings), and writes into
<root>/analysis/ (or --out): trials.csv (one row per trial, every number unrounded), the paper's
tables as CSV, Markdown and LaTeX (with the paper's numbers beside ours), statistics with
bootstrap 95% intervals, correlations, the random draws needed to beat the DAS median, a verdict
per claim (a)-(e) of SPEC 8, search diagnostics, and the figures (das/plot.py). Markdown goes to the
terminal. Partial, diverged, corrupt or foreign files are reported in one line each and skipped;
a trial without a finite architecture PSNR is counted (n_nonfinite) and left out of the numbers.
The statistics live in das/stats.py, the tables in das/report.py, the figures in das/plot.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the das package beside this script

REQUIRED = ("space", "data", "ops", "method", "seed", "status")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="results tree to read (e.g. results/), or a trials.csv written by analyze.py")
    p.add_argument("--out", default=None, help="output folder (default: <root>/analysis, or the folder of trials.csv)")
    p.add_argument("--latex", action="store_true", help="also write the tables as LaTeX (booktabs)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--format", default="pdf,png", help="figure formats, comma separated (default: pdf,png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per interval")
    return p


# ----------------------------------------------------------------------------- loading
def _result_files(root: Path):
    """result.json files under root, following links (a linked copy is caught as a duplicate)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = os.path.realpath(dirpath)

        def loops(d):  # a link to this folder or one above it would never end
            target = os.path.realpath(os.path.join(dirpath, d))
            return os.path.islink(os.path.join(dirpath, d)) and (here + os.sep).startswith(target + os.sep)

        dirnames[:] = sorted(d for d in dirnames if d != "analysis" and not loops(d))
        if "result.json" in filenames:
            yield Path(dirpath) / "result.json"


def load_trials(root: Path):
    """Every usable trial under root, and a list of (reason, path) for the files skipped."""
    trials, skipped, seen_keys, seen_paths = [], [], {}, set()
    for path in _result_files(root):
        real = os.path.realpath(path)
        if real in seen_paths:
            skipped.append(("duplicate", path))
            continue
        seen_paths.add(real)
        try:
            r = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            skipped.append(("corrupt", path))
            continue
        if not isinstance(r, dict) or any(k not in r for k in REQUIRED):
            skipped.append(("foreign", path))
            continue
        r.setdefault("preset", (r.get("hparams") or {}).get("name", "?"))
        key = (r["space"], r["data"], r["ops"], r["method"], r["preset"], r["seed"])
        if key in seen_keys:
            skipped.append(("duplicate", path))
            continue
        seen_keys[key] = path
        if r["status"] == "diverged":
            skipped.append(("diverged", path))
            continue
        if r["status"] == "running":
            skipped.append(("running", path))
            continue
        if r.get("architecture_psnr") is None:
            skipped.append(("no retrain", path))
            r["_path"] = path
            trials.append(r)  # still counts for one-shot statistics
            continue
        r["_path"] = path
        trials.append(r)
    return trials, skipped


def summarize_skipped(skipped) -> list[str]:
    why = {"corrupt": "corrupt JSON (delete or rerun the trial)",
           "foreign": "not a result file of this project (missing keys)",
           "diverged": "diverged runs (loss became NaN/inf)",
           "running": "unfinished runs (a sweep still running, or killed: rerun with --resume)",
           "no retrain": "searched but not retrained yet (retrain.py --genotype)",
           "duplicate": "duplicates of a trial already counted"}
    lines = []
    by = defaultdict(list)
    for reason, path in skipped:
        by[reason].append(str(path))
    for reason, paths in by.items():
        shown = ", ".join(paths[:3]) + (f", ... (+{len(paths) - 3})" if len(paths) > 3 else "")
        lines.append(f"skipped {len(paths)} {why[reason]}: {shown}")
    return lines


# ----------------------------------------------------------------------------- TEMPORARY adapter
# TEMPORARY until das.trial.load_trials(root) -> (records, skipped) lands: today's result.json
# dicts (read by load_trials above) as the flat records das.stats / das.report / das.plot take.
RECORD_SPEC = ("space", "data", "ops", "method", "preset", "epochs", "order", "width", "batches_per_epoch",
               "batch_size", "sigma_n", "noise_sigma")
SPEC_DEFAULTS = {"epochs": 50, "width": 16, "batches_per_epoch": 19, "batch_size": 128, "sigma_n": 0.01,
                 "noise_sigma": 0.1}  # SPEC 1-5, for the fields today's result.json leaves out


def records_from_results(trials) -> list[dict]:
    """TEMPORARY adapter: result.json dicts -> flat records (see das.trial.load_trials)."""
    records = []
    for t in trials:
        r = {k: t.get(k) if t.get(k) is not None else SPEC_DEFAULTS.get(k) for k in RECORD_SPEC}
        retrain = t.get("retrain") if isinstance(t.get("retrain"), dict) else {}
        hp = dict(t.get("hparams") or {})
        r.update(hparams=hp, seed=t.get("seed"), retrain_seed=t.get("retrain_seed", retrain.get("seed")), status=t.get("status"),
                 one_shot_psnr=t.get("one_shot_psnr"), architecture_psnr=t.get("architecture_psnr"),
                 genotype=t.get("genotype"), alphas=t.get("alphas"), alphas_init=t.get("alphas_init"),
                 history=t.get("history") or {}, wall_seconds=t.get("wall_seconds") or {},
                 candidates=t.get("candidates"), one_shot_ranking=t.get("one_shot_ranking"),
                 dir=str(Path(t["_path"]).parent) if t.get("_path") else t.get("dir"))
        r["group"] = "|".join(f"{k}={r[k]}" for k in RECORD_SPEC if r[k] is not None)
        records.append(r)
    return records


def load_records(source: Path):
    """Records and skipped files from a results tree or a trials.csv."""
    from das import report

    if source.is_file():
        return report.read_trials_csv(source), []
    try:
        from das.trial import load_trials as load_records_tree  # the shared loader, once it exists
    except ImportError:
        trials, skipped = load_trials(source)
        return records_from_results(trials), skipped
    return load_records_tree(source)


def skipped_lines(skipped) -> list[str]:
    """One line per kind of skipped file; (reason, path) pairs of any reason, or plain strings."""
    known = {"corrupt", "foreign", "diverged", "running", "no retrain", "duplicate"}
    pairs = [s for s in skipped if isinstance(s, (tuple, list)) and len(s) == 2]
    lines = summarize_skipped([p for p in pairs if p[0] in known])
    other = defaultdict(list)
    for s in skipped:
        if not (isinstance(s, (tuple, list)) and len(s) == 2 and s[0] in known):
            reason, path = (s[0], s[1]) if isinstance(s, (tuple, list)) and len(s) == 2 else ("other", s)
            other[str(reason)].append(str(path))
    for reason, paths in other.items():
        lines.append(f"skipped {len(paths)} ({reason}): " + ", ".join(paths[:3]) +
                     (f", ... (+{len(paths) - 3})" if len(paths) > 3 else ""))
    return lines


def draws_sentence(d: dict) -> str:
    """The random draws to beat the DAS median, in words with numbers."""
    where = f"- {d['space']}/{d['data']}/{d['ops']}/{d['preset']}: DAS median {d['das_median']:.2f} dB; "
    if d["p"] == 0:
        return where + f"none of {d['pool']} random architectures beats it (more than {d['pool']} draws expected)"
    return where + (f"{100 * d['p']:.2f}% of {d['pool']} random architectures beat it: expected {d['expected']:.2f} "
                    f"draws, median {d['median']:.0f}; the best of {d['budget']} beats it with probability "
                    f"{d['p_budget']:.2f} (paper: 49 draws)")


# ----------------------------------------------------------------------------- main
def main(args) -> dict:
    from das import report, stats

    source = Path(args.root)
    if not source.is_dir() and not (source.is_file() and source.suffix == ".csv"):
        print(f"error: {source}: no such results folder or trials.csv; run search.py / retrain.py first",
              file=sys.stderr)
        sys.exit(2)
    out = Path(args.out) if args.out else (source.parent if source.is_file() else source / "analysis")
    out.mkdir(parents=True, exist_ok=True)
    try:
        records, skipped = load_records(source)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    notes = skipped_lines(skipped)
    seed, resamples = args.seed, args.resamples

    summary = stats.group_summary(records, seed, resamples)
    corr = stats.correlations(records)
    draws = stats.draws_table(records, summary)
    claims = stats.verdicts(records, seed, resamples)
    diagnostics = stats.alpha_diagnostics(records)
    ranking = stats.ranking_correlations(records)

    frame = report.trials_frame(records)
    if not (source.is_file() and source.resolve() == (out / "trials.csv").resolve()):
        frame.to_csv(out / "trials.csv", index=False)
    paper = report.paper_tables(summary)
    statistics = report.statistics_table(summary)
    extra = [report.rows_table("correlations", "One-shot vs architecture PSNR per search group (Pearson with "
                               "Fisher-z 95% interval, Spearman, Kendall; p-values)", corr, 6),
             report.rows_table("draws", "Random draws needed to beat the DAS median (closed form: expected 1/p, "
                               "p = share of random architectures above it; paper: 49)", draws, 6,
                               {"pool": "{:.0f}", "budget": "{:.0f}", "median": "{:.0f}"}),
             report.rows_table("verdicts", "Claims (a)-(e) of SPEC 8", [{k: v[k] for k in (
                 "claim", "what", "verdict", "text")} for v in claims], 4),
             report.rows_table("alpha_diagnostics", "Search diagnostics per group (alphas_init vs alphas)",
                               [{k: v for k, v in d.items() if k != "sentence"} for d in diagnostics], 6,
                               {"trials": "{:.0f}", "rows": "{:.0f}", "n_ops": "{:.0f}", "same_argmax_rows": "{:.0f}"}),
             report.rows_table("ranking", "One-shot ranking: one-hot supernet vs stand-alone PSNR of candidates",
                               ranking, 7, {"n": "{:.0f}", "seed": "{:.0f}"})]
    tables = paper + [statistics] + extra
    for t in tables:
        report.write_table(t, out, latex=args.latex)

    lines = [f"# DAS analysis of {source}", "", f"{len(records)} trials read, {len(summary)} groups."]
    for n in notes:  # one paragraph per kind of skipped file
        lines += ["", n]
    lines.append("")
    lines += [report.to_markdown(t) for t in paper + [statistics]]
    if corr:
        lines.append(report.to_markdown(extra[0]))
    if draws:
        lines += ["### Random draws to beat the DAS median", ""] + [draws_sentence(d) for d in draws] + [""]
    lines += ["### Claims (SPEC 8)", ""] + [f"- {c['text']}" for c in claims] + [""]
    if diagnostics:
        lines += ["### Search diagnostics", ""] + [f"- {d['sentence']}" for d in diagnostics] + [""]
    if ranking:
        lines.append(report.to_markdown(extra[4]))
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)

    figures = []
    if not args.no_plots and records:
        from das import plot

        formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip())
        figures = (plot.scatter_figures(records, out, formats) + plot.op_choice_figures(records, out, formats)
                   + plot.alpha_trajectory_figures(records, out, formats)
                   + plot.alpha_diagnostics_figures(diagnostics, out, formats)
                   + plot.training_curve_figures(records, out, formats) + plot.ranking_figures(records, out, formats)
                   + plot.best_genotype_figures(records, out, formats))
    print(text)
    print(f"wrote {len(tables)} tables, trials.csv and {len(figures)} figure files to {out}")
    return {"records": records, "skipped": skipped, "summary": summary, "correlations": corr, "draws": draws,
            "claims": claims, "diagnostics": diagnostics, "ranking": ranking, "tables": tables,
            "figures": figures, "out": out, "report": text}


if __name__ == "__main__":
    main(get_parser().parse_args())
