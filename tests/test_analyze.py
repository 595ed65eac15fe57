"""analyze.py on a results tree with known numbers."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as st

import analyze
from tests.conftest import ROOT


def write_trial(root, space, data, ops, method, seed, arch, one_shot=None, status="complete", settings=None, **extra):
    """Schema-2 result files as the stages write them: a DAS trial is a search folder plus the
    retrain of its genotype in retrain-seed<N>/; a baseline is one folder."""
    from das.genotype import Genotype
    from das.hparams import load_hparams
    from das.spec import TrialSpec, retrain_spec
    from das.folder import new_result

    layers = (["grad", "net"] * 5) if seed % 2 else (["net"] * 10)
    g = {"space": space, "ops": ops, "data": data, "width": 16, "layers": layers}
    if space == "cell":
        g = {"space": space, "ops": ops, "data": data, "width": 16, "edges": [[0, 1, "net"], [1, 2, "grad"]]}
    spec = TrialSpec.make(hp=load_hparams("H1"), space=space, data=data, ops=ops, method=method, seed=seed,
                          **(settings or {}))
    if method == "das":
        d = spec.folder(root)
        d.mkdir(parents=True, exist_ok=True)
        search_status = status if status in ("running", "searched", "diverged") else "searched"
        hist = {"alphas": [[[0.5, 0.5]] * 10, [[0.4, 0.6]] * 10], "alphas_init": [[0.5, 0.5]] * 10,
                "train_loss": [0.5, 0.2], "train_psnr": [10.0, 12.0 + seed / 10]}
        r = {**new_result(spec, "cpu"), "status": search_status, "one_shot_psnr": one_shot, "genotype": g,
             "alphas": [[0.4, 0.6]] * 10, "wall_seconds": {"search": 100.0}, "history": hist}
        (d / "result.json").write_text(json.dumps(r))
        if search_status != "searched" or status == "searched":
            return d
        spec = retrain_spec(spec, Genotype.from_dict(g))
    d = spec.folder(root)
    d.mkdir(parents=True, exist_ok=True)
    r = {**new_result(spec, "cpu"), "status": status, "architecture_psnr": arch, "genotype": g,
         "wall_seconds": {"train": 20.0}, "history": {"train_loss": [0.5, 0.2], "train_psnr": [10.0, 12.0]}, **extra}
    (d / "result.json").write_text(json.dumps(r))
    return d


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "results"
    known = {}
    for ops in ("good", "all"):
        one = rng.normal(20, 2, 8)
        arch = 0.5 * one + rng.normal(10, 1, 8)
        known[("das", ops)] = (one, arch)
        for s in range(8):
            write_trial(root, "seq", "blur", ops, "das", s, float(arch[s]), float(one[s]))
        rnd = rng.normal(12, 4, 6)
        known[("random", ops)] = rnd
        for s in range(6):
            write_trial(root, "seq", "blur", ops, "random", s, float(rnd[s]))
        cands = rng.normal(13, 3, (3, 5))
        known[("random-search", ops)] = cands
        for s in range(3):
            write_trial(root, "seq", "blur", ops, "random-search", s, float(cands[s].max()),
                        candidates=[{"architecture_psnr": float(v)} for v in cands[s]])
    # the bad files: each reported once and skipped
    write_trial(root, "seq", "blur", "all", "das", 90, None, 21.0, status="diverged")
    write_trial(root, "seq", "blur", "all", "das", 91, None, None, status="running")
    write_trial(root, "seq", "blur", "all", "das", 92, None, 19.0, status="searched")
    bad = root / "seq" / "blur" / "all" / "random" / "H1" / "seed93"
    bad.mkdir(parents=True)
    (bad / "result.json").write_text('{"space": "seq", "data"')
    foreign = root / "other" / "result.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_text(json.dumps({"accuracy": 0.9}))
    (root / "copy").symlink_to(root / "seq", target_is_directory=True)  # the same files seen twice
    return root, known


def run(root, tmp_path, *extra, out="out"):
    return analyze.main(analyze.get_parser().parse_args([str(root), "--out", str(tmp_path / out), *extra]))


def _summary(res, ops, method):
    return next(s for s in res["summary"] if (s["space"], s["data"], s["ops"], s["method"]) == ("seq", "blur", ops, method))


def test_tables_equal_numpy(tree, tmp_path):
    root, known = tree
    res = run(root, tmp_path, "--no-plots")
    for ops in ("good", "all"):
        _, arch = known[("das", ops)]
        s = _summary(res, ops, "das")
        assert s["n"] == 8
        assert s["max"] == pytest.approx(arch.max()) and s["mean"] == pytest.approx(arch.mean())
        assert s["median"] == pytest.approx(np.median(arch))
        assert s["median_ci_low"] <= np.median(arch) <= s["median_ci_high"]
        assert s["mean_ci_low"] <= arch.mean() <= s["mean_ci_high"]
    # the searched-but-not-retrained trial is counted as non-finite, not dropped silently
    assert _summary(res, "all", "das")["n_nonfinite"] == 1
    table = next(t for t in res["tables"] if t.name == "table1_seq_H1")
    row = table.frame[(table.frame[("", "Ops")] == "all") & (table.frame[("", "Method")] == "DAS")].iloc[0]
    arch = known[("das", "all")][1]
    assert row[("Blur", "Max")] == pytest.approx(arch.max()) and row[("Blur", "Median")] == pytest.approx(np.median(arch))
    assert row[("Blur", "Paper Median")] == 18.57 and row[("Runtime", "s")] == pytest.approx(120.0)
    md = (tmp_path / "out" / "table1_seq_H1.md").read_text()
    assert f"| all | DAS | {arch.max():.2f} | {arch.mean():.2f} | {np.median(arch):.2f} | 8 | 18.57 |" in md
    assert "| 2:00 |" in md  # runtime: 100 s search + 20 s retrain, in the paper's m:ss
    assert (tmp_path / "out" / "trials.csv").is_file() and (tmp_path / "out" / "report.md").is_file()


def test_correlations_equal_scipy(tree, tmp_path):
    root, known = tree
    res = run(root, tmp_path, "--no-plots")
    for ops in ("good", "all"):
        one, arch = known[("das", ops)]
        c = next(c for c in res["correlations"] if c["ops"] == ops and c["method"] == "das")
        assert c["pearson_r"] == pytest.approx(st.pearsonr(one, arch)[0])
        assert c["pearson_p"] == pytest.approx(st.pearsonr(one, arch)[1])
        assert c["spearman_rho"] == pytest.approx(st.spearmanr(one, arch)[0])
        assert c["kendall_tau"] == pytest.approx(st.kendalltau(one, arch)[0])
        assert c["kendall_p"] == pytest.approx(st.kendalltau(one, arch)[1])


def test_bad_files_reported_once_and_skipped(tree, tmp_path, capsys):
    root, _ = tree
    res = run(root, tmp_path)
    reasons = sorted(r for r, _ in res["skipped"])
    assert reasons.count("running") == 1 and reasons.count("corrupt") == 1
    assert reasons.count("foreign") == 1 and reasons.count("searched") == 1
    assert reasons.count("linked") == 1  # the linked copy of the whole tree: nothing counted twice
    # the diverged search is a trial of its group: counted, and kept out of the numbers
    s = _summary(res, "all", "das")
    assert s["n"] == 8 and s["n_nonfinite"] == 1 and "1" in s["note"]
    out = capsys.readouterr().out
    for word in ("invalid JSON", "not a result file", "unfinished", "not retrained", "through a link"):
        assert sum(word in line for line in out.splitlines() if line.startswith("skipped")) == 1, word


def test_draws_to_beat_and_claims(tree, tmp_path):
    root, known = tree
    res = run(root, tmp_path, "--no-plots")
    pool = np.concatenate([known[("random", "all")], known[("random-search", "all")].ravel()])
    med = np.median(known[("das", "all")][1])
    d = next(d for d in res["draws"] if d["ops"] == "all")
    assert d["pool"] == len(pool) == 21
    p = (pool > med).mean()
    assert d["expected"] == (pytest.approx(1 / p) if p else float("inf"))
    claims = {c["claim"] for c in res["claims"]}
    assert {"a", "b", "c", "d"} <= claims
    text = res["report"]
    assert "Mann-Whitney U" in text and "Fisher-z" in text


def test_results_tree_and_trials_csv_give_the_same_tables(tree, tmp_path):
    root, _ = tree
    first = run(root, tmp_path, "--no-plots", "--latex")
    again = run(tmp_path / "out" / "trials.csv", tmp_path, "--no-plots", "--latex", out="again")
    assert len(again["records"]) == len(first["records"])
    for name in [t.name for t in first["tables"]]:
        for ext in ("csv", "md", "tex"):
            a = (tmp_path / "out" / f"{name}.{ext}").read_text()
            b = (tmp_path / "again" / f"{name}.{ext}").read_text()
            assert a == b, f"{name}.{ext}"
    # and the default output folder of a trials.csv is its own folder, which it does not overwrite
    before = (tmp_path / "out" / "trials.csv").read_text()
    p = subprocess.run([sys.executable, "analyze.py", str(tmp_path / "out" / "trials.csv"), "--no-plots"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "trials.csv").read_text() == before and "Claims" in p.stdout


def test_several_roots_pool_their_trials_and_refuse_a_trial_twice(tree, tmp_path):
    """Two trees (here: the good-ops and the all-ops halves) give the tables of the whole tree;
    the same trial in two sources is one line, exit 2."""
    import shutil
    root, _ = tree
    whole = run(root, tmp_path, "--no-plots")
    halves = []
    for ops in ("good", "all"):
        half = tmp_path / f"half_{ops}"
        shutil.copytree(root / "seq" / "blur" / ops, half / "seq" / "blur" / ops)
        halves.append(half)
    pooled = analyze.main(analyze.get_parser().parse_args([*map(str, halves), "--out", str(tmp_path / "pooled"),
                                                          "--no-plots"]))
    assert len(pooled["records"]) == len(whole["records"])
    for name in [t.name for t in whole["tables"]]:
        assert (tmp_path / "pooled" / f"{name}.csv").read_text() == (tmp_path / "out" / f"{name}.csv").read_text()
    p = subprocess.run([sys.executable, "analyze.py", str(halves[0]), str(tmp_path / "out" / "trials.csv"),
                        "--out", str(tmp_path / "twice"), "--no-plots"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "more than one of" in p.stderr
    assert "seq/blur/" in p.stderr and "{" not in p.stderr
    # a pooled analysis never writes over one of its inputs
    before = (tmp_path / "out" / "trials.csv").read_bytes()
    p = subprocess.run([sys.executable, "analyze.py", str(tmp_path / "out" / "trials.csv"), str(halves[0]),
                        "--no-plots"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "pass --out" in p.stderr and p.stderr.count("\n") == 1
    assert (tmp_path / "out" / "trials.csv").read_bytes() == before


def test_paper_comparison_sets_our_intervals_beside_the_paper(tree, tmp_path):
    """paper_comparison.csv: our median and mean (numpy) with intervals that hold them, the
    paper's numbers from das.study, and 'inside' decided against those intervals."""
    import pandas as pd
    from das.study import paper_value
    root, known = tree
    run(root, tmp_path, "--no-plots")
    table = pd.read_csv(tmp_path / "out" / "paper_comparison.csv")
    assert set(zip(table["ops"], table["method"])) == {(o, m) for o in ("good", "all")
                                                         for m in ("das", "random", "random-search")}
    for _, row in table.iterrows():
        if row["method"] == "das":
            arch = known[("das", row["ops"])][1]
            assert row["median"] == pytest.approx(np.median(arch)) and row["mean"] == pytest.approx(arch.mean())
        paper = paper_value("seq", "blur", row["ops"], row["method"], "H1")
        assert (row["paper_max"], row["paper_mean"], row["paper_median"]) == pytest.approx(paper)
        assert row["median_minus_paper"] == pytest.approx(row["median"] - paper[2])
        assert row["median_ci_low"] <= row["median"] <= row["median_ci_high"]
        assert bool(row["paper_median_in_ci"]) == (row["median_ci_low"] <= paper[2] <= row["median_ci_high"])


def test_figures_are_pdf_and_png(tree, tmp_path):
    import matplotlib.image as mpimg
    root, _ = tree
    res = run(root, tmp_path, "--format", "pdf,png")
    names = {f.name for f in res["figures"]}
    for stem in ("fig3_scatter_blur", "ops_seq_blur_all_das_H1", "alphas_seq_blur_all_das_H1",
                 "training_seq_blur_all_H1", "genotype_best_seq_blur_all_das_H1"):
        assert f"{stem}.pdf" in names and f"{stem}.png" in names, stem
    for f in res["figures"]:
        head = f.read_bytes()[:8]
        if f.suffix == ".png":
            assert head == b"\x89PNG\r\n\x1a\n" and mpimg.imread(f).shape[0] > 100
        else:
            assert head.startswith(b"%PDF")


def test_a_scatter_pools_the_op_sets_under_one_reading(tree, tmp_path):
    """Under one reading the all-ops cells run noise sigma 1 and the good-ops ones cannot: Figure 3
    is still one panel per data formation with both op sets (the tables' layout), not two."""
    from das.plot import scatter_figures

    root, _ = tree
    records = run(root, tmp_path, "--no-plots", "--resamples", "100")["records"]
    read = [{**r, "noise_sigma": 1.0} if r["ops"] == "all" else r for r in records]
    assert {r["noise_sigma"] for r in read if r["method"] == "das"} == {0.1, 1.0}
    files = scatter_figures(read, tmp_path / "figs", ("png",))
    assert sorted(f.name for f in files) == ["fig3_scatter_blur.png"]


def test_missing_root_is_one_line_error(tmp_path):
    p = subprocess.run([sys.executable, "analyze.py", str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no such results folder" in p.stderr
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    p = subprocess.run([sys.executable, "analyze.py", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "not a trials.csv" in p.stderr


def test_scatter_names_follow_the_paper_figures():
    from das.plot import figure_name
    assert figure_name("seq", "blur", "H1") == "fig3_scatter_blur"
    assert figure_name("seq", "downsample", "H1") == "fig3_scatter_downsample"
    assert figure_name("seq", "blur", "BOHB-one-shot-Blur") == "fig4_scatter_blur_BOHB-one-shot-Blur"
    assert figure_name("seq", "blur", "BOHB-DAS-single") == "fig5_scatter_blur_BOHB-DAS-single"
    assert figure_name("cell", "blur", "H2") == "fig6_scatter_blur_H2"
    assert figure_name("cell", "blur", "BOHB-Blur") == "fig7_scatter_blur_BOHB-Blur"
    assert figure_name("cell", "blur", "BOHB-Non-Seq-Blur") == "fig8_scatter_blur_BOHB-Non-Seq-Blur"
    assert figure_name("seq", "blur", "H2") == "scatter_seq_blur_H2"  # the paper has no figure for it


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_scatter_legend_has_n_and_correlation_and_fit_only_from_min_n(n):
    from das import plot
    from tests.test_stats import record
    rng = np.random.default_rng(n)
    one, arch = rng.normal(20, 1, n), rng.normal(15, 1, n)
    rs = [record("seq", "blur", "all", "das", s, float(arch[s]), float(one[s])) for s in range(n)]
    plt = plot.pyplot()
    fig, ax = plt.subplots()
    plot._scatter_series(ax, rs, "k", "o", "DAS")
    label = ax.collections[0].get_label()
    assert f"(n={n})" in label
    if n >= plot.MIN_CORR_N:
        assert f"r={st.pearsonr(one, arch)[0]:.2f}" in label and f"p={st.pearsonr(one, arch)[1]:.2g}" in label
    else:
        assert "r=" not in label
    assert len(ax.lines) == (1 if n >= plot.MIN_FIT_N else 0)
    assert not ax.yaxis.get_major_formatter().get_useOffset()
    plt.close(fig)


def test_reading_makes_the_paper_table_of_one_reading(tmp_path):
    """--reading keeps the trials of one reading (a cell it cannot change keeps its defaults' trials)
    and rereads an evaluation-only setting from the numbers each trial stored; the table then sits
    beside the paper's numbers. Checked against numpy medians of the numbers written, and against
    the same analysis of the table it wrote (a view of a view is the view)."""
    from das.vocab import display

    rng = np.random.default_rng(1)
    root = tmp_path / "results"
    written = {}
    for ops, settings in (("all", {}), ("all", {"noise_sigma": 1.0}), ("good", {})):
        sample, pooled = rng.normal(15, 3, 6), rng.normal(17, 3, 6)
        written[(ops, settings.get("noise_sigma", 0.1))] = (sample, pooled)
        for seed in range(6):
            write_trial(root, "seq", "blur", ops, "random", seed, float(sample[seed]), settings=settings,
                        psnr_averagings={"architecture": {"sample": float(sample[seed]), "pooled": float(pooled[seed]),
                                                          "batch": float(sample[seed]) - 1}})

    def row(res, ops):
        table = next(t for t in res["tables"] if t.name == "table1_seq_H1")
        f = table.frame
        return f[(f[("", "Ops")] == display("ops", ops)) & (f[("", "Method")] == "Random")].iloc[0]

    plain = run(root, tmp_path, "--no-plots", "--resamples", "100", out="plain")
    assert row(plain, "all")[("Blur", "Median")] == pytest.approx(np.median(written[("all", 0.1)][0]))
    assert any(t.name == "table1_seq_H1_ns1" for t in plain["tables"])  # another reading: a table of its own
    res = run(root, tmp_path, "--no-plots", "--resamples", "100", "--reading", "noise_sigma=1+psnr=pooled", out="read")
    assert [t.name for t in res["tables"] if t.name.startswith("table1")] == ["table1_seq_H1"]
    for ops, sigma in (("all", 1.0), ("good", 0.1)):
        r = row(res, ops)
        assert r[("Blur", "Median")] == pytest.approx(np.median(written[(ops, sigma)][1]))
        assert r[("Blur", "n")] == 6
    assert row(res, "all")[("Blur", "Paper Median")] == 8.10
    assert "under the reading noise_sigma=1+psnr=pooled" in (tmp_path / "read" / "table1_seq_H1.md").read_text()
    again = run(tmp_path / "read" / "trials.csv", tmp_path, "--no-plots", "--resamples", "100", "--reading",
                "noise_sigma=1+psnr=pooled", out="again")
    assert len(again["all_records"]) == 12
    for ops in ("all", "good"):
        assert row(again, ops)[("Blur", "Median")] == row(res, ops)[("Blur", "Median")]
    # --study table1 keeps Table 1's trials at its settings: the good-ops ones (reread, they are still
    # its trials), not those of noise sigma 1
    both = run(tmp_path / "read" / "trials.csv", tmp_path, "--no-plots", "--resamples", "100", "--study", "table1",
               "--reading", "noise_sigma=1+psnr=pooled", out="both")
    assert len(both["all_records"]) == 6 and "6 of label H1_ns1-psnrpooled" in both["report"]
    assert row(both, "good")[("Blur", "Median")] == row(res, "good")[("Blur", "Median")]
    # pooled with the trials as run: each trial once
    pooled = analyze.main(analyze.get_parser().parse_args(
        [str(root), str(tmp_path / "read" / "trials.csv"), "--out", str(tmp_path / "pooled"), "--no-plots",
         "--resamples", "100", "--reading", "noise_sigma=1+psnr=pooled"]))
    assert len(pooled["all_records"]) == 12
    for ops in ("all", "good"):
        assert row(pooled, ops)[("Blur", "Median")] == row(res, ops)[("Blur", "Median")]
    # a trial that ran before the averagings were stored cannot be reread: left out, and the note says so
    write_trial(root, "seq", "blur", "good", "random", 6, 99.0)
    old = run(root, tmp_path, "--no-plots", "--resamples", "100", "--reading", "noise_sigma=1+psnr=pooled", out="old")
    assert row(old, "good")[("Blur", "n")] == 6 and row(old, "good")[("Blur", "Max")] < 99
    assert "hold no numbers under psnr=pooled: 1 (they ran" in old["report"]
    # an old trial of other training settings is not the reading's: not counted
    write_trial(root, "seq", "blur", "all", "random", 7, 98.0)
    assert "hold no numbers under psnr=pooled: 1 (they ran" in run(
        root, tmp_path, "--no-plots", "--resamples", "100", "--reading", "noise_sigma=1+psnr=pooled", out="old2")["report"]
    assert "hold no numbers" not in res["report"]


def test_reading_from_a_choice_file(tmp_path):
    """--reading choice.json takes the screen's chosen reading, and only from a finished screen."""
    from das import readings
    from das.utils import UserError

    choice = tmp_path / "choice.json"
    choice.write_text(json.dumps({"chosen": {"settings": {"noise_sigma": 1.0, "psnr": "pooled"}}, "incomplete": []}))
    assert readings.parse(str(choice)) == {"noise_sigma": 1.0, "psnr": "pooled"}
    choice.write_text(json.dumps({"chosen": {"settings": {"noise_sigma": 1.0}}, "incomplete": ["width=8"]}))
    with pytest.raises(UserError, match="the screen is not finished"):
        readings.parse(str(choice))
    assert readings.parse("defaults") == {} and readings.parse("noise_sigma=0.1+width=16") == {}


@pytest.mark.parametrize("reading, match", [("widht=8", "'widht=8' is not SETTING=VALUE"),
                                            ("width=eight", "width takes a int, got 'eight'"),
                                            ("noise_sigma=nan", "noise.sigma must be"),
                                            ("psnr=median", "psnr must be one of")])
def test_a_bad_reading_is_one_line(tree, tmp_path, reading, match):
    root, _ = tree
    p = subprocess.run([sys.executable, "analyze.py", str(root), "--out", str(tmp_path / "out"), "--no-plots",
                        "--reading", reading], capture_output=True, text=True, cwd=ROOT, timeout=300)
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), p.stderr[-2000:]
    assert re.search(match, lines[0]), lines[0]
    assert not (tmp_path / "out" / "trials.csv").exists()


def test_study_keeps_its_cells_and_seeds(tree, tmp_path):
    """--study table1 keeps the trials Table 1's sweep defines (seeds 0-74, default settings): a
    trial at seed 80 or with other settings is left out, the rest is as without it."""
    root, known = tree
    write_trial(root, "seq", "blur", "good", "random", 80, 99.0)
    write_trial(root, "seq", "blur", "good", "random", 0, 98.0, settings={"epochs": 2})
    plain = run(root, tmp_path, "--no-plots", "--resamples", "100", out="plain")
    assert _summary(plain, "good", "random")["max"] == 99.0
    res = run(root, tmp_path, "--no-plots", "--resamples", "100", "--study", "table1", out="study")
    s = _summary(res, "good", "random")
    assert s["n"] == 6 and s["median"] == pytest.approx(np.median(known[("random", "good")]))
    assert not any(r["label"] != "H1" for r in res["all_records"])
    das = _summary(res, "all", "das")
    assert das["n"] == 8 and das["n_nonfinite"] == 0  # seed 92 (searched, never retrained) is not Table 1's
    assert "The study table1:" in res["report"]
    # several studies: the union of their trials (a Table 2 trial joins; seed 80 stays out of both)
    write_trial(root, "cell", "blur", "good", "random", 3, 17.0)
    assert not any(r["space"] == "cell" for r in run(root, tmp_path, "--no-plots", "--resamples", "100", "--study",
                                                      "table1", out="one")["all_records"])
    both = run(root, tmp_path, "--no-plots", "--resamples", "100", "--study", "table1,table2", out="both")
    assert sorted((r["space"], r["seed"]) for r in both["all_records"] if r["space"] == "cell") == [("cell", 3)]
    assert _summary(both, "good", "random")["n"] == 6 and "The study table1 + table2:" in both["report"]
    p = subprocess.run([sys.executable, "analyze.py", str(root), "--out", str(tmp_path / "bad"), "--study", "table9"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and p.stderr.startswith("error: --study table9: no such study"), p.stderr[-2000:]
