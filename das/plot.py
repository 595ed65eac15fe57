"""Pictures of genotypes (the paper's Figure 9): a cell's DAG with edges labelled by op, or the
chain of a sequential network. Written as PNG with matplotlib (Agg), callable from any script."""
from __future__ import annotations

from pathlib import Path

from das.genotype import Genotype

COLORS = {"grad": "tab:blue", "net": "tab:green", "roll": "tab:red", "noise": "tab:orange"}


def pyplot():
    """matplotlib.pyplot with the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_genotype(genotype: Genotype, path, title: str | None = None) -> Path:
    """Draw the genotype and save it as a PNG at `path`; returns the path."""
    plt = pyplot()
    path = Path(path)
    if genotype.space == "seq":
        n = len(genotype.layers)
        fig, ax = plt.subplots(figsize=(1.1 * n + 2.5, 2.2))
        xs = list(range(n + 2))
        labels = ["A^T y"] + list(genotype.layers) + ["+ u0"]
        for k, (x, lab) in enumerate(zip(xs, labels)):
            ax.text(x, 0, lab, ha="center", va="center", fontsize=9,
                    bbox=dict(boxstyle="round", fc=COLORS.get(lab, "lightgrey"), alpha=0.35))
            if k:
                ax.annotate("", xy=(x - 0.38, 0), xytext=(x - 0.62, 0), arrowprops=dict(arrowstyle="->"))
        ax.annotate("", xy=(n + 1, 0.25), xytext=(0, 0.25),
                    arrowprops=dict(arrowstyle="->", connectionstyle="arc3,rad=-0.1", color="grey"))
        ax.set_xlim(-0.7, n + 1.7)
        ax.set_ylim(-0.6, 1.4)
    else:
        states = max(j for _, j, _ in genotype.edges)
        fig, ax = plt.subplots(figsize=(9, 4.2))
        pos = {k: (1.6 * k, 0.0) for k in range(states + 1)}
        pos["out"] = (1.6 * (states + 1), 0.0)
        for k in range(states + 1):
            ax.text(*pos[k], f"s{k}" if k else "s0 (in)", ha="center", va="center", fontsize=10,
                    bbox=dict(boxstyle="circle", fc="lightgrey"))
        ax.text(*pos["out"], "1x1 conv\n(s4, s5)", ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc="lightyellow"))
        live = [(i, j, op) for i, j, op in genotype.edges if op != "zero"]
        for i, j, op in live:
            rad = 0.0 if j == i + 1 else 0.25 + 0.1 * (j - i)
            (x0, y0), (x1, y1) = pos[i], pos[j]
            ax.annotate("", xy=(x1 - 0.25, y1), xytext=(x0 + 0.25, y0),
                        arrowprops=dict(arrowstyle="->", color=COLORS.get(op, "k"),
                                        connectionstyle=f"arc3,rad={-rad}", lw=1.5))
            xm, ym = (x0 + x1) / 2, (0.12 if rad == 0 else rad * (x1 - x0) / 2)
            ax.text(xm, ym, op, ha="center", va="center", fontsize=8, color=COLORS.get(op, "k"),
                    bbox=dict(fc="white", ec="none", pad=0.5))
        for k in (states - 1, states):
            ax.annotate("", xy=(pos["out"][0] - 0.45, 0), xytext=(pos[k][0] + 0.25, -0.05),
                        arrowprops=dict(arrowstyle="->", color="grey", connectionstyle="arc3,rad=0.3"))
        ax.set_xlim(-0.8, pos["out"][0] + 0.9)
        ax.set_ylim(-2.0, 3.6)
        if not live:
            ax.text(pos[states][0] / 2, -1.2, "all edges zero", ha="center", color="grey")
    ax.axis("off")
    ax.set_title(title or f"{genotype.space} genotype, {genotype.data}, {genotype.ops} ops"
                 + (" (two cells share it)" if genotype.space == "cell" else ""), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
