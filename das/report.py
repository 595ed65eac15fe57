"""Tables from group summaries (das.stats): numeric tables as CSV, Markdown for the terminal and
LaTeX in the paper's layout (Tables 1-4), with the paper's values (das.study.PAPER) beside ours
where the paper has them. Rows and columns follow das.vocab's registries (a method or op set
that is not registered gets rows under its own name). The per-trial table trials.csv is
das.collect's.

    tables = paper_tables(summary)                    # [Table], each with .frame (numeric columns)
    write_table(table, out, latex=True)               # CSV, Markdown, LaTeX
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from das import classical
from das.spec import setting
from das.study import PAPER_RUNTIME as PAPER_RUNTIME_S
from das.study import paper_value
from das.utils import write_text_atomic
from das.vocab import display, heading, is_search, ordered

# ----------------------------------------------------------------------------- tables
@dataclass
class Table:
    """A table: `frame` has numeric value columns under a two-level header (group, column);
    `formats` maps a column to its display format; `latex_parts` splits wide tables for LaTeX."""
    name: str
    title: str
    frame: pd.DataFrame
    label_columns: int = 2
    formats: dict = field(default_factory=dict)
    latex_parts: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    latex_widths: dict = field(default_factory=dict)   # column -> a paragraph width (long text wraps)


def _reference(data: str, reading: dict, name: str) -> float:
    """A classical reference's PSNR at the table's measurement noise and PSNR averaging."""
    sigma_n = reading.get("sigma_n")
    sigma_n = setting("sigma_n").default if sigma_n is None or sigma_n != sigma_n else float(sigma_n)
    averaging = reading.get("psnr") or setting("psnr").default
    return classical.references(data, sigma_n)[name]["psnr"][averaging]


def _summary_index(summary) -> dict:
    return {(s["space"], s["data"], s["ops"], s["method"], s["preset"]): s for s in summary}


def _fmt(v, f="{:.2f}") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if callable(f):
        return f(v)
    return f.format(v)


def mmss(seconds) -> str:
    """Seconds as m:ss, the paper's runtime format."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def paper_tables(summary, reading: str | None = None) -> list[Table]:
    """Paper Tables 1/2 (rows: op set, method; columns: data x (Max, Mean, Median, n, paper median),
    runtime) per space and preset, and Tables 3/4 (DAS per data and preset; columns: op set x ...);
    `reading` names the reading of the paper's open details all their trials share (analyze.py --reading)."""
    under = f", under the reading {reading} (docs/readings.md)" if reading else ""
    idx = _summary_index(summary)
    tables = []
    for space, preset in sorted({(k[0], k[4]) for k in idx}, key=lambda t: (t[0] != "seq", t[1] != "H1", t[1])):
        datas = ordered("data", (k[1] for k in idx if k[0] == space and k[4] == preset))
        rows = []
        for ops in ordered("ops", (k[2] for k in idx)):
            for method in ordered("method", (k[3] for k in idx)):
                cells = [idx.get((space, d, ops, method, preset)) for d in datas]
                if not any(c and c["n"] for c in cells):
                    continue
                row = {("", "Ops"): display("ops", ops), ("", "Method"): display("method", method)}
                secs = []
                for d, s in zip(datas, cells):
                    paper = paper_value(space, d, ops, method, preset)
                    top = display("data", d)
                    for col, key in (("Max", "max"), ("Mean", "mean"), ("Median", "median")):
                        row[(top, col)] = s[key] if s else np.nan
                    row[(top, "n")] = s["n"] if s else 0
                    row[(top, "Paper Max")] = paper[0] if paper else np.nan
                    row[(top, "Paper Mean")] = paper[1] if paper else np.nan
                    row[(top, "Paper Median")] = paper[2] if paper else np.nan
                    if s and math.isfinite(s["seconds"]):
                        secs.append(s["seconds"])
                row[("Runtime", "s")] = float(np.mean(secs)) if secs else np.nan
                row[("Runtime", "Paper s")] = (PAPER_RUNTIME_S.get((ops, method), np.nan)
                                               if space == "seq" and preset == "H1" else np.nan)
                rows.append(row)
        if not rows:
            continue
        reading = next(s for k, s in idx.items() if k[0] == space and k[4] == preset)
        for name, label in classical.NAMES.items():  # what the networks buy: the classical references
            row = {("", "Ops"): "-", ("", "Method"): label}
            for d in datas:
                value = _reference(d, reading, name)
                row.update({(display("data", d), "Max"): np.nan, (display("data", d), "Mean"): value,
                            (display("data", d), "Median"): value, (display("data", d), "n"): np.nan})
                row.update({(display("data", d), k): np.nan for k in ("Paper Max", "Paper Mean", "Paper Median")})
            row.update({("Runtime", "s"): np.nan, ("Runtime", "Paper s"): np.nan})
            rows.append(row)
        frame = pd.DataFrame(rows)
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        number = "1" if space == "seq" else "2"
        shown = [c for c in frame.columns if c[1] in ("Ops", "Method", "Max", "Mean", "Median", "n", "Paper Median", "s",
                                                      "Paper s")]
        tables.append(Table(
            name=f"table{number}_{space}_{preset}",
            title=(f"Architecture validation PSNR (dB), {display('space', space)} space, preset {preset}{under}: "
                   f"max, mean and median over n trials; runtime: mean wall time per trial, all stages "
                   f"(search and retrain), m:ss; 'Paper' is the paper's Table {number}; the last rows: classical "
                f"reconstructions (das/classical.py) on the same evaluation set" +
                   ("" if preset == "H1" else " (the paper reports H1 only)")),
            frame=frame, formats={"n": "{:.0f}", "s": mmss, "Paper s": mmss},
            latex_parts=[shown]))
    all_ops = ordered("ops", (k[2] for k in idx))
    for space in sorted({k[0] for k in idx}, key=lambda s: s != "seq"):
        for method in ordered("method", (k[3] for k in idx if is_search(k[3]))):
            rows = []
            for d in ordered("data", (k[1] for k in idx)):
                presets = sorted({k[4] for k in idx if k[0] == space and k[1] == d and k[3] == method},
                                 key=lambda p: (p not in ("H1", "H2"), p))
                for preset in presets:
                    row = {("", "Data"): display("data", d), ("", "Hyperparameters"): preset}
                    for ops in all_ops:
                        s = idx.get((space, d, ops, method, preset))
                        paper = paper_value(space, d, ops, method, preset)
                        top = heading(ops)
                        for col, key in (("Max", "max"), ("Mean", "mean"), ("Median", "median")):
                            row[(top, col)] = s[key] if s else np.nan
                        row[(top, "n")] = s["n"] if s else 0
                        row[(top, "Paper Median")] = paper[2] if paper else np.nan
                    rows.append(row)
                if presets:  # the classical references at the measurement noise of the first preset's trials
                    reading = next(s for k, s in idx.items() if k[0] == space and k[1] == d and k[4] == presets[0])
                    for name, label in classical.NAMES.items():
                        value = _reference(d, reading, name)
                        row = {("", "Data"): display("data", d), ("", "Hyperparameters"): label}
                        for ops in all_ops:
                            row.update({(heading(ops), "Max"): np.nan, (heading(ops), "Mean"): value,
                                        (heading(ops), "Median"): value, (heading(ops), "n"): np.nan,
                                        (heading(ops), "Paper Median"): np.nan})
                        rows.append(row)
            if not rows:
                continue
            frame = pd.DataFrame(rows)
            frame.columns = pd.MultiIndex.from_tuples(frame.columns)
            number = "3" if space == "seq" else "4"
            tables.append(Table(
                name=f"table{number}_{space}_{method}_presets",
                title=(f"{display('method', method)} per hyperparameter preset, {display('space', space)} "
                       f"space{under}: "
                       f"architecture validation PSNR (dB); 'Paper' is the paper's Table {number}; after each data "
                       "formation's presets the classical reconstructions (das/classical.py)"),
                frame=frame, formats={"n": "{:.0f}"}))
    return tables


STAT_COLUMNS = ["n", "n_nonfinite", "max", "mean", "median", "std", "min", "median_ci_low", "median_ci_high",
                "mean_ci_low", "mean_ci_high", "n_one_shot", "one_shot_mean", "one_shot_median", "seconds"]


def statistics_table(summary) -> Table:
    """Every group with n, n_nonfinite, max/mean/median, 95% intervals, one-shot PSNR and runtime (s)."""
    rows = []
    for s in summary:
        row = {("", k): s[k] for k in ("space", "data", "ops", "method", "preset")}
        for k in STAT_COLUMNS:
            row[("statistics", k)] = s[k]
        row[("statistics", "paper_median")] = (paper_value(s["space"], s["data"], s["ops"], s["method"], s["preset"])
                                               or (np.nan,) * 3)[2]
        row[("", "ci_method")] = s["ci_method"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        for c in frame.columns:
            if c[0] == "statistics":
                frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float if c[1] not in
                                                                            ("n", "n_nonfinite", "n_one_shot") else int)
    left = [("", k) for k in ("space", "data", "ops", "method", "preset")]
    st = lambda *ks: [("statistics", k) for k in ks]
    notes = [f"{s['space']}/{s['data']}/{s['ops']}/{s['method']}/{s['preset']}: {s['note']}" for s in summary if s["note"]]
    return Table(name="statistics", title="All groups: architecture PSNR (dB) with bootstrap 95% intervals "
                 "(BCa; percentile where BCa is degenerate), one-shot PSNR (dB) and runtime per trial (s)",
                 frame=frame, label_columns=5, formats={"n": "{:.0f}", "n_nonfinite": "{:.0f}", "n_one_shot": "{:.0f}",
                                                        "seconds": "{:.1f}"},
                 latex_parts=[left + st("n", "n_nonfinite", "median", "median_ci_low", "median_ci_high", "paper_median"),
                              left + st("max", "mean", "mean_ci_low", "mean_ci_high", "one_shot_mean", "seconds")],
                 notes=notes)


def comparison_table(summary) -> Table:
    """Our numbers beside the paper's, for every group the paper reports: max, mean and median
    with our 95% intervals, the difference of the medians and whether the paper's median lies
    inside our interval."""
    rows = []
    for s in summary:
        paper = paper_value(s["space"], s["data"], s["ops"], s["method"], s["preset"])
        if paper is None:
            continue
        lo, hi = s["median_ci_low"], s["median_ci_high"]
        rows.append({"space": s["space"], "data": s["data"], "ops": s["ops"], "method": s["method"],
                     "preset": s["preset"], "n": s["n"], "max": s["max"], "paper_max": paper[0],
                     "mean": s["mean"], "mean_ci_low": s["mean_ci_low"], "mean_ci_high": s["mean_ci_high"],
                     "paper_mean": paper[1], "median": s["median"], "median_ci_low": lo, "median_ci_high": hi,
                     "paper_median": paper[2], "median_minus_paper": s["median"] - paper[2],
                     "paper_median_in_ci": bool(np.isfinite(lo) and lo <= paper[2] <= hi)})
    return rows_table("paper_comparison", "Ours beside the paper: architecture PSNR (dB), max, mean and median "
                      "with our bootstrap 95% intervals; the difference of the medians; whether the paper's "
                      "median lies inside our interval", rows, 5, {"n": "{:.0f}"})


def rows_table(name, title, rows, label_columns, formats=None, columns=None, latex_widths=None) -> Table:
    """A flat table from a list of dicts (correlations, draws, diagnostics, verdicts); `columns`
    names the columns of a table that has no rows."""
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(columns or []))
    if len(frame.columns):
        frame.columns = pd.MultiIndex.from_tuples([("", c) for c in frame.columns])
    return Table(name=name, title=title, frame=frame, label_columns=label_columns, formats=formats or {},
                 latex_widths=latex_widths or {})


# ----------------------------------------------------------------------------- writers
def _cell(t: Table, col, v) -> str:
    if isinstance(v, str) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    f = t.formats.get(col[1], "{:.2f}")
    if isinstance(v, (int, np.integer)) and not callable(f):
        return str(int(v))
    if col[0] == "" and isinstance(v, (float, np.floating)) and col[1] in ("seed",):
        return _fmt(v, "{:.0f}")
    return _fmt(float(v), f)


def flat_columns(frame: pd.DataFrame) -> list[str]:
    """'Blur Max' for ('Blur', 'Max'), 'Method' for ('', 'Method')."""
    return [(f"{a} {b}" if a and a != "statistics" else b) for a, b in frame.columns]


def to_csv(t: Table, path) -> Path:
    """The table with numeric columns unrounded and flat column names, written atomically."""
    frame = t.frame.copy()
    if len(frame.columns):
        frame.columns = flat_columns(frame)
    write_text_atomic(path, frame.to_csv(index=False))
    return Path(path)


def to_markdown(t: Table) -> str:
    """A Markdown table with its title and notes, numbers rounded for reading (a table with one
    LaTeX part shows those columns only, as the paper does; the CSV has them all)."""
    out = [f"### {t.title}", ""]
    if not len(t.frame):
        return "\n".join(out + ["(no rows)", ""])
    frame = t.frame[t.latex_parts[0]] if len(t.latex_parts) == 1 else t.frame  # the paper's layout
    frame = frame[[c for c in frame.columns if c[1] != "group"]]  # the long key: in the CSV only
    heads = flat_columns(frame)
    out += ["| " + " | ".join(heads) + " |",
            "|" + "|".join("---" if i < t.label_columns else "---:" for i in range(len(heads))) + "|"]
    for _, row in frame.iterrows():
        out.append("| " + " | ".join(_cell(t, c, row[c]).replace("|", "\\|") for c in frame.columns) + " |")
    out += [""] + [f"Note: {n}" for n in t.notes]
    return "\n".join(out) + "\n"


def _tex(s) -> str:
    """Text as LaTeX: every character that means something to TeX escaped."""
    out = []
    for ch in str(s):
        out.append({"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
                    "{": r"\{", "}": r"\}", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}",
                    "±": r"$\pm$"}.get(ch, ch))
    return "".join(out)


LONG_TABLE_ROWS = 40  # more rows than fit a page: a longtable, which breaks across pages


def to_latex(t: Table) -> str:
    """booktabs LaTeX with the paper's grouped headers (one \\cmidrule per column group). A table
    wider than a page is written in the parts listed in t.latex_parts, each its own table, and
    shrunk to the line width if still too wide; a long text column wraps (t.latex_widths); a table
    of more than LONG_TABLE_ROWS rows is a longtable; a table with no rows says so. The group key
    (a long JSON string) is in the CSV only."""
    columns = [c for c in t.frame.columns if c[1] != "group"]
    parts = [[c for c in part if c[1] != "group"] for part in t.latex_parts] or [columns]
    out = ["% needs \\usepackage{booktabs,graphicx,longtable} in the preamble"]
    for k, cols in enumerate(parts):
        frame = t.frame[cols] if len(t.frame) else t.frame
        label = f"tab:{t.name}" + (f"-{k + 1}" if len(parts) > 1 else "")
        caption = t.title + (f" (part {k + 1} of {len(parts)})" if len(parts) > 1 else "")
        nlab = sum(1 for c in cols if c[0] == "")
        spec = "".join(f"p{{{t.latex_widths[c[1]]}}}" if c[1] in t.latex_widths else "l" if i < nlab else "r"
                       for i, c in enumerate(cols)) or "l"
        head = []
        groups, start = [], 0
        for i in range(1, len(cols) + 1):
            if i == len(cols) or cols[i][0] != cols[start][0]:
                groups.append((cols[start][0], start, i))
                start = i
        if any(g for g, _, _ in groups if g and g != "statistics"):
            cells = [(f"\\multicolumn{{{b - a}}}{{c}}{{{_tex(g)}}}" if g and g != "statistics" else
                      " & ".join([""] * (b - a))) for g, a, b in groups]
            head.append(" & ".join(cells) + r" \\")
            head.append(" ".join(f"\\cmidrule(lr){{{a + 1}-{b}}}" for g, a, b in groups if g and g != "statistics"))
        head.append(" & ".join(_tex(c[1].replace("_", " ")) for c in cols) + r" \\" if cols else r"\\")
        def cell(c, v):  # a wrapped column may break after a slash (seq/blur/all/H1 is one word to TeX)
            text = _tex(_cell(t, c, v))
            return text.replace("/", r"/\allowbreak{}") if c[1] in t.latex_widths else text

        body = [" & ".join(cell(c, row[c]) for c in cols) + r" \\" for _, row in frame.iterrows()]
        if not body:
            body = [f"\\multicolumn{{{max(len(cols), 1)}}}{{l}}{{(no rows)}}" + r" \\"]
        if len(body) > LONG_TABLE_ROWS:
            out += [r"{\small\setlength{\tabcolsep}{3pt}", f"\\begin{{longtable}}{{{spec}}}",
                    f"\\caption{{{_tex(caption)}}}\\label{{{label}}}" + r" \\", r"\toprule", *head, r"\midrule",
                    r"\endfirsthead", r"\toprule", *head, r"\midrule", r"\endhead", *body, r"\bottomrule",
                    r"\end{longtable}}", ""]
            continue
        fit = not t.latex_widths  # wrapped columns fit by their widths; the rest shrinks to the line if wider
        out += [r"\begin{table}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{3pt}",
                f"\\caption{{{_tex(caption)}}}", f"\\label{{{label}}}"]
        if fit:
            out.append(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%")
        out += [f"\\begin{{tabular}}{{{spec}}}", r"\toprule", *head, r"\midrule", *body, r"\bottomrule",
                r"\end{tabular}" + ("}" if fit else ""), r"\end{table}", ""]
    return "\n".join(out)


def write_table(t: Table, out: Path, latex: bool = True) -> list[Path]:
    """CSV, Markdown and (latex=True) LaTeX files of the table in out/; returns their paths."""
    out = Path(out)
    files = [to_csv(t, out / f"{t.name}.csv")]
    write_text_atomic(out / f"{t.name}.md", to_markdown(t))
    files.append(out / f"{t.name}.md")
    if latex:
        write_text_atomic(out / f"{t.name}.tex", to_latex(t))
        files.append(out / f"{t.name}.tex")
    return files
