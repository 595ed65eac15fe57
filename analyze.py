"""Tables, correlations and plots from a results tree (paper Tables 1-4, Figures 3-8, and more).

    python analyze.py results/
    python analyze.py results/ --out results/analysis --latex

Reads every result.json under the tree (search and retrain results, baselines), groups the
trials by space, data, ops, method and preset, prints the paper's tables (max / mean / median
architecture PSNR), writes them as Markdown and CSV (LaTeX with --latex), the one-shot vs
architecture scatter plots with Pearson, Spearman and Kendall correlations, bootstrap 95%
intervals, op-choice heat maps, alpha trajectories, the random draws needed to beat the DAS
median, and a verdict for each claim (a)-(e) of SPEC 8. Partial, diverged, corrupt or foreign
files are reported in one line each and skipped.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the das package beside this script

METHOD_ORDER = ["grad-only", "net-only", "das", "das-single", "random", "random-search", "genotype"]
METHOD_NAMES = {"grad-only": "Learnable Grad. only", "net-only": "Nets only", "das": "DAS",
                "das-single": "DAS-single", "random": "Random", "random-search": "Random Search",
                "genotype": "Genotype"}
DATA_ORDER = ["blur", "downsample"]
DATA_NAMES = {"blur": "Blur", "downsample": "Downsampling"}
OPS_NAMES = {"good": "good ops.", "all": "all"}
REQUIRED = ("space", "data", "ops", "method", "seed", "status")
BOOTSTRAP = 2000


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="results tree to read (e.g. results/)")
    p.add_argument("--out", default=None, help="output folder (default: <root>/analysis)")
    p.add_argument("--latex", action="store_true", help="also write the tables as LaTeX")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the draw simulation")
    return p


# ----------------------------------------------------------------------------- loading
def load_trials(root: Path):
    """Records of das.trial.load_trials, in the shape the tables below use: one per group label."""
    from das.trial import load_trials as load

    records, skipped = load(root)
    trials = []
    for r in records:
        if r["status"] == "diverged":
            skipped.append(("diverged", r["dir"]))
        elif not r["primary"]:
            skipped.append(("extra retrain", r["dir"]))
        else:
            trials.append({**r, "preset": r["label"], "history": r.get("search_history") or r.get("history"),
                           "_path": Path(r["dir"]) / "result.json"})
    return trials, skipped


def summarize_skipped(skipped) -> list[str]:
    from das.trial import summarize_skipped as summarize

    return summarize(skipped)


# ----------------------------------------------------------------------------- statistics
def bootstrap_ci(values, stat, rng, n=BOOTSTRAP):
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return (float("nan"), float("nan"))
    idx = rng.integers(0, len(v), size=(n, len(v)))
    s = stat(v[idx], axis=1)
    return float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))


def group_stats(trials, rng):
    groups = defaultdict(list)
    for t in trials:
        groups[(t["space"], t["data"], t["ops"], t["method"], t["preset"])].append(t)
    stats = {}
    for key, ts in sorted(groups.items()):
        arch = [t["architecture_psnr"] for t in ts if t.get("architecture_psnr") is not None]
        one = [t["one_shot_psnr"] for t in ts if t.get("one_shot_psnr") is not None]
        secs = [sum((t.get("wall_seconds") or {}).values()) for t in ts if t.get("architecture_psnr") is not None]
        s = {"n": len(arch), "n_one_shot": len(one), "trials": ts}
        if arch:
            a = np.asarray(arch)
            s.update(max=float(a.max()), mean=float(a.mean()), median=float(np.median(a)), std=float(a.std()),
                     min=float(a.min()), seconds=float(np.mean(secs)),
                     median_ci=bootstrap_ci(a, np.median, rng), mean_ci=bootstrap_ci(a, np.mean, rng))
        if one:
            s["one_shot_mean"] = float(np.mean(one))
            s["one_shot_median"] = float(np.median(one))
        stats[key] = s
    return stats


def correlations(stats):
    from scipy import stats as st

    rows = []
    for key, s in stats.items():
        pairs = [(t["one_shot_psnr"], t["architecture_psnr"]) for t in s["trials"]
                 if t.get("one_shot_psnr") is not None and t.get("architecture_psnr") is not None
                 and all(math.isfinite(v) for v in (t["one_shot_psnr"], t["architecture_psnr"]))]
        if len(pairs) < 3:
            continue
        x, y = np.array(pairs).T
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        pr, pp = st.pearsonr(x, y)
        sr, sp = st.spearmanr(x, y)
        kt, kp = st.kendalltau(x, y)
        rows.append({"space": key[0], "data": key[1], "ops": key[2], "method": key[3], "preset": key[4],
                     "n": len(pairs), "pearson_r": float(pr), "pearson_p": float(pp), "spearman_rho": float(sr),
                     "spearman_p": float(sp), "kendall_tau": float(kt), "kendall_p": float(kp)})
    return rows


def random_pool(stats, space, data, ops):
    """Architecture PSNRs of every random architecture trained (random trials and random-search candidates)."""
    pool = []
    for (sp, da, op, method, _), s in stats.items():
        if (sp, da, op) != (space, data, ops):
            continue
        for t in s["trials"]:
            if method == "random" and t.get("architecture_psnr") is not None:
                pool.append(t["architecture_psnr"])
            elif method == "random-search":
                pool += [c["architecture_psnr"] for c in t.get("candidates", []) if c.get("architecture_psnr") is not None]
    return pool


def draws_to_beat(pool, target, rng, runs=10):
    """Random draws needed to beat target: 1/p in expectation, and the mean over `runs` simulated searches."""
    pool = np.asarray(pool, dtype=float)
    p = float((pool > target).mean()) if len(pool) else 0.0
    if p == 0:
        return {"p": 0.0, "expected": float("inf"), "simulated": float("inf"), "pool": len(pool)}
    sims = []
    for _ in range(runs):
        draws = 1
        while pool[rng.integers(len(pool))] <= target:
            draws += 1
        sims.append(draws)
    return {"p": p, "expected": 1 / p, "simulated": float(np.mean(sims)), "pool": len(pool)}


# ----------------------------------------------------------------------------- tables
def fmt(v, digits=2):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def fmt_time(seconds):
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    return f"{int(seconds // 60)}:{int(round(seconds % 60)):02d}"


def paper_tables(stats):
    """Table 1/2 layout per (space, preset): rows (ops, method), columns data x (max, mean, med, n) + runtime."""
    tables = []
    for space, preset in sorted({(k[0], k[4]) for k in stats}):
        datas = [d for d in DATA_ORDER if any(k[0] == space and k[4] == preset and k[1] == d for k in stats)]
        header = ["Ops", "Method"]
        for d in datas:
            header += [f"{DATA_NAMES[d]} Max", f"{DATA_NAMES[d]} Mean", f"{DATA_NAMES[d]} Med.", f"{DATA_NAMES[d]} n"]
        header += ["Runtime (m:ss)"]
        rows = []
        for ops in ("good", "all"):
            for method in METHOD_ORDER:
                cells, seconds, any_value = [], [], False
                for d in datas:
                    s = stats.get((space, d, ops, method, preset))
                    if s and s["n"]:
                        any_value = True
                        cells += [fmt(s["max"]), fmt(s["mean"]), fmt(s["median"]), str(s["n"])]
                        seconds.append(s["seconds"])
                    else:
                        cells += ["-", "-", "-", "0"]
                if any_value:
                    rows.append([OPS_NAMES[ops], METHOD_NAMES[method]] + cells
                                + [fmt_time(float(np.mean(seconds)))])
        if rows:
            title = (f"Architecture validation PSNR (dB), {space} space, preset {preset}: "
                     "max / mean / median over trials (paper Table " + ("1" if space == "seq" else "2") + ")")
            tables.append({"name": f"table_{space}_{preset}", "title": title, "header": header, "rows": rows})
    # Table 3/4 layout: DAS per (data, preset), columns ops x (max, mean, med)
    for space in sorted({k[0] for k in stats}):
        for method in ("das", "das-single"):
            header = ["Data", "Hyperparameters"] + [f"{OPS_NAMES[o]} {c}" for o in ("good", "all")
                                                    for c in ("Max", "Mean", "Med.", "n")]
            rows = []
            for d in DATA_ORDER:
                for preset in sorted({k[4] for k in stats if k[0] == space and k[1] == d and k[3] == method}):
                    cells = []
                    for ops in ("good", "all"):
                        s = stats.get((space, d, ops, method, preset))
                        cells += ([fmt(s["max"]), fmt(s["mean"]), fmt(s["median"]), str(s["n"])]
                                  if s and s["n"] else ["-", "-", "-", "0"])
                    rows.append([DATA_NAMES[d], preset] + cells)
            if rows:
                tables.append({"name": f"presets_{space}_{method}", "header": header, "rows": rows,
                               "title": f"{METHOD_NAMES[method]} per preset, {space} space "
                                        f"(paper Table {'3' if space == 'seq' else '4'})"})
    return tables


def stats_table(stats):
    header = ["space", "data", "ops", "method", "preset", "n", "max", "mean", "median", "std", "median_ci_low",
              "median_ci_high", "mean_ci_low", "mean_ci_high", "one_shot_mean", "seconds"]
    rows = []
    for key, s in stats.items():
        if not s["n"]:
            continue
        rows.append(list(key) + [s["n"], fmt(s["max"]), fmt(s["mean"]), fmt(s["median"]), fmt(s["std"]),
                                 fmt(s["median_ci"][0]), fmt(s["median_ci"][1]), fmt(s["mean_ci"][0]),
                                 fmt(s["mean_ci"][1]), fmt(s.get("one_shot_mean")), fmt(s["seconds"], 1)])
    return {"name": "statistics", "title": "All groups with bootstrap 95% intervals", "header": header, "rows": rows}


def to_markdown(t) -> str:
    out = [f"### {t['title']}", "", "| " + " | ".join(t["header"]) + " |",
           "|" + "|".join("---" for _ in t["header"]) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in t["rows"]]
    return "\n".join(out) + "\n"


def to_latex(t) -> str:
    esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%")
    cols = "l" * 2 + "r" * (len(t["header"]) - 2)
    lines = [r"\begin{table}", r"\centering", f"\\caption{{{esc(t['title'])}}}", f"\\begin{{tabular}}{{{cols}}}",
             r"\toprule", " & ".join(esc(h) for h in t["header"]) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(c) for c in r) + r" \\" for r in t["rows"]]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(t, out: Path, latex: bool):
    with open(out / f"{t['name']}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(t["header"])
        w.writerows(t["rows"])
    (out / f"{t['name']}.md").write_text(to_markdown(t))
    if latex:
        (out / f"{t['name']}.tex").write_text(to_latex(t))


# ----------------------------------------------------------------------------- verdicts
def verdicts(stats, corr, pools_beat):
    med = lambda *k: (stats.get(k) or {}).get("median")
    lines = []
    presets = sorted({k[4] for k in stats if k[3] == "das"})
    for preset in presets:
        for d in DATA_ORDER:
            das_all, rnd_all, rs_all = med("seq", d, "all", "das", preset), med("seq", d, "all", "random", preset), \
                med("seq", d, "all", "random-search", preset)
            if das_all is not None and (rnd_all is not None or rs_all is not None):
                beats = [v for v in (rnd_all, rs_all) if v is not None]
                ok = all(das_all > v for v in beats)
                lines.append(f"(a) {preset}/{d}: DAS median {fmt(das_all)} vs random {fmt(rnd_all)}, random search "
                             f"{fmt(rs_all)} with all ops: {'holds' if ok else 'does not hold'}")
            das_good, rs_good = med("seq", d, "good", "das", preset), med("seq", d, "good", "random-search", preset)
            if das_good is not None and rs_good is not None:
                lines.append(f"(b) {preset}/{d}: random search median {fmt(rs_good)} vs DAS {fmt(das_good)} with good "
                             f"ops: {'holds' if rs_good >= das_good else 'does not hold'}")
            if das_good is not None and das_all is not None:
                lines.append(f"(c) {preset}/{d}: DAS median good {fmt(das_good)} -> all {fmt(das_all)}: "
                             f"{'holds' if das_all < das_good else 'does not hold'}")
            cell_das = [med("cell", d, o, "das", preset) for o in ("good", "all")]
            seq_das = [das_good, das_all]
            pairs = [(c, s) for c, s in zip(cell_das, seq_das) if c is not None and s is not None]
            if pairs:
                ok = all(c < s for c, s in pairs)
                lines.append(f"(e) {preset}/{d}: DAS median cell vs seq " +
                             ", ".join(f"{fmt(c)} vs {fmt(s)}" for c, s in pairs) +
                             f": {'holds' if ok else 'does not hold'}")
    for c in corr:
        if c["method"] in ("das", "das-single"):
            # DAS assumes a strong positive correlation; a weak or a negative one bears out claim (d)
            r = c["pearson_r"]
            kind = "negative" if r <= -0.5 else "weak" if r < 0.5 else "strong positive"
            few = f"; only {c['n']} trials, p={c['pearson_p']:.2f}" if c["n"] < 10 else ""
            lines.append(f"(d) {c['space']}/{c['data']}/{c['ops']}/{c['method']}/{c['preset']}: Pearson r "
                         f"{r:.2f} (n={c['n']}{few}): {kind}, "
                         f"{'holds' if r < 0.5 else 'does not hold'}")
    for (space, d, ops, preset), res in pools_beat.items():
        lines.append(f"random draws to beat the DAS median ({space}/{d}/{ops}/{preset}): expected "
                     f"{fmt(res['expected'], 1)}, simulated {fmt(res['simulated'], 1)} (pool of {res['pool']}; paper: 49)")
    return lines


# ----------------------------------------------------------------------------- plots
def _save(fig, path: Path, files: list) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    files.append(path)


def _op_names(ops: str, space: str) -> list[str]:
    from das.ops import op_names

    return op_names(ops, space)


def _plt():
    from das.plot import pyplot

    return pyplot()


def scatter_plots(stats, corr, out: Path) -> list[Path]:
    plt = _plt()
    files = []
    corr_by = {(c["space"], c["data"], c["ops"], c["method"], c["preset"]): c for c in corr}
    panels = sorted({(k[0], k[1], k[4]) for k in stats if k[3] in ("das", "das-single")})
    for space, data, preset in panels:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        drawn = False
        for ops, color in (("good", "tab:blue"), ("all", "tab:red")):
            for method, marker in (("das", "o"), ("das-single", "^")):
                key = (space, data, ops, method, preset)
                s = stats.get(key)
                if not s:
                    continue
                pts = np.array([(t["one_shot_psnr"], t["architecture_psnr"]) for t in s["trials"]
                                if t.get("one_shot_psnr") is not None and t.get("architecture_psnr") is not None], float)
                pts = pts[np.isfinite(pts).all(axis=1)] if len(pts) else pts
                if not len(pts):
                    continue
                label = f"{METHOD_NAMES[method]}, {OPS_NAMES[ops]}"
                c = corr_by.get(key)
                if c:
                    label += f" (r={c['pearson_r']:.2f})"
                ax.scatter(pts[:, 0], pts[:, 1], c=color, marker=marker, alpha=0.7, label=label)
                if len(pts) >= 2 and np.ptp(pts[:, 0]) > 0:
                    slope, icpt = np.polyfit(pts[:, 0], pts[:, 1], 1)
                    xs = np.linspace(pts[:, 0].min(), pts[:, 0].max(), 10)
                    ax.plot(xs, slope * xs + icpt, c=color, lw=1)
                drawn = True
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("one-shot validation PSNR (dB)")
        ax.set_ylabel("architecture validation PSNR (dB)")
        ax.set_title(f"{DATA_NAMES[data]}, {space} space, {preset}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        _save(fig, out / f"scatter_{space}_{data}_{preset}.png", files)
    return files


def op_frequency_plots(stats, out: Path) -> list[Path]:
    plt = _plt()
    files = []
    for key, s in stats.items():
        if key[3] not in ("das", "das-single"):
            continue
        gs = [t["genotype"] for t in s["trials"] if t.get("genotype")]
        if not gs:
            continue
        if key[0] == "seq":
            rows = [f"layer {j + 1}" for j in range(len(gs[0]["layers"]))]
            choices = [g["layers"] for g in gs]
        else:
            rows = [f"{i}->{j}" for i, j, _ in gs[0]["edges"]]
            choices = [[op for _, _, op in g["edges"]] for g in gs]
        names = _op_names(key[2], key[0])
        freq = np.zeros((len(rows), len(names)))
        for c in choices:
            for r, op in enumerate(c):
                if op in names:
                    freq[r, names.index(op)] += 1
        freq /= len(choices)
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 0.9 + 0.28 * len(rows)))
        im = ax.imshow(freq, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(rows)), rows)
        for r in range(len(rows)):
            for c in range(len(names)):
                ax.text(c, r, f"{freq[r, c]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if freq[r, c] < 0.6 else "black")
        ax.set_title(f"op choices, {'/'.join(key)} (n={len(choices)})", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.05)
        _save(fig, out / f"ops_{'_'.join(key)}.png", files)
    return files


def best_genotype_plots(stats, out: Path) -> list[Path]:
    """The best architecture of each DAS group, drawn as in the paper's Figure 9."""
    from das.genotype import Genotype
    from das.plot import plot_genotype
    from das.utils import UserError

    files = []
    for key, s in stats.items():
        scored = [t for t in s["trials"] if t.get("architecture_psnr") is not None and t.get("genotype")]
        if key[3] not in ("das", "das-single") or not scored:
            continue
        best = max(scored, key=lambda t: t["architecture_psnr"])
        try:
            g = Genotype.from_dict(best["genotype"], str(best["_path"]))
        except UserError:
            continue
        f = out / f"genotype_best_{'_'.join(key)}.png"
        plot_genotype(g, f, title=f"best of {s['n']}: {'/'.join(key)} seed {best['seed']}, "
                                  f"{best['architecture_psnr']:.2f} dB")
        files.append(f)
    return files


def alpha_trajectory_plots(stats, out: Path) -> list[Path]:
    plt = _plt()
    files = []
    for key, s in stats.items():
        trajs = [np.array(t["history"]["alphas"]) for t in s["trials"]
                 if key[3] in ("das", "das-single") and (t.get("history") or {}).get("alphas")]
        trajs = [a for a in trajs if a.ndim == 3]
        if not trajs:
            continue
        n = min(len(a) for a in trajs)
        mean = np.mean([a[:n] for a in trajs], axis=0).mean(axis=1)  # epochs x ops, averaged over layers
        names = _op_names(key[2], key[0])
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for k in range(mean.shape[1]):
            ax.plot(range(1, n + 1), mean[:, k], label=names[k] if k < len(names) else str(k))
        ax.set_xlabel("epoch")
        ax.set_ylabel("softmax(alpha), mean over layers and trials")
        ax.set_title(f"alpha trajectories, {'/'.join(key)} (n={len(trajs)})", fontsize=9)
        ax.legend(fontsize=8)
        _save(fig, out / f"alphas_{'_'.join(key)}.png", files)
    return files


# ----------------------------------------------------------------------------- main
def main(args) -> dict:
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: {root}: no such results folder; run search.py / retrain.py first", file=sys.stderr)
        sys.exit(2)
    if args.out is None and not os.access(root, os.W_OK):
        print(f"error: {root}: not writable; pass --out FOLDER for the tables and figures", file=sys.stderr)
        sys.exit(2)
    out = Path(args.out) if args.out else root / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    trials, skipped = load_trials(root)
    notes = summarize_skipped(skipped)
    if not trials:
        notes.append(f"no finished trials found under {root}; run search.py / retrain.py or scripts/sweep.py first")
    stats = group_stats(trials, rng)
    corr = correlations(stats)
    tables = paper_tables(stats) + [stats_table(stats)]
    if corr:
        tables.append({"name": "correlations", "title": "One-shot vs architecture PSNR correlations",
                       "header": list(corr[0].keys()),
                       "rows": [[f"{v:.3g}" if isinstance(v, float) else v for v in c.values()] for c in corr]})
    beat = {}
    for (space, d, ops, method, preset), s in stats.items():
        if method == "das" and s["n"]:
            pool = random_pool(stats, space, d, ops)
            if pool:
                beat[(space, d, ops, preset)] = draws_to_beat(pool, s["median"], rng)
    claims = verdicts(stats, corr, beat)
    for t in tables:
        write_table(t, out, args.latex)
    report = [f"# DAS analysis of {root}", "", f"{len(trials)} trials read."] + [f"- {n}" for n in notes] + [""]
    report += [to_markdown(t) for t in tables]
    report += ["### Claims (SPEC 8)", ""] + [f"- {c}" for c in claims]
    (out / "report.md").write_text("\n".join(report) + "\n")
    figures = [] if args.no_plots else (scatter_plots(stats, corr, out) + op_frequency_plots(stats, out)
                                         + alpha_trajectory_plots(stats, out) + best_genotype_plots(stats, out))
    for n in notes:
        print(n)
    for t in tables[:-1] if corr else tables:
        if t["name"] == "statistics":
            continue
        print()
        print(to_markdown(t))
    if corr:
        print(to_markdown(tables[-1]))
    for c in claims:
        print(c)
    print(f"\nwrote {len(tables)} tables and {len(figures)} figures to {out}")
    return {"trials": trials, "skipped": skipped, "stats": stats, "correlations": corr, "tables": tables,
            "claims": claims, "figures": figures, "draws": beat, "out": out}


if __name__ == "__main__":
    main(get_parser().parse_args())
