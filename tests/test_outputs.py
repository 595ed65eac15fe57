"""Outputs a paper author would paste: every table is a valid table (an empty one too), its LaTeX
compiles without running off the page (pdflatex, where installed), figure tick labels never overlap,
and no two files of the repository or of an analysis differ only in case."""
import shutil
import subprocess
from collections import Counter

import numpy as np
import pandas as pd
import pytest

import analyze
from das import report
from tests.conftest import ROOT
from tests.test_stats import make_records

PDFLATEX = shutil.which("pdflatex")


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    """analyze.py over a trials.csv of synthetic records (every group kind; no retrain spread, so
    that table has no rows)."""
    from das.collect import write_trials_csv

    out = tmp_path_factory.mktemp("analysis")
    records, _ = make_records(n=8)
    write_trials_csv(records, out / "trials.csv")
    res = analyze.main(analyze.get_parser().parse_args([str(out / "trials.csv"), "--latex", "--format", "png",
                                                        "--resamples", "200"]))
    return res


def test_an_empty_table_is_a_valid_empty_table(analysis):
    out = analysis["out"]
    spread = pd.read_csv(out / "retrain_spread.csv")
    assert len(spread) == 0 and list(spread.columns)[:2] == ["group", "space"]
    tex = (out / "retrain_spread.tex").read_text()
    assert "(no rows)" in tex and "\\begin{tabular}{}" not in tex
    empty = report.rows_table("nothing", "Nothing at all", [], 1)
    assert "\\begin{tabular}{l}" in report.to_latex(empty)


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed")
def test_every_latex_table_compiles_within_the_page(analysis, tmp_path):
    tables = sorted(analysis["out"].glob("*.tex"))
    assert len(tables) >= 10
    for tex in tables:
        doc = tmp_path / f"{tex.stem}.tex"
        doc.write_text("\\documentclass{article}\n\\usepackage{booktabs,graphicx,longtable}\n\\begin{document}\n"
                       f"\\input{{{tex}}}\n\\end{{document}}\n")
        p = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        log = (tmp_path / f"{tex.stem}.log").read_text(errors="replace")
        assert p.returncode == 0, (tex.name, log[-1500:])
        assert "Overfull \\hbox" not in log, (tex.name, [l for l in log.splitlines() if "Overfull" in l][:3])


def _overlaps(fig) -> list:
    """Pairs of visible tick labels of one axis whose rendered boxes intersect."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
            boxes = [t.get_window_extent(renderer) for t in labels]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    if boxes[i].overlaps(boxes[j]):
                        bad.append((labels[i].get_text(), labels[j].get_text()))
    return bad


@pytest.mark.parametrize("span", [(0.02, 0.9), (0.3, 0.5), (1e-4, 10.0)])
def test_log_axis_tick_labels_never_overlap(span):
    """The training-loss axis (log) over one tenth of a decade to five decades."""
    from das.plot import _plain_log_axis, pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2.6, 2.3))
    ax.plot(np.arange(50), np.geomspace(*span, 50))
    ax.set_yscale("log")
    _plain_log_axis(ax.yaxis)
    try:
        assert _overlaps(fig) == []
        assert len([t for t in ax.yaxis.get_ticklabels(which="both") if t.get_text()]) >= 2
    finally:
        plt.close(fig)


def test_the_analysis_figures_have_no_overlapping_tick_labels(analysis, monkeypatch):
    """Every figure the analysis draws, inspected before it is written."""
    from das import plot

    seen = []
    real = plot.save

    def check(fig, out, stem, formats=plot.FORMATS):
        seen.append((stem, _overlaps(fig)))
        return real(fig, out, stem, formats)

    monkeypatch.setattr(plot, "save", check)
    out = analysis["out"]
    analyze.main(analyze.get_parser().parse_args([str(out / "trials.csv"), "--format", "png", "--resamples", "100",
                                                  "--out", str(out / "again")]))
    assert len(seen) >= 10
    assert [(stem, bad) for stem, bad in seen if bad] == []


def test_no_two_files_differ_only_in_case(analysis):
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for names in (tracked, [str(p) for p in analysis["out"].rglob("*")]):
        folded = Counter(n.lower() for n in names)
        assert [n for n in names if folded[n.lower()] > 1] == []


def test_a_figure_saved_twice_is_the_same_bytes(tmp_path):
    """PDF and SVG embed a creation date unless told not to: plot.save writes none, so re-exporting
    committed results changes only figures whose content changed. Two saves a second apart compare
    equal byte for byte; matplotlib's own default would not (checked, so the test can fail)."""
    import time

    from das import plot

    plt = plot.pyplot()

    def draw():
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [1, 0, 2])
        return fig

    first = plot.save(draw(), tmp_path / "a", "f", ("pdf", "svg", "png"))
    time.sleep(1.1)
    second = plot.save(draw(), tmp_path / "b", "f", ("pdf", "svg", "png"))
    for p, q in zip(first, second):
        assert p.read_bytes() == q.read_bytes(), p.name
    fig = draw()
    fig.savefig(tmp_path / "plain.pdf")
    plt.close(fig)
    assert b"CreationDate" in (tmp_path / "plain.pdf").read_bytes()
    assert b"CreationDate" not in first[0].read_bytes()
