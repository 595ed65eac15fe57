"""Tables, statistics and figures from a results tree (paper Tables 1-4, Figures 3-9, and more).

    python analyze.py results/
    python analyze.py results/ --out results/analysis --latex --format pdf,png
    python analyze.py results/analysis/trials.csv        # the same tables from the per-trial table
    python analyze.py results/ --out study --gzip         # the table as trials.csv.gz (to commit)

Reads every trial under the tree (or a trials.csv / trials.csv.gz written by an earlier run), pools
the trials of one specification (space, data, op set, method, preset, training settings), and writes
into <root>/analysis/ (or --out): trials.csv (one row per trial, every number unrounded; with --gzip
trials.csv.gz) and trials.manifest.json (its rows and SHA-256, checked when it is read), the paper's
tables as CSV, Markdown and LaTeX (with the paper's numbers beside ours), statistics with
bootstrap 95% intervals, correlations, the random draws needed to beat the DAS median, a verdict
per claim (a)-(e) (docs/readings.md), search diagnostics, and the figures (das/plot.py). Markdown goes to the
terminal. Partial, diverged, corrupt or foreign files are reported in one line each and skipped;
a trial without a finite architecture PSNR is counted (n_nonfinite) and left out of the numbers.
The statistics live in das/stats.py, the tables in das/report.py, the figures in das/plot.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the das package beside this script

from das import cli  # noqa: E402
from das.utils import UserError  # noqa: E402


def get_parser():
    p = cli.parser(__doc__)
    p.add_argument("root", nargs="+", help="results trees to read (e.g. results/), or trials.csv (or trials.csv.gz) "
                   "files written by analyze.py; the trials of all of them are pooled")
    p.add_argument("--out", default=None, help="output folder (default: <root>/analysis, or the folder of trials.csv, "
                   "of the first root)")
    p.add_argument("--gzip", action="store_true", help="write the per-trial table as trials.csv.gz (gzip, the form "
                   "in which a large study is committed) instead of trials.csv")
    p.add_argument("--latex", action="store_true", help="also write the tables as LaTeX (booktabs)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--format", default="pdf,png", help="figure formats, comma separated (default: pdf,png)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per interval (default 2000)")
    p.add_argument("--study", default=None, metavar="STUDY[,STUDY]",
                   help="keep only the trials of studies of scripts/sweep.py (each one's cells and seeds at its own "
                   "settings: trials run with other settings are left out, and the note names them), e.g. table1 "
                   "or confirmation-table1 (Table 1 under the screen's chosen reading; with --reading "
                   "reproduction/readings/choice.json); several, comma separated, e.g. "
                   "confirmation-table1,confirmation-table2")
    p.add_argument("--preset", "--presets", dest="preset", default=None, metavar="FILE[,FILE]",
                   help="with --study: each study's rows run under these JSON preset files (sweep.py --preset "
                   "FILE, e.g. bohb.py's incumbent.json) count as its trials too, beside its own presets (every "
                   "study named gets every file)")
    p.add_argument("--reading", default=None, metavar="READING",
                   help="keep only the trials of one reading of the paper's open details (docs/readings.md), e.g. "
                   "noise_sigma=1+psnr=pooled, 'defaults', or reproduction/readings/choice.json (the screen's "
                   "choice): where a setting cannot change a trial, its default's trials count; an evaluation-only "
                   "setting (psnr) rereads them; the tables are the paper's, with its numbers beside ours. Without "
                   "it, trials of other settings get tables of their own, named by their label")
    p.add_argument("--seed", default=None, help=argparse.SUPPRESS)  # renamed: a one-line error says so
    return p


# ----------------------------------------------------------------------------- loading
def load_records(source: Path):
    """Records (one per trained architecture: das.collect.load_trials) and skipped files, from a
    results tree or from a trials.csv written by an earlier run (validated: das.collect.read_trials_csv)."""
    from das import collect

    if source.is_file():
        return collect.read_trials_csv(source), []
    return collect.load_trials(source)


def check_once(records, sources):
    """One trial in two of the sources would be counted twice (a search that diverged in one and was
    retrained in the other too: its key is the search seed)."""
    seen = set()
    for r in records:
        retrain = r.get("retrain_seed")
        key = (r.get("group"), r.get("seed"), r.get("seed") if retrain is None else retrain)
        if key in seen:
            where = "/".join(str(r.get(k)) for k in ("space", "data", "ops", "method", "label"))
            raise UserError(f"the trial {where} seed {r.get('seed')} is in more than one of "
                            f"{', '.join(map(str, sources))}; pass each results tree once")
        seen.add(key)


def check_study(names):
    from das import readings

    known = readings.study_names()
    for name in names.split(","):
        if name not in known:
            raise UserError(f"--study {name}: no such study; choose one of {known} (several: comma separated)")


def only_study(records, names, table_name, preset_files=None):
    """The records of sweep studies (`names`, comma separated: their cells and seeds, at their
    settings, with their rows under each JSON preset file of `preset_files` as sweep.py --preset runs
    them; a trial reread under another PSNR averaging counts as the trial it rereads), and a note of
    what was left out."""
    from collections import Counter

    from das import collect, readings

    keys = set()
    for name in names.split(","):
        study = readings.named_study(name, records)
        if name == "readings-combined" and not study.cells:
            raise UserError("--study readings-combined: no stage-1 reading helps by the pre-registered rule in "
                            "these trials (or stage 1 is not in them); pass the stage-1 trials too")
        keys |= {(spec.group(), spec.seed) for spec in study.with_presets(preset_files).specs()}
    name = names.replace(",", " + ")
    kept, left = [], Counter()
    for r in records:
        if (collect.as_run_group(r), r.get("seed")) in keys:
            kept.append(r)
        else:
            left[str(r.get("label"))] += 1
    other = "; ".join(f"{n} of label {label}" for label, n in left.most_common(5))
    return kept, (f"The study {name}: {len(kept)} of the {len(records)} trials read are its trials (its cells and "
                  f"seeds at its settings); the others are left out, also of {table_name}"
                  + (f" ({other}{'; ...' if len(left) > 5 else ''})" if left else "") + ".")


def for_tables(records, one_reading=False):
    """The records the tables pool: a search's own retrain (retrain seed = search seed) and every
    baseline, with `preset` shown as its label (the preset plus every non-default setting), so
    groups of other settings get rows of their own. Under one reading (--reading) a cell whose
    trials share one label shows it as the preset itself, so the reading's trials make the paper's
    tables beside the paper's numbers, whichever settings the reading changes in which cell; a
    cell holding trials of several labels (other candidates, hyperparameters or retrain epochs)
    keeps them apart by label. Extra retrain seeds go to the spread table."""
    cell = ("space", "data", "ops", "method", "preset")
    labels: dict = {}
    for r in records:
        labels.setdefault(tuple(r.get(k) for k in cell), set()).add(r.get("label"))
    out = []
    for r in records:
        if r.get("primary") is False:
            continue
        own = one_reading and len(labels[tuple(r.get(k) for k in cell)]) == 1
        shown = r.get("preset") if own else (r.get("label") or r.get("preset"))
        out.append({**r, "preset_name": r.get("preset"), "preset": shown})
    return out


def draws_sentence(d: dict) -> str:
    """The random draws to beat the DAS median, in words with numbers."""
    where = f"- {d['space']}/{d['data']}/{d['ops']}/{d['preset']}: DAS median {d['das_median']:.2f} dB; "
    if d["p"] == 0:
        return where + f"none of {d['pool']} random architectures beats it (more than {d['pool']} draws expected)"
    return where + (f"{100 * d['p']:.2f}% of {d['pool']} random architectures beat it: expected {d['expected']:.2f} "
                    f"draws, median {d['median']:.0f}; the best of {d['budget']} beats it with probability "
                    f"{d['p_budget']:.2f} (paper: 49 draws)")


def unread_sentences(skipped, sources) -> list[str]:
    """How many trials of each cell could not be read (das.collect.unread_by_cell)."""
    from das.collect import unread_by_cell

    counts = unread_by_cell(skipped, [s for s in sources if s.is_dir()])
    return [f"- {'/'.join(cell)}: {n} trial{'s' if n > 1 else ''} not read" for cell, n in sorted(counts.items())]


# ----------------------------------------------------------------------------- main
def main(args) -> dict:
    try:
        return _main(args)
    except OSError as exc:  # a full disk, a read-only folder: one line, and nothing half-written
        name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        raise UserError(f"{name}{exc.strerror or exc}; check that --out is a writable folder with space left") from None


def _main(args) -> dict:
    from das import collect, report, stats

    if args.seed is not None:
        raise UserError("analyze.py --seed was renamed --bootstrap-seed (the seed of the bootstrap resampling; "
                        "--seed names trial seeds everywhere else)")
    if args.resamples < 100 or args.resamples > 1_000_000:
        raise UserError(f"--resamples must be in 100..1000000, got {args.resamples}")
    sources = [Path(r) for r in args.root]
    for source in sources:
        if not source.is_dir() and not (source.is_file() and source.name.endswith((".csv", ".csv.gz"))):
            raise UserError(f"{source}: no such results folder or trials.csv; run search.py / retrain.py first")
    source = sources[0]
    out = Path(args.out) if args.out else (source.parent if source.is_file() else source / "analysis")
    # a trials.csv (.gz) read in its own folder is not written again; a pooled table never replaces an input
    table = out / ("trials.csv.gz" if args.gzip else "trials.csv")
    other = out / ("trials.csv" if args.gzip else "trials.csv.gz")  # the other form: one table per folder
    own = [s for s in sources if s.is_file() and s.resolve() in (table.resolve(), other.resolve())]
    reads_output = bool(own)
    if own and len(sources) > 1:
        raise UserError(f"{own[0]} is one of the inputs and would be replaced by the pooled table; pass --out FOLDER")
    if own and args.gzip and own[0].resolve() != table.resolve():
        raise UserError(f"{own[0]} is the input and this folder's table, so --gzip writes no trials.csv.gz here: "
                        f"pass --out FOLDER, or read the results tree")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot write the analysis here ({exc.strerror}); pass --out FOLDER") from None
    if args.study is not None:
        check_study(args.study)
    if args.preset is not None:  # files only (the study already keeps its named presets), checked before reading
        from das.hparams import load_hparams

        if args.study is None:
            raise UserError("--preset counts a preset file's trials as a study's: pass --study too (e.g. "
                            "--study table3 --preset results/bohb/RUN/incumbent.json)")
        for f in [w for w in args.preset.split(",") if w]:
            if not f.endswith(".json"):
                raise UserError(f"--preset {f}: analyze.py takes JSON preset files here (--study keeps the "
                                "study's named presets); pass e.g. results/bohb/RUN/incumbent.json")
            load_hparams(f)
    if args.reading is not None:  # checked before the trees are read
        from das import readings

        reading = readings.parse(args.reading)
    records, skipped = [], []
    for src in sources:
        got, missed = load_records(src)
        records += got
        skipped += missed
    if len(sources) > 1:
        check_once(records, sources)

    notes = collect.summarize_skipped(skipped)
    reading_name = None
    if args.study is not None:
        records, note = only_study(records, args.study, table.name, args.preset)
        notes.append(note)
    if args.reading is not None:
        from das import readings

        reading_name = readings.name(reading)
        kept = readings.view(records, reading)
        evaluation = readings.evaluation_part(reading)
        # trials of the reading's training settings that cannot be reread under its evaluation ones
        old = [r for r in (readings.view(records, readings.trained_part(reading)) if evaluation else [])
               if r.get("status") == "complete" and not collect.reread([r], **evaluation)]
        notes.append(f"Under the reading {reading_name} (docs/readings.md): {len(kept)} of the {len(records)} trials "
                     f"read are its trials; the others are left out, also of {table.name}"
                     + (f"; trials it would hold but that hold no numbers under "
                        f"{', '.join(f'{k}={v}' for k, v in evaluation.items())}: {len(old)} (they ran before those "
                        "were stored; run them again: scripts/sweep.py --done-in does not count them as done)"
                        if old else "") + ".")
        records = kept
    unread = unread_sentences(skipped, sources)
    if not records:
        notes.append(f"no finished trials found under {source}; run search.py / retrain.py or scripts/sweep.py first")
    spread = stats.retrain_spread(records)
    all_records, records = records, for_tables(records, one_reading=reading_name is not None)
    seed, resamples = args.bootstrap_seed, args.resamples

    summary = stats.group_summary(records, seed, resamples)
    corr = stats.correlations(records)
    draws = stats.draws_table(records, summary)
    claims = stats.verdicts(records, seed, resamples)
    diagnostics = stats.alpha_diagnostics(records)
    ranking = stats.ranking_correlations(records)
    presets = stats.preset_sensitivity(records)
    preset_claims = stats.preset_claims(records, seed=seed, resamples=resamples)

    if not reads_output:
        collect.write_trials_csv(all_records, table)
        if other.exists():  # an earlier run's other form: the manifest now covers this one only
            other.unlink()
            notes.append(f"removed {other} (an earlier run's table; this folder's table is now {table.name})")
    paper = report.paper_tables(summary, reading=reading_name)
    deviation = stats.paper_deviation(summary)
    named = {
        "statistics": report.statistics_table(summary),
        "comparison": report.comparison_table(summary),
        "paper_deviation": report.rows_table(
            "paper_deviation", "Deviation of our medians from the paper's: mean absolute deviation (MAD, dB), mean "
            "difference, cells above the paper's median, cells whose 95% interval holds it, Kendall tau of the "
            "orderings", deviation, 1, {"n_cells": "{:.0f}", "above": "{:.0f}", "paper_in_ci": "{:.0f}"},
            stats.DEVIATION_COLUMNS),
        "correlations": report.rows_table("correlations", "One-shot vs architecture PSNR per search group (Pearson "
                                          "with Fisher-z 95% interval, Spearman, Kendall; p-values)", corr, 6,
                                          columns=stats.CORRELATION_COLUMNS),
        "draws": report.rows_table("draws", "Random draws needed to beat the DAS median (closed form: expected 1/p, "
                                   "p = share of random architectures above it; paper: 49)", draws, 6,
                                   {"pool": "{:.0f}", "budget": "{:.0f}", "median": "{:.0f}"}, stats.DRAWS_COLUMNS),
        "verdicts": report.rows_table("verdicts", "Claims (a)-(e) (docs/readings.md)", [{k: v[k] for k in (
            "claim", "what", "verdict", "text")} for v in claims], 4, columns=stats.VERDICT_COLUMNS,
            latex_widths={"what": "0.2\\linewidth", "verdict": "0.12\\linewidth", "text": "0.48\\linewidth"}),
        "alpha_diagnostics": report.rows_table(
            "alpha_diagnostics", "Search diagnostics per group (alphas_init vs alphas)",
            [{k: v for k, v in d.items() if k != "sentence"} for d in diagnostics], 6,
            {"trials": "{:.0f}", "rows": "{:.0f}", "n_ops": "{:.0f}", "same_argmax_rows": "{:.0f}"},
            stats.DIAGNOSTICS_COLUMNS),
        "preset_sensitivity": report.rows_table(
            "preset_sensitivity", "Does the search hang on its hyperparameters? Median architecture PSNR (dB) per "
            "preset: best, worst, range, the median interquartile range over seeds within a preset, Kruskal-Wallis "
            "test across presets, the paper's range and best preset over the same presets, Kendall tau of the "
            "orderings", presets, 4, {"presets": "{:.0f}", "n_min": "{:.0f}", "paper_presets": "{:.0f}"},
            stats.PRESET_COLUMNS),
        "preset_claims": report.rows_table(
            "preset_claims", "The paper's statements about its presets (das.study.PRESET_CLAIMS) per pair of presets "
            "(x, y): the statistic the statement names (median, mean, max, standard deviation in dB, or Pearson r), "
            "difference with 95% interval, one-sided p-values, verdict, the paper's value", [{k: r[k] for k in stats.CLAIM_COLUMNS} for r in preset_claims], 4,
            {"n_x": "{:.0f}", "n_y": "{:.0f}"}, stats.CLAIM_COLUMNS),
        "ranking": report.rows_table("ranking", "One-shot ranking: one-hot supernet vs stand-alone PSNR of candidates",
                                     ranking, 7, {"n": "{:.0f}", "seed": "{:.0f}"}, stats.RANKING_COLUMNS),
        # (LaTeX: Kendall's tau only; Spearman's rho is in the CSV)
        "retrain_spread": report.rows_table("retrain_spread", "Architecture PSNR over retrain seeds of one searched "
                                            "genotype (within-search spread) against the spread between searches",
                                            spread, 5, {"searches": "{:.0f}", "retrains": "{:.0f}"},
                                            stats.SPREAD_COLUMNS),
    }
    if len(named["ranking"].frame.columns):
        named["ranking"].latex_parts = [[c for c in named["ranking"].frame.columns
                                         if c[1] not in ("group", "spearman_rho", "spearman_p")]]
    tables = paper + list(named.values())
    for t in tables:
        report.write_table(t, out, latex=args.latex)

    # the terminal report: (heading or None, content) in order; a table is shown where it has rows
    lines = [f"# DAS analysis of {', '.join(map(str, sources))}", "",
             f"{len(records)} trials read, {len(summary)} groups."]
    clock = stats.wall_clock(all_records)
    if clock["trials"]:  # the union of the trials' start-finish times (older records carry none)
        lines += ["", f"Wall clock: the {clock['trials']} timed trials ran over {clock['wall_hours']:.2f} h "
                      f"({clock['trial_hours']:.2f} trial-hours side by side"
                      + (f"; {clock['untimed']} records without times" if clock["untimed"] else "") + ")."]
    for n in notes:  # one paragraph per kind of skipped file
        lines += ["", n]
    if unread:
        lines += ["", "Trials not read, per cell of the tables:"] + unread
    lines.append("")
    lines += [report.to_markdown(t) for t in paper + [named["statistics"]]]
    if len(named["comparison"].frame):
        lines.append(report.to_markdown(named["comparison"]))
    if deviation:
        lines.append(report.to_markdown(named["paper_deviation"]))
    if corr:
        lines.append(report.to_markdown(named["correlations"]))
    if draws:
        lines += ["### Random draws to beat the DAS median", ""] + [draws_sentence(d) for d in draws] + [""]
    lines += ["### Claims (a)-(e) (docs/readings.md)", ""] + [f"- {c['text']}" for c in claims] + [""]
    if presets:
        lines += ["### Hyperparameter presets (Tables 3 and 4)", ""] + [f"- {stats.preset_sentence(d)}"
                                                                       for d in presets] + [""]
    if preset_claims:
        lines += ["### The paper's statements about its presets", ""] + [
            f"- {t}" for t in stats.preset_claim_sentences(preset_claims)] + [""]
    if diagnostics:
        lines += ["### Search diagnostics", ""] + [f"- {d['sentence']}" for d in diagnostics] + [""]
    if ranking:
        lines.append(report.to_markdown(named["ranking"]))
    if spread:
        lines.append(report.to_markdown(named["retrain_spread"]))
    text = "\n".join(lines) + "\n"
    from das.utils import write_text_atomic

    write_text_atomic(out / "report.md", text)

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
    print(f"wrote {len(tables)} tables, {'' if reads_output else table.name + ', '}{len(figures)} figure files to {out}")
    return {"records": records, "all_records": all_records, "spread": spread, "skipped": skipped, "summary": summary,
            "correlations": corr, "deviation": deviation, "draws": draws, "claims": claims, "diagnostics": diagnostics, "ranking": ranking,
            "presets": presets,
            "tables": tables, "named": named, "figures": figures, "out": out, "report": text}


if __name__ == "__main__":
    cli.run_main(main, get_parser())
