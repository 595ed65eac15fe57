"""das.report: the per-trial table round-trips, summary CSVs are numeric, LaTeX has the paper's layout."""
import math
import re

import numpy as np
import pandas as pd
import pytest

from das import collect, report, stats
from tests.test_stats import make_records


@pytest.fixture
def synthetic():
    return make_records()


def test_trials_csv_round_trips_every_record_exactly(synthetic, tmp_path):
    records, _ = synthetic
    records[0].update(architecture_psnr=float("nan"), status="diverged")  # non-finite values survive as such
    records[1]["one_shot_psnr"] = None
    frame = collect.trials_frame(records)
    assert len(frame) == len(records) and frame["architecture_psnr"].dtype == float
    frame.to_csv(tmp_path / "trials.csv", index=False)
    back = collect.read_trials_csv(tmp_path / "trials.csv")
    assert len(back) == len(records)
    for a, b in zip(records, back):
        for k in ("group", "space", "data", "ops", "method", "preset", "seed", "epochs", "width", "sigma_n",
                  "genotype", "alphas", "alphas_init", "history", "candidates", "one_shot_ranking", "wall_seconds"):
            assert b[k] == a[k], k  # JSON and round-trip CSV parsing keep every float exactly
        for k in ("architecture_psnr", "one_shot_psnr"):
            if a[k] is None or not math.isfinite(a[k]):
                assert b[k] is None
            else:
                assert b[k] == a[k]  # unrounded: the very same float
    assert isinstance(back[0]["seed"], int)
    # the statistics of the read-back records are those of the originals
    s1 = stats.group_summary(records)
    s2 = stats.group_summary(back)
    assert [(r["group"], r["n"], r["n_nonfinite"], r["median"]) for r in s1] == \
           [(r["group"], r["n"], r["n_nonfinite"], r["median"]) for r in s2]


def test_summary_csvs_are_numeric(synthetic, tmp_path):
    records, known = synthetic
    summary = stats.group_summary(records)
    t = report.statistics_table(summary)
    report.write_table(t, tmp_path)
    df = pd.read_csv(tmp_path / "statistics.csv")
    for c in ("n", "n_nonfinite", "n_one_shot"):
        assert pd.api.types.is_integer_dtype(df[c]), c
    for c in ("max", "mean", "median", "median_ci_low", "median_ci_high", "mean_ci_low", "mean_ci_high", "seconds",
              "paper_median"):
        assert pd.api.types.is_float_dtype(df[c]), c
    row = df[(df.space == "seq") & (df.data == "blur") & (df.ops == "all") & (df.method == "das")].iloc[0]
    assert row["median"] == pytest.approx(np.median(known[("blur", "all", "das")]), abs=1e-12)
    assert row["paper_median"] == 18.57 and row["seconds"] == 120.0
    for t in report.paper_tables(summary):
        report.write_table(t, tmp_path)
        df = pd.read_csv(tmp_path / f"{t.name}.csv")
        numeric = [c for c in df.columns if c not in ("Ops", "Method", "Data", "Hyperparameters")]
        assert all(pd.api.types.is_numeric_dtype(df[c]) for c in numeric), t.name


def test_paper_table1_layout_and_values(synthetic):
    records, known = synthetic
    t1 = next(t for t in report.paper_tables(stats.group_summary(records)) if t.name == "table1_seq_H1")
    f = t1.frame
    assert list(f[("", "Method")][:5]) == ["Learnable Grad. only", "Nets only", "DAS", "Random", "Random Search"]
    rs = f[(f[("", "Ops")] == "good ops.") & (f[("", "Method")] == "Random Search")].iloc[0]
    assert rs[("Downsampling", "Median")] == pytest.approx(np.median(known[("downsample", "good", "random-search")]))
    assert rs[("Downsampling", "Paper Median")] == 17.56 and rs[("Runtime", "Paper s")] == 175
    assert rs[("Blur", "Paper Max")] == 24.04 and rs[("Blur", "Paper Mean")] == 22.85


def test_latex_booktabs_grouped_headers_and_page_width(synthetic):
    summary = stats.group_summary(make_records()[0])
    for t in report.paper_tables(summary) + [report.statistics_table(summary)]:
        tex = report.to_latex(t)
        assert tex.startswith("% needs \\usepackage{booktabs,graphicx,longtable}")
        assert tex.count("\\begin{table}") == tex.count("\\end{table}") == tex.count("\\label{") >= 1
        assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
        body = re.sub(r"\\[{}_%&#]", "", tex).replace(r"\ifdim\width>\linewidth\linewidth\else\width\fi", "")
        assert body.count("{") == body.count("}"), t.name
        for spec in re.findall(r"\\begin\{tabular\}\{([lr]+)\}", tex):
            assert len(spec) <= 14, (t.name, spec)  # at 3pt column separation, fits a page
        rows = [l for l in tex.splitlines() if l.endswith("\\\\") and "multicolumn" not in l]
        for l in rows:  # every row has as many cells as its tabular has columns
            assert l.count("&") + 1 in {len(s) for s in re.findall(r"\\begin\{tabular\}\{([lr]+)\}", tex)}
    tex = report.to_latex(next(t for t in report.paper_tables(summary) if t.name == "table1_seq_H1"))
    assert "\\multicolumn{5}{c}{Blur}" in tex and "\\multicolumn{5}{c}{Downsampling}" in tex
    assert "\\cmidrule(lr){3-7}" in tex
    assert "& 2:00 & 2:53 \\\\" in tex  # our runtime beside the paper's, as m:ss
    stat = report.to_latex(report.statistics_table(summary))
    assert stat.count("\\begin{tabular}") == 2 and "tab:statistics-1" in stat and "tab:statistics-2" in stat


def test_markdown_rounds_and_notes_nonfinite(synthetic):
    records, known = synthetic
    for r in records:
        if r["method"] == "das" and r["ops"] == "all" and r["data"] == "blur" and r["seed"] < 2:
            r["architecture_psnr"] = float("nan")
    t = report.statistics_table(stats.group_summary(records))
    md = report.to_markdown(t)
    assert "Note: seq/blur/all/das/H1: 2 of 10 trials without a finite architecture PSNR left out" in md
    kept = known[("blur", "all", "das")][2:]
    assert f"| {np.median(kept):.2f} |" in md
    rows = report.rows_table("x", "X", [{"group": "g", "what": "a|b", "v": 1.23456}], 2)
    md = report.to_markdown(rows)
    assert "| a\\|b | 1.23 |" in md and "| g |" not in md  # pipes escaped; the long group key in the CSV only


def test_paper_value_lookup():
    assert report.paper_value("seq", "blur", "all", "das", "H1") == (22.86, 15.64, 18.57)
    assert report.paper_value("seq", "downsample", "good", "das", "BOHB-Blur") == (18.26, 14.63, 15.93)
    assert report.paper_value("cell", "downsample", "all", "random", "H1") == (13.39, 4.37, 3.21)
    assert report.paper_value("seq", "blur", "all", "random", "H2") is None
    assert report.mmss(159) == "2:39" and report.mmss(float("nan")) == "-"
