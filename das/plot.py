"""Figures a paper author can paste (paper Figures 3-9 and more), from trial records.

One style for all: sized for a column (3.4 in; full page width 7 in for small multiples), 8 pt
text, labelled axes with units, no offset notation; every figure is written in each format asked
for (`formats=("pdf", "png")`). Scatter plots are named after the paper figure they reproduce:

    fig3  seq space, preset H1 (paper Fig. 3: Table 1's trials)     fig3_scatter_blur
    fig4  seq space, BOHB-one-shot-Blur / -DS / BOHB-Blur            fig4_scatter_blur_BOHB-Blur
    fig5  seq space, DAS-single (BOHB-DAS-single), and DAS vs DAS-single with their own presets
    fig6  cell space, H1 and H2; fig7 cell, the seq BOHB presets; fig8 cell, BOHB-Non-Seq-*
    fig9  genotype drawings (best architecture of a group)

Rules: a legend names n; r and p are shown when n >= MIN_CORR_N; a least-squares line is drawn
only when n >= MIN_FIT_N (fewer points make a line that means nothing).

This one module owns every figure (so every figure shares one style); it is a little above 600
lines since the claims-by-reading chart of the readings screen joined it.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from das.genotype import Genotype
from das.ops import OPS
from das.vocab import colour, display, has_alphas, order, ordered

COLUMN_WIDTH = 3.4  # inches, one column of a two-column paper
PAGE_WIDTH = 7.0
MIN_CORR_N = 3
MIN_FIT_N = 5
COLORS = {name: op.colour for name, op in OPS.items()}  # an op's colour (das.ops.OPS)
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5, "xtick.labelsize": 7,
         "ytick.labelsize": 7, "figure.dpi": 100, "savefig.dpi": 300, "savefig.bbox": "tight",
         "savefig.pad_inches": 0.02, "axes.formatter.useoffset": False, "axes.grid": True, "grid.alpha": 0.3,
         "grid.linewidth": 0.5, "lines.linewidth": 1.2, "lines.markersize": 3.5, "legend.frameon": False,
         "pdf.fonttype": 42, "ps.fonttype": 42, "axes.spines.top": False, "axes.spines.right": False,
         "svg.hashsalt": "das"}  # SVG element ids from a fixed salt, not a random one: same figure, same bytes
FORMATS = ("pdf", "png")
MIN_ALPHA_SPAN = 0.05  # the smallest x range of alpha's distance from uniform (its scale is 0..1 - 1/K)


def _name(kind, v) -> str:
    return display(kind, v, short=True)


def pyplot():
    """matplotlib.pyplot with the Agg backend (no display needed) and the project's style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def savefig(fig, path) -> None:
    """fig.savefig without the creation date a PDF or SVG would embed: the same figure, the same bytes
    (a re-export of committed results changes only the figures whose content changed)."""
    meta = {".pdf": {"CreationDate": None}, ".svg": {"Date": None}}.get(Path(path).suffix.lower())
    fig.savefig(path, **({"metadata": meta} if meta else {}))


def save(fig, out: Path, stem: str, formats=FORMATS) -> list[Path]:
    """Write fig as out/stem.<format> for each format; close it; return the paths."""
    plt = pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in formats:
        p = out / f"{stem}.{f}"
        savefig(fig, p)
        paths.append(p)
    plt.close(fig)
    return paths


def _where(r) -> str:
    return f"{_name('data', r.get('data'))}, {_name('space', r.get('space'))} space, {r.get('preset')}"


def _groups(records):
    from das.stats import group_records

    return group_records(records)


# ----------------------------------------------------------------------------- scatter (Figs. 3-8)
def figure_name(space: str, data: str, preset: str) -> str:
    """The file stem of a one-shot vs architecture scatter, after the paper figure it reproduces."""
    seq_bohb = ("BOHB-one-shot-Blur", "BOHB-one-shot-DS", "BOHB-Blur")
    if space == "seq":
        if preset == "H1":
            return f"fig3_scatter_{data}"
        if preset in seq_bohb:
            return f"fig4_scatter_{data}_{preset}"
        if preset == "BOHB-DAS-single":
            return f"fig5_scatter_{data}_{preset}"
    if space == "cell":
        if preset in ("H1", "H2"):
            return f"fig6_scatter_{data}_{preset}"
        if preset in seq_bohb:
            return f"fig7_scatter_{data}_{preset}"
        if preset.startswith("BOHB-Non-Seq"):
            return f"fig8_scatter_{data}_{preset}"
    return f"scatter_{space}_{data}_{preset}"


def _scatter_series(ax, rs, color, marker, label):
    from das.stats import correlation, paired_psnr

    x, y = paired_psnr(rs)
    n = len(x)
    if not n:
        return 0
    text = f"{label} (n={n})"
    if n >= MIN_CORR_N:
        c = correlation(x, y)
        if math.isfinite(c["pearson_r"]):
            text += (f": r={c['pearson_r']:.2f} (p={c['pearson_p']:.2g}), $\\rho$={c['spearman_rho']:.2f}, "
                     f"$\\tau$={c['kendall_tau']:.2f}")
    ax.scatter(x, y, s=9, c=color, marker=marker, alpha=0.75, linewidths=0, label=text)
    if n >= MIN_FIT_N and np.ptp(x) > 0:
        slope, icpt = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 20)
        ax.plot(xs, slope * xs + icpt, c=color, lw=0.9)
    return n


def _scatter_axes(ax, title):
    ax.set_xlabel("one-shot validation PSNR (dB)")
    ax.set_ylabel("architecture validation PSNR (dB)")
    ax.set_title(title)
    # below the axes: a legend with r, rho and tau is too wide to sit inside a column-wide plot
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), handletextpad=0.2, borderaxespad=0.2)


def scatter_figures(records, out, formats=FORMATS) -> list[Path]:
    """Architecture vs one-shot PSNR per (space, data, preset), one series per op set and method
    (paper Figs. 3-8), plus fig5_scatter_<data>_own_presets: DAS (BOHB-one-shot-Blur) beside
    DAS-single (BOHB-DAS-single)."""
    from das.stats import comparable_key

    from das.spec import SETTINGS

    plt = pyplot()
    # a panel holds every op set, so also every value of a setting only some op sets run (the noise
    # op's sigma: under one reading, noise sigma 1 in the all-ops cells beside the good ops')
    pooled = {"ops": None, **{s.name: None for s in SETTINGS if getattr(s.applies, "op", None)}}
    panels = defaultdict(list)
    for g, rs in _groups(records).items():
        if has_alphas(rs[0].get("method")):
            key = comparable_key({**rs[0], **pooled})
            panels[key].append(rs)
    files, used = [], defaultdict(int)
    markers = ("o", "^", "s", "D", "v")
    for key, series in panels.items():
        r0 = series[0][0]
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.8))
        total = 0
        methods = ordered("method", (rs[0]["method"] for rs in series))
        op_sets = ordered("ops", (rs[0]["ops"] for rs in series))
        for rs in sorted(series, key=lambda rs: (order("ops", rs[0]["ops"]), order("method", rs[0]["method"]))):
            m, ops = rs[0]["method"], rs[0]["ops"]
            # one method: colours tell the op sets apart; several: colours tell the methods apart
            c = colour("ops", ops) if len(methods) == 1 else colour("method", m)
            marker = markers[(methods.index(m) if len(methods) == 1 else op_sets.index(ops)) % len(markers)]
            total += _scatter_series(ax, rs, c, marker, f"{_name('method', m)}, {_name('ops', ops)}")
        if not total:
            plt.close(fig)
            continue
        _scatter_axes(ax, _where(r0))
        stem = figure_name(r0["space"], r0["data"], r0["preset"])
        used[stem] += 1
        files += save(fig, out, stem + (f"_{used[stem]}" if used[stem] > 1 else ""), formats)
    # paper Fig. 5 right: both methods, each with its own BOHB preset
    by = {(rs[0]["space"], rs[0]["data"], rs[0]["method"], rs[0]["preset"], rs[0]["ops"]): rs
          for rs in _groups(records).values()}
    for data in ordered("data", (k[1] for k in by)):
        pairs = [(by.get(("seq", data, "das", "BOHB-one-shot-Blur", ops)), by.get(("seq", data, "das-single",
                                                                                  "BOHB-DAS-single", ops)), ops)
                 for ops in ordered("ops", (k[4] for k in by))]
        pairs = [p for p in pairs if p[0] and p[1]]
        if not pairs:
            continue
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.8))
        for das, single, ops in pairs:
            _scatter_series(ax, das, colour("method", "das"), "o", f"DAS (BOHB-one-shot-Blur), {_name('ops', ops)}")
            _scatter_series(ax, single, colour("method", "das-single"), "^",
                            f"DAS-single (BOHB-DAS-single), {_name('ops', ops)}")
        _scatter_axes(ax, f"{_name('data', data)}, sequential space, each with its own preset")
        files += save(fig, out, f"fig5_scatter_{data}_own_presets", formats)
    return files


# ----------------------------------------------------------------------------- alphas
def _choice_rows(space: str, rows: int) -> list[str]:
    if space == "seq":
        return [f"layer {j + 1}" for j in range(rows)]
    from das.model import cell_edges

    edges = list(cell_edges())
    return [f"$s_{i}\\to s_{j}$" for i, j in edges] if len(edges) == rows else [f"edge {k + 1}" for k in range(rows)]


def _op_names(rs) -> list[str]:
    from das.ops import op_names

    return op_names(rs[0]["ops"], rs[0]["space"])


def alpha_trajectory_figures(records, out, formats=FORMATS) -> list[Path]:
    """softmax(alpha) over search epochs, one panel per layer (seq) or edge (cell): per op the median
    over trials and the interquartile band, from each record's history['alphas']."""
    plt = pyplot()
    files = []
    for g, rs in _groups(records).items():
        if not has_alphas(rs[0].get("method")):
            continue
        trajs = []
        for r in rs:
            a = np.asarray((r.get("history") or {}).get("alphas") or [], dtype=float)
            if a.ndim == 3 and a.size and np.isfinite(a).all():
                trajs.append(a)
        if not trajs:
            continue
        shape = trajs[0].shape[1:]
        trajs = [a for a in trajs if a.shape[1:] == shape]
        n_epochs = min(len(a) for a in trajs)
        stack = np.stack([a[:n_epochs] for a in trajs])  # trials x epochs x rows x ops
        rows, k = shape
        names = _op_names(rs)
        labels = _choice_rows(rs[0]["space"], rows)
        ncols = 5
        nrows = math.ceil(rows / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(PAGE_WIDTH, 0.4 + 1.15 * nrows), sharex=True, sharey=True,
                                 squeeze=False)
        epochs = np.arange(1, n_epochs + 1)
        q25, q50, q75 = np.percentile(stack, [25, 50, 75], axis=0)
        # a shared y range around the data (alpha often stays within 0.01 of 1/K; 0..1 would hide the moves)
        lo, hi = min(q25.min(), 1 / k), max(q75.max(), 1 / k)
        pad = max(0.08 * (hi - lo), 5e-4)
        ylim = (max(0.0, lo - pad), min(1.0, hi + pad))
        for j in range(nrows * ncols):
            ax = axes.flat[j]
            if j >= rows:
                ax.axis("off")
                continue
            for t in range(k):
                name = names[t] if t < len(names) else str(t)
                color = COLORS.get(name, None)
                ax.plot(epochs, q50[:, j, t], color=color, lw=1, label=name)
                ax.fill_between(epochs, q25[:, j, t], q75[:, j, t], color=color, alpha=0.25, lw=0)
            ax.axhline(1 / k, color="grey", lw=0.6, ls=":")
            ax.set_ylim(*ylim)
            ax.set_title(labels[j], fontsize=7, pad=2)
        from matplotlib.ticker import MaxNLocator

        axes.flat[0].xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        fig.supxlabel("search epoch", fontsize=8)
        fig.supylabel("softmax weight $\\alpha$", fontsize=8)
        handles, lab = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, lab, loc="upper center", ncol=len(lab) + 1, bbox_to_anchor=(0.5, 1.0),
                   title=f"{_title(rs[0])}: median and interquartile band over n={len(trajs)} searches; "
                         f"dotted: uniform 1/{k}", title_fontsize=7)
        fig.tight_layout(rect=(0, 0, 1, 0.9))
        files += save(fig, out, f"alphas_{_stem(rs[0])}", formats)
    return files


def _title(r) -> str:
    return (f"{_name('data', r['data'])}, {_name('ops', r['ops'])}, {_name('method', r['method'])} ({r['preset']}), "
            f"{_name('space', r['space'])} space")


def _stem(r) -> str:
    return f"{r['space']}_{r['data']}_{r['ops']}_{r['method']}_{r['preset']}"


def op_choice_figures(records, out, formats=FORMATS) -> list[Path]:
    """Heat map per search group: the share of trials whose derived genotype chose each op per layer/edge."""
    plt = pyplot()
    files = []
    for g, rs in _groups(records).items():
        if not has_alphas(rs[0].get("method")):
            continue
        seen, choices = set(), []
        for r in rs:  # several retrains of one search carry one genotype: count each search once
            gt = r.get("genotype") or {}
            c = gt.get("layers") or [e[2] for e in (gt.get("edges") or [])]
            if c and (r.get("seed"), tuple(c)) not in seen:
                seen.add((r.get("seed"), tuple(c)))
                choices.append(c)
        if not choices:
            continue
        names = _op_names(rs)
        rows = len(choices[0])
        freq = np.zeros((rows, len(names)))
        for c in choices:
            for j, op in enumerate(c[:rows]):
                if op in names:
                    freq[j, names.index(op)] += 1
        freq /= len(choices)
        labels = _choice_rows(rs[0]["space"], rows)
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 0.9 + 0.19 * rows))
        im = ax.imshow(freq, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.grid(False)
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(rows), labels)
        ax.set_xlabel("operation")
        ax.set_ylabel("layer" if rs[0]["space"] == "seq" else "edge")
        for j in range(rows):
            for t in range(len(names)):
                ax.text(t, j, f"{freq[j, t]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if freq[j, t] > 0.6 else "black")
        cb = fig.colorbar(im, ax=ax, fraction=0.06, pad=0.03)
        cb.set_label("share of searches")
        ax.set_title(f"Op chosen per {'layer' if rs[0]['space'] == 'seq' else 'edge'}: "
                     f"{_title(rs[0])}, n={len(choices)}", fontsize=7, wrap=True)
        files += save(fig, out, f"ops_{_stem(rs[0])}", formats)
    return files


def alpha_diagnostics_figures(diagnostics, out, formats=FORMATS) -> list[Path]:
    """Per preset: how far alpha moved from uniform (start and end), its entropy, and the share of
    layers/edges whose final argmax equals the initial one against chance, one row per search group."""
    plt = pyplot()
    files = []
    by_preset = defaultdict(list)
    for d in diagnostics:
        by_preset[d["preset"]].append(d)
    for preset, ds in by_preset.items():
        labels = [f"{d['space']} {_name('data', d['data'])}, {_name('ops', d['ops'])}, "
                  f"{_name('method', d['method'])} (n={d['trials']})" for d in ds]
        y = np.arange(len(ds))
        fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH, 1.35 + 0.25 * len(ds)), sharey=True)
        axes[0].scatter([d["init_deviation"] for d in ds], y, marker="o", facecolors="none", edgecolors="k",
                        label="initial")
        axes[0].scatter([d["final_deviation"] for d in ds], y, marker="o", c="k", label="final")
        axes[0].set_xlabel("max |softmax($\\alpha$) $-$ 1/K|")
        axes[0].set_title("distance from uniform", fontsize=7)
        # from 0, at least to MIN_ALPHA_SPAN: a change of 1e-5 must look like what it is, not a slope
        top = max([d["init_deviation"] for d in ds] + [d["final_deviation"] for d in ds] + [0.0])
        axes[0].set_xlim(0, max(MIN_ALPHA_SPAN, 1.15 * top))
        axes[0].xaxis.set_major_locator(plt.MaxNLocator(3))
        axes[1].scatter([d["final_entropy"] for d in ds], y, c="k")
        axes[1].set_xlabel("entropy / log K")
        axes[1].set_title("final entropy (1 = uniform)", fontsize=7)
        axes[1].set_xlim(0, 1.05)
        axes[2].scatter([100 * d["same_argmax"] for d in ds], y, c="k", marker="s", label="observed share")
        axes[2].scatter([100 * d["chance"] for d in ds], y, marker="|", c="tab:red", s=60, label="chance 1/K")
        axes[2].set_xlabel("layers/edges (%)")
        axes[2].set_title("final = initial argmax", fontsize=7)
        axes[2].set_xlim(0, 100)
        axes[0].set_yticks(y, labels)
        axes[0].invert_yaxis()
        fig.suptitle(f"Did the search or the initialisation decide? Preset {preset}, mean over layers/edges "
                     "and searches", fontsize=8)
        handles, names = [], []
        for ax in (axes[0], axes[2]):  # one entry per marker, along the bottom edge
            for h, n in zip(*ax.get_legend_handles_labels()):
                if n not in names:
                    handles.append(h)
                    names.append(n)
        fig.legend(handles, names, loc="lower center", ncol=len(names))
        fig.tight_layout(rect=(0, 0.3 / (1.35 + 0.25 * len(ds)), 1, 1))
        files += save(fig, out, f"alpha_diagnostics_{preset}", formats)
    return files


# ----------------------------------------------------------------------------- training curves
def training_curve_figures(records, out, formats=FORMATS) -> list[Path]:
    """Training loss and training PSNR per epoch for every method of one problem (space, data, op
    set, preset): median over trials with the interquartile band, from each record's history."""
    from das.stats import comparable_key

    plt = pyplot()
    files = []
    problems = defaultdict(list)
    for g, rs in _groups(records).items():
        problems[comparable_key(rs[0])].append(rs)
    for key, groups in problems.items():
        series = []
        for rs in groups:
            curves = [(r.get("history") or {}) for r in rs]
            curves = [h for h in curves if h.get("train_loss") and h.get("train_psnr")]
            if not curves:
                continue
            n = min(len(h["train_loss"]) for h in curves)
            loss = np.array([h["train_loss"][:n] for h in curves], float)
            psnr = np.array([h["train_psnr"][:n] for h in curves], float)
            stage = " (search)" if any(h.get("alphas") for h in curves) else ""
            series.append((rs[0]["method"], stage, loss, psnr, len(curves)))
        if not series:
            continue
        r0 = groups[0][0]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(PAGE_WIDTH * 0.75, 2.3))
        for method, stage, loss, psnr, n in sorted(series, key=lambda s: order("method", s[0])):
            color = colour("method", method)
            ep = np.arange(1, loss.shape[1] + 1)
            label = f"{_name('method', method)}{stage} (n={n})"
            for ax, v in ((a1, loss), (a2, psnr)):
                with np.errstate(all="ignore"):
                    q = np.nanpercentile(v, [25, 50, 75], axis=0)
                ax.plot(ep, q[1], color=color, lw=1, label=label)
                ax.fill_between(ep, q[0], q[2], color=color, alpha=0.2, lw=0)
        a1.set_yscale("log")
        _plain_log_axis(a1.yaxis)
        a1.set_xlabel("epoch")
        a1.set_ylabel("training loss (MSE)")
        a2.set_xlabel("epoch")
        a2.set_ylabel("training PSNR (dB)")
        a2.legend(loc="lower right")
        from matplotlib.ticker import MaxNLocator

        for ax in (a1, a2):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle(f"Training curves: {_name('data', r0['data'])}, "
                     f"{_name('ops', r0['ops'])}, {_name('space', r0['space'])} space, "
                     f"{r0['preset']}; median and interquartile band", fontsize=8)
        fig.tight_layout()
        files += save(fig, out, f"training_{r0['space']}_{r0['data']}_{r0['ops']}_{r0['preset']}", formats)
    return files


def _plain_log_axis(axis) -> None:
    """A log axis with plain numbers (0.36, not 3.6 x 10^-1) that never overlap: labels at the
    decades, and at 2 and 5 between them only when the axis spans at most about one decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:.3g}")
    axis.set_major_locator(LogLocator(base=10, numticks=8))
    axis.set_major_formatter(plain)
    lo, hi = axis.get_view_interval()
    if lo > 0 and hi / lo <= 15:
        axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0), numticks=8))
        axis.set_minor_formatter(plain)
    else:
        axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=8))
        axis.set_minor_formatter(NullFormatter())


# ----------------------------------------------------------------------------- one-shot ranking
def ranking_figures(records, out, formats=FORMATS) -> list[Path]:
    """Stand-alone PSNR against one-hot supernet PSNR of the random-search candidates, per group,
    with the pooled Kendall tau and Spearman rho (per-search values are in ranking.csv)."""
    from das.stats import correlation, ranking_pairs

    plt = pyplot()
    files = []
    by = defaultdict(list)
    for s in ranking_pairs(records):
        by[s["group"]].append(s)
    for g, ss in by.items():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.8))
        x, y = np.asarray([p for s in ss for p in s["pairs"]]).T
        ax.scatter(x, y, s=9, c="tab:blue", alpha=0.75, linewidths=0,
                   label=f"candidates of {len(ss)} searches (n={len(x)})")
        x, y = np.asarray([p for s in ss for p in s["pairs"]]).T
        c = correlation(x, y)
        title = f"One-shot ranking: {_title(ss[0])}"
        if len(x) >= MIN_CORR_N and math.isfinite(c["kendall_tau"]):
            title += (f"\npooled n={len(x)}: Kendall $\\tau$={c['kendall_tau']:.2f} (p={c['kendall_p']:.2g}), "
                      f"Spearman $\\rho$={c['spearman_rho']:.2f}")
        ax.set_title(title, fontsize=7)
        ax.set_xlabel("one-hot supernet PSNR (dB)")
        ax.set_ylabel("stand-alone architecture PSNR (dB)")
        ax.legend(loc="best")
        files += save(fig, out, f"ranking_{_stem(ss[0])}", formats)
    return files


# ----------------------------------------------------------------------------- genotypes (Fig. 9)
def plot_genotype(genotype: Genotype, path, title: str | None = None, formats=None) -> Path:
    """Draw the genotype sized for one column and save it at `path` (its suffix is the format; with
    `formats`, also as path.with_suffix(f) for each). Sequential: the chain A^T y -> 10 ops -> + u0.
    Cell: states s0..s5 on a line, edges i->i+1 straight, longer edges as arcs whose height grows with
    their span, odd spans above and even spans below the line, so no two arcs or labels overlap."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MPath
    from matplotlib.patches import PathPatch

    plt = pyplot()
    path = Path(path)
    if genotype.space == "seq":
        # two rows (A^T y and layers 1-5, then layers 6-10 and + u0), so the boxes fit one column
        labels = ["$A^{\\top}y$"] + list(genotype.layers) + ["$+\\,u_0$"]
        half = math.ceil(len(labels) / 2)
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 1.25))
        pos = [(k if k < half else k - half, 0.0 if k < half else -1.0) for k in range(len(labels))]
        for k, ((x, y), lab) in enumerate(zip(pos, labels)):
            ax.text(x, y, lab, ha="center", va="center", fontsize=6.5,
                    bbox=dict(boxstyle="round,pad=0.3", fc=COLORS.get(lab, "lightgrey"), alpha=0.4, lw=0.5))
            if 0 < k < len(labels) - 1:
                ax.text(x, y - 0.3, str(k), ha="center", va="center", fontsize=5, color="grey")
            if k == half:  # wrap from the end of the first row to the start of the second
                ax.annotate("", xy=(x, y + 0.2), xytext=(pos[k - 1][0], pos[k - 1][1] - 0.2),
                            arrowprops=dict(arrowstyle="->", lw=0.6, connectionstyle="arc3,rad=-0.05"))
            elif k:
                ax.annotate("", xy=(x - 0.33, y), xytext=(x - 0.67, y), arrowprops=dict(arrowstyle="->", lw=0.6))
        ax.text(pos[-1][0], pos[-1][1] - 0.3, "residual", ha="center", va="center", fontsize=5, color="grey")
        ax.set_xlim(-0.5, half - 0.5)
        ax.set_ylim(-1.45, 0.35)
    else:
        states = max(j for _, j, _ in genotype.edges)
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
        pos = {k: (float(k), 0.0) for k in range(states + 1)}
        out_x = states + 1.15
        for k in range(states + 1):
            ax.text(*pos[k], f"$s_{k}$", ha="center", va="center", fontsize=7, zorder=3,
                    bbox=dict(boxstyle="circle,pad=0.2", fc="lightgrey", lw=0.5))
        ax.text(out_x, 0, "conv\n$1\\times1$", ha="center", va="center", fontsize=5.5, zorder=3,
                bbox=dict(boxstyle="round,pad=0.2", fc="lightyellow", lw=0.5))
        live = [(i, j, op) for i, j, op in genotype.edges if op != "zero"]
        for i, j, op in live:
            color = COLORS.get(op, "k")
            span = j - i
            if span == 1:
                ax.annotate("", xy=(j - 0.17, 0), xytext=(i + 0.17, 0),
                            arrowprops=dict(arrowstyle="-|>", color=color, lw=0.9, mutation_scale=6))
                ax.text((i + j) / 2, 0.13, op, ha="center", va="center", fontsize=5, color=color)
                continue
            side = 1 if span % 2 else -1
            h = side * (0.2 + 0.27 * span)   # apex height of the arc
            x0, x1, xm = i + 0.1, j - 0.1, (i + j) / 2
            verts = [(x0, side * 0.12), (xm, 2 * h), (x1, side * 0.12)]  # quadratic Bezier: apex at h
            ax.add_patch(PathPatch(MPath(verts, [MPath.MOVETO, MPath.CURVE3, MPath.CURVE3]), fc="none",
                                   ec=color, lw=0.9))
            end, ctrl = np.array([x1, side * 0.12]), np.array([xm, 2 * h])
            tail = end - 0.06 * (end - ctrl)  # along the curve's end tangent (end - control point)
            ax.add_patch(FancyArrowPatch(tuple(tail), tuple(end), arrowstyle="-|>", mutation_scale=6, color=color,
                                         lw=0.9))
            ax.text(xm, h, op, ha="center", va="center", fontsize=5, color=color,
                    bbox=dict(fc="white", ec="none", pad=0.3))
        for k in (states - 1, states):
            ax.annotate("", xy=(out_x - 0.28, 0.03 * (k - states + 0.5)), xytext=(k + 0.15, -0.05),
                        arrowprops=dict(arrowstyle="-|>", color="grey", lw=0.6, mutation_scale=5,
                                        connectionstyle="arc3,rad=0.35" if k == states - 1 else "arc3,rad=0"))
        heights = [(1 if (j - i) % 2 else -1) * (0.2 + 0.27 * (j - i)) for i, j, _ in live if j - i > 1]
        ax.set_xlim(-0.35, out_x + 0.4)
        ax.set_ylim(min(heights + [-0.3]) - 0.2, max(heights + [0.3]) + 0.2)  # as tall as the arcs drawn
        if not live:
            ax.text(states / 2, -0.6, "all edges zero", ha="center", color="grey", fontsize=6)
    ax.axis("off")
    ax.set_title(title or f"{_name('space', genotype.space)} genotype, "
                 f"{_name('data', genotype.data) if genotype.data else ''} "
                 f"{_name('ops', genotype.ops)}"
                 + (" (both cells share it)" if genotype.space == "cell" else ""), fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    savefig(fig, path)
    for f in formats or ():
        if "." + f != path.suffix:
            savefig(fig, path.with_suffix("." + f))
    plt.close(fig)
    return path


def best_genotype_figures(records, out, formats=FORMATS) -> list[Path]:
    """The best architecture of each search group, drawn as in the paper's Figure 9."""
    from das.stats import finite

    files = []
    for g, rs in _groups(records).items():
        if not has_alphas(rs[0].get("method")):
            continue
        scored = [r for r in rs if len(finite([r.get("architecture_psnr")])[0]) and r.get("genotype")]
        if not scored:
            continue
        best = max(scored, key=lambda r: r["architecture_psnr"])
        try:
            gt = Genotype.from_dict(best["genotype"], str(best.get("dir")))
        except Exception:  # a genotype this version cannot read is left out of the drawings, not fatal
            continue
        stem = ("fig9_" if rs[0]["space"] == "cell" else "") + f"genotype_best_{_stem(rs[0])}"
        path = Path(out) / f"{stem}.{formats[0]}"
        plot_genotype(gt, path, title=f"{_title(rs[0])}\nbest of n={len(scored)}: seed {best.get('seed')}, "
                                      f"{best['architecture_psnr']:.2f} dB", formats=formats[1:])
        files += [path.with_suffix("." + f) for f in formats]
    return files


# ----------------------------------------------------------------------------- claims under every reading
CLAIM_TITLES = {"a": "DAS beats random and random search with harmful ops",
                "b": "random search matches or beats DAS with good ops",
                "c": "DAS loses median PSNR when harmful ops are added",
                "d": "one-shot and architecture PSNR correlate weakly (Pearson r)",
                "e": "the cell space scores lower than the sequential one"}
VERDICT_MARKERS = {"holds": dict(marker="o"), "does not hold": dict(marker="X"),
                   "undecided": dict(marker="o", facecolor="white"), "not enough trials": dict(marker=".")}


def bohb_trajectory_figure(rows, out, stem="trajectory", title="BOHB", formats=FORMATS) -> list[Path]:
    """A BOHB run (bohb.trajectory rows): every evaluation's PSNR against its number, coloured by
    budget, and the best PSNR so far at the largest budget (the incumbent's rung) as a step line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
    budgets = sorted({r["budget"] for r in rows})
    cmap = plt.get_cmap("viridis")
    for k, b in enumerate(budgets):
        pts = [(r["evaluation"], r["psnr"]) for r in rows if r["budget"] == b and r["psnr"] is not None]
        if pts:
            x, y = zip(*pts)
            ax.scatter(x, y, s=7, color=cmap(0.05 + 0.75 * k / max(len(budgets) - 1, 1)), alpha=0.8, linewidths=0,
                       zorder=3, label=f"budget {b:g} epoch{'' if b == 1 else 's'} (n = {len(pts)})")
    best = [(r["evaluation"], r["best_psnr_at_max_budget"]) for r in rows if r["best_psnr_at_max_budget"] is not None]
    if best:
        x, y = zip(*best)
        ax.step(x, y, where="post", color="black", linewidth=0.9, zorder=2, label="best at the largest budget")
    failed = sum(r["psnr"] is None for r in rows)
    ax.set_xlabel("evaluation (in the order finished)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{title}; {len(rows)} evaluations" + (f", {failed} failed" if failed else ""))
    ax.legend(loc="best")
    return save(fig, out, stem, formats)


def _case_label(where: str, comparison: str, comparisons: set) -> str:
    """A comparison's row label: where, and against what when a claim compares more than one thing."""
    if len(comparisons) == 1:
        return where
    against = comparison.split(" with ")[0].replace("DAS beats ", "vs ")
    return f"{where} {against}"


def claims_by_reading_figure(rows, out, stem="fig_claims_by_reading", formats=FORMATS, highlight=None) -> list[Path]:
    """Per claim, one row per comparison (data, space, op set, against what): the claim's median
    difference (claim (d): Pearson r) with its 95% interval under every reading, one colour per
    reading, the marker the verdict (filled: holds, open: undecided, X: does not hold); the reading
    `highlight` (the chosen one) larger, with a black edge."""
    plt = pyplot()
    claims = sorted({r["claim"] for r in rows})
    if not claims:
        return []
    readings = list(dict.fromkeys(r["reading"] for r in rows))
    cmap = plt.get_cmap("tab20")
    colours = {name: cmap(k % 20) for k, name in enumerate(readings)}
    cases = {c: sorted({(r["where"], r["comparison"]) for r in rows if r["claim"] == c}) for c in claims}
    heights = [len(cases[c]) for c in claims]
    fig, axes = plt.subplots(len(claims), 1, figsize=(PAGE_WIDTH, 1.6 + 0.42 * sum(heights) + 0.45 * len(claims)),
                             gridspec_kw={"height_ratios": [h + 0.8 for h in heights]}, squeeze=False)
    offsets = np.linspace(-0.3, 0.3, len(readings)) if len(readings) > 1 else np.zeros(1)
    for ax, claim in zip(axes[:, 0], claims):
        comparisons = {comp for _, comp in cases[claim]}
        for k, case in enumerate(cases[claim]):
            for j, reading in enumerate(readings):
                r = next((x for x in rows if x["claim"] == claim and (x["where"], x["comparison"]) == case
                          and x["reading"] == reading), None)
                if r is None or r["difference"] is None or not np.isfinite(r["difference"]):
                    continue
                y, c = k + offsets[j], colours[reading]
                lo, hi = r["ci_low"], r["ci_high"]
                if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
                    ax.plot([lo, hi], [y, y], color=c, lw=0.7)
                style = VERDICT_MARKERS.get(r["verdict"].split(" (")[0], VERDICT_MARKERS["undecided"])
                chosen = reading == highlight
                ax.scatter([r["difference"]], [y], s=28 if chosen else 12, marker=style["marker"],
                           facecolor=style.get("facecolor", c), edgecolor="black" if chosen else c,
                           linewidths=1.0 if chosen else 0.8, zorder=3)
        ax.set_yticks(range(len(cases[claim])))
        ax.set_yticklabels([_case_label(w, comp, comparisons) for w, comp in cases[claim]], fontsize=6)
        ax.set_ylim(-0.6, len(cases[claim]) - 0.4)
        ax.invert_yaxis()
        ax.axvline(0.5 if claim == "d" else 0.0, color="grey", lw=0.6, ls=":")
        ax.set_title(f"({claim}) {CLAIM_TITLES.get(claim, '')}", fontsize=7, loc="left", pad=2)
        ax.set_xlabel("Pearson r (weak: upper bound below 0.5)" if claim == "d"
                      else "median difference (dB) with its 95% interval", fontsize=6.5)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[name], label=name + (" (chosen)" if name == highlight
                                                                                         else ""), markersize=4)
               for name in readings]
    handles += [plt.Line2D([], [], marker=m["marker"], ls="", color="grey", markerfacecolor=m.get("facecolor", "grey"),
                           label=v, markersize=4) for v, m in VERDICT_MARKERS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=5.5, frameon=False)
    fig.suptitle(f"The paper's claims under {len(readings)} readings", fontsize=8)
    rows_legend = -(-len(handles) // 4)
    fig.tight_layout(rect=(0, 0.018 * rows_legend * 10 / max(sum(heights), 10), 1, 0.98))
    return save(fig, out, stem, formats)
