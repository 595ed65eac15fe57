"""das.stats against independent computations (numpy / scipy by hand) on synthetic records."""
import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats as st

from das import stats

LAYERS = 10


def record(space, data, ops, method, seed, arch, one_shot=None, preset="H1", **extra):
    """One flat record as das.collect.load_trials returns it (a real specification's fields, group and
    label; for a DAS method, the retrain of its search under the search's seed)."""
    from das.hparams import load_hparams
    from das.model import uniform_genotype
    from das.spec import TrialSpec, retrain_spec

    names = ["grad", "net"] if ops == "good" else ["grad", "net", "roll", "noise"]
    rng = np.random.default_rng(1000 + seed)
    layers = [names[(seed + j) % len(names)] for j in range(LAYERS)]
    hp = load_hparams(preset)
    spec = TrialSpec.make(hp=hp, space=space, data=data, ops=ops, method=method, seed=seed, sigma_n=0.01)
    if method in ("das", "das-single"):
        spec = retrain_spec(spec, uniform_genotype(space, data, ops, "grad"))
    r = {**spec.to_dict(), **spec.settings(), "group": spec.group(), "label": spec.label(),
         "primary": True, "retrain_seed": spec.retrain_seed,
         "status": "complete", "one_shot_psnr": one_shot, "architecture_psnr": arch,
         "genotype": {"space": space, "ops": ops, "data": data, "width": 16, "layers": layers},
         "alphas": None, "alphas_init": None, "wall_seconds": {"search": 100.0, "retrain": 20.0},
         "history": {"epoch": [1, 2, 3], "train_loss": list(np.exp(-np.arange(3) - seed / 10)),
                     "train_psnr": list(10 + np.arange(3) + seed / 10), "seconds": [1.0, 1.0, 1.0]},
         "candidates": None, "one_shot_ranking": None, "dir": f"/results/{method}/{ops}/seed{seed}"}
    if method in ("das", "das-single"):
        k = len(names)
        init = rng.dirichlet(np.full(k, 200.0), LAYERS)          # nearly uniform, argmax defined
        final = np.full((LAYERS, k), 0.1 / (k - 1))
        final[np.arange(LAYERS), [names.index(op) for op in layers]] = 0.9
        r["alphas_init"], r["alphas"] = init.tolist(), final.tolist()
        traj = [(init + (final - init) * t / 2).tolist() for t in range(3)]
        r["history"] = {**r["history"], "val_loss": [0.1, 0.05, 0.02], "alphas": traj}
        r["genotype"]["alphas"] = final.tolist()
    r.update(extra)
    return r


def make_records(n=10, seed=0):
    """~n records per group with known numbers; returns (records, known arrays by (data, ops, method))."""
    rng = np.random.default_rng(seed)
    records, known = [], {}
    centres = {("good", "das"): 21.6, ("good", "random-search"): 22.75, ("good", "random"): 22.2,
               ("good", "grad-only"): 16.5, ("good", "net-only"): 20.7,
               ("all", "das"): 18.6, ("all", "random"): 8.1, ("all", "random-search"): 12.3}
    for data, shift in (("blur", 0.0), ("downsample", -4.0)):
        for (ops, method), c in centres.items():
            arch = rng.normal(c + shift, 1.0, n)
            known[(data, ops, method)] = arch
            for s in range(n):
                extra = {}
                if method == "das":
                    one = 0.3 * arch[s] + rng.normal(10, 0.5)
                    known.setdefault((data, ops, "one_shot"), []).append(one)
                    extra["one_shot_psnr"] = float(one)
                if method == "random-search":
                    cands = rng.normal(c + shift - 1.0, 1.0, 5)
                    cands[0] = arch[s]
                    genos = [{"space": "seq", "ops": ops, "layers": [f"op{s}_{k}"] * LAYERS} for k in range(5)]
                    extra["candidates"] = [{"genotype": g, "architecture_psnr": float(v), "status": "complete"}
                                           for g, v in zip(genos, cands)]
                    known.setdefault((data, ops, "candidates"), []).extend(cands)
                records.append(record("seq", data, ops, method, s, float(arch[s]), **extra))
    # cell space: lower numbers (claim e)
    for ops in ("good", "all"):
        arch = rng.normal(13.0, 1.0, n)
        known[("cell", ops, "das")] = arch
        for s in range(n):
            records.append(record("cell", "blur", ops, "das", s, float(arch[s]), float(rng.normal(20, 1)),
                                  genotype={"space": "cell", "ops": ops, "edges": [[0, 1, "net"]]}))
    # one-shot rankings of the blur/good searches, matched to the random-search candidates of the same seed
    rs = {r["seed"]: r for r in records if r["method"] == "random-search" and r["data"] == "blur" and r["ops"] == "good"}
    for r in records:
        if r["method"] == "das" and r["space"] == "seq" and r["data"] == "blur" and r["ops"] == "good":
            cands = rs[r["seed"]]["candidates"]
            r["one_shot_ranking"] = [{"genotype": c["genotype"], "one_hot_psnr": c["architecture_psnr"] * 0.5 + k}
                                     for k, c in enumerate(cands)]
    return records, known


@pytest.fixture
def synthetic():
    return make_records()


def _summary(records, **kw):
    return {(s["space"], s["data"], s["ops"], s["method"]): s for s in stats.group_summary(records, **kw)}


def test_summary_equals_numpy_and_interval_is_bca(synthetic):
    records, known = synthetic
    s = _summary(records)
    for (data, ops, method), arch in known.items():
        if method in ("one_shot", "candidates"):
            continue
        space = "cell" if data == "cell" else "seq"
        row = s[(space, "blur" if space == "cell" else data, ops, method)]
        assert row["n"] == len(arch) and row["n_nonfinite"] == 0
        assert row["max"] == pytest.approx(arch.max()) and row["mean"] == pytest.approx(arch.mean())
        assert row["median"] == pytest.approx(np.median(arch))
        assert row["seconds"] == pytest.approx(120.0)
        ref = st.bootstrap((arch,), np.median, n_resamples=2000, method="BCa", confidence_level=0.95,
                           random_state=np.random.default_rng(0))
        assert row["ci_method"] == "BCa"
        assert (row["median_ci_low"], row["median_ci_high"]) == pytest.approx(
            (ref.confidence_interval.low, ref.confidence_interval.high))
        assert row["median_ci_low"] <= row["median"] <= row["median_ci_high"]
        assert row["mean_ci_low"] < arch.mean() < row["mean_ci_high"]


def test_nonfinite_psnr_counted_and_left_out_never_blanks_a_group(synthetic):
    records, known = synthetic
    das_all = [r for r in records if r["method"] == "das" and r["ops"] == "all" and r["data"] == "blur"]
    das_all[0]["architecture_psnr"] = float("nan")
    das_all[1]["architecture_psnr"] = None
    das_all[2]["architecture_psnr"] = float("inf")
    row = _summary(records)[("seq", "blur", "all", "das")]
    kept = known[("blur", "all", "das")][3:]
    assert row["n"] == 7 and row["n_nonfinite"] == 3
    assert row["median"] == pytest.approx(np.median(kept)) and row["max"] == pytest.approx(kept.max())
    assert "3 of 10" in row["note"]
    for r in das_all:
        r["architecture_psnr"] = float("nan")
    row = _summary(records)[("seq", "blur", "all", "das")]
    assert row["n"] == 0 and row["n_nonfinite"] == 10 and math.isnan(row["median"]) and "10 of 10" in row["note"]


def test_degenerate_intervals_fall_back_to_percentile():
    assert stats.bootstrap_interval([3.0, 3.0, 3.0, 3.0]) == (3.0, 3.0, "percentile")
    lo, hi, how = stats.bootstrap_interval([1.0, 2.0])
    assert how == "percentile" and 1.0 <= lo <= hi <= 2.0
    assert stats.bootstrap_interval([1.0])[2] == "none"


def test_correlation_matches_scipy_and_fisher_z():
    rng = np.random.default_rng(3)
    x = rng.normal(size=20)
    y = 0.5 * x + rng.normal(size=20)
    c = stats.correlation(x, y)
    r, p = st.pearsonr(x, y)
    assert c["pearson_r"] == pytest.approx(r) and c["pearson_p"] == pytest.approx(p)
    half = 1.959963984540054 / math.sqrt(20 - 3)
    assert c["pearson_ci_low"] == pytest.approx(math.tanh(math.atanh(r) - half))
    assert c["pearson_ci_high"] == pytest.approx(math.tanh(math.atanh(r) + half))
    assert c["spearman_rho"] == pytest.approx(st.spearmanr(x, y)[0])
    assert c["kendall_tau"] == pytest.approx(st.kendalltau(x, y)[0])
    assert c["kendall_p"] == pytest.approx(st.kendalltau(x, y)[1])
    assert math.isnan(stats.correlation([1, 2], [3, 4])["pearson_r"])


def test_draws_to_beat_closed_form_matches_simulation():
    rng = np.random.default_rng(5)
    pool = rng.normal(10, 3, 200)
    target = 14.0
    d = stats.draws_to_beat(pool, target)
    p = (pool > target).mean()
    assert d["expected"] == pytest.approx(1 / p) and d["p_budget"] == pytest.approx(1 - (1 - p) ** 5)
    sims = []  # the simulation is the check, not the method
    for _ in range(4000):
        k = 1
        while pool[rng.integers(len(pool))] <= target:
            k += 1
        sims.append(k)
    assert np.mean(sims) == pytest.approx(d["expected"], rel=0.08)
    assert np.median(sims) == pytest.approx(d["median"], abs=1)
    assert stats.draws_to_beat(pool, 1e9)["expected"] == float("inf")


def test_draws_pool_random_and_candidates_of_same_spec(synthetic):
    records, known = synthetic
    summary = stats.group_summary(records)
    d = next(d for d in stats.draws_table(records, summary) if d["data"] == "blur" and d["ops"] == "all")
    pool = np.concatenate([known[("blur", "all", "random")], known[("blur", "all", "candidates")]])
    assert d["pool"] == len(pool) == 60
    med = np.median(known[("blur", "all", "das")])
    p = (pool > med).mean()
    assert d["p"] == pytest.approx(p)


def test_verdicts_name_the_test_and_agree_with_scipy(synthetic):
    records, known = synthetic
    v = {(c["claim"], c["what"]): c for c in stats.verdicts(records)}
    a = v[("a", "seq/blur/all/H1: DAS beats random with harmful ops")]
    das, rnd = known[("blur", "all", "das")], known[("blur", "all", "random")]
    assert a["p_greater"] == pytest.approx(st.mannwhitneyu(das, rnd, alternative="greater").pvalue)
    assert a["verdict"] == "holds" and a["difference"] == pytest.approx(np.median(das) - np.median(rnd))
    assert "Mann-Whitney U" in a["text"] and "n = 10 vs 10" in a["text"] and "interval" in a["text"]
    assert a["ci_low"] <= a["difference"] <= a["ci_high"]
    c = v[("c", "seq/blur/all/H1: DAS loses median PSNR when harmful ops are added")]
    assert c["verdict"] == "holds"  # 21.6 vs 18.6 dB with sd 1
    e = v[("e", "seq/blur/good/H1: the cell space scores lower than the sequential one")]
    assert e["verdict"] == "holds"
    b = v[("b", "seq/blur/good/H1: random search matches or beats DAS with good ops")]
    assert b["verdict"].startswith("holds")  # 22.75 vs 21.6 dB
    d = next(c for c in stats.verdicts(records) if c["claim"] == "d" and "blur/all" in c["what"])
    assert "Fisher-z" in d["text"] and d["verdict"] in ("holds", "does not hold", "undecided")


def test_verdict_rules_not_enough_and_does_not_hold():
    lo = [record("seq", "blur", "all", "das", s, 10.0 + s) for s in range(6)]
    hi = [record("seq", "blur", "all", "random", s, 20.0 + s) for s in range(6)]
    v = next(c for c in stats.verdicts(lo + hi) if c["claim"] == "a")
    assert v["verdict"] == "does not hold"  # random is significantly higher
    v = next(c for c in stats.verdicts(lo[:4] + hi) if c["claim"] == "a")
    assert v["verdict"] == "not enough trials" and "n = 4 vs 6" in v["text"]
    same = [record("seq", "blur", "all", "random", s, 10.0 + s + 0.5) for s in range(6)]
    assert next(c for c in stats.verdicts(lo + same) if c["claim"] == "a")["verdict"] == "undecided"


def test_groups_are_never_pooled():
    a = [record("seq", "blur", "all", "das", s, 10.0) for s in range(5)]
    b = [dict(record("seq", "blur", "all", "das", s, 20.0), epochs=10, group="other") for s in range(5)]
    rows = stats.group_summary(a + b)
    assert sorted(r["median"] for r in rows) == [10.0, 20.0] and all(r["n"] == 5 for r in rows)


def test_alpha_diagnostics_by_hand(synthetic):
    records, _ = synthetic
    d = next(d for d in stats.alpha_diagnostics(records) if d["data"] == "blur" and d["ops"] == "all")
    rs = [r for r in records if r["method"] == "das" and r["data"] == "blur" and r["ops"] == "all"]
    a = np.concatenate([np.asarray(r["alphas"]) for r in rs])
    a0 = np.concatenate([np.asarray(r["alphas_init"]) for r in rs])
    assert d["final_deviation"] == pytest.approx(np.abs(a - 0.25).max(axis=1).mean())
    assert d["init_deviation"] == pytest.approx(np.abs(a0 - 0.25).max(axis=1).mean())
    ent = -(a * np.log(a)).sum(1) / np.log(4)
    assert d["final_entropy"] == pytest.approx(ent.mean())
    same = (a.argmax(1) == a0.argmax(1)).mean()
    assert d["same_argmax"] == pytest.approx(same) and d["chance"] == 0.25
    assert "%" in d["sentence"] and "decided" in d["sentence"]


def test_initialisation_decides_when_argmax_never_moves():
    recs = []
    for s in range(8):
        r = record("seq", "blur", "all", "das", s, 15.0)
        init = np.full((LAYERS, 4), 0.24)
        init[np.arange(LAYERS), np.arange(LAYERS) % 4] = 0.28
        final = np.full((LAYERS, 4), 0.1)
        final[np.arange(LAYERS), np.arange(LAYERS) % 4] = 0.7
        r["alphas_init"], r["alphas"] = init.tolist(), final.tolist()
        recs.append(r)
    d = stats.alpha_diagnostics(recs)[0]
    assert d["same_argmax"] == 1.0 and "initialisation decided" in d["sentence"]
    for r in recs:  # alpha that stays at its start: the search decided nothing
        r["alphas"] = r["alphas_init"]
    assert "did not decide" in stats.alpha_diagnostics(recs)[0]["sentence"]


def test_ranking_kendall_per_search_and_pooled(synthetic):
    records, _ = synthetic
    rows = stats.ranking_correlations(records)
    per = [r for r in rows if r["scope"] == "search"]
    pooled = [r for r in rows if r["scope"] == "pooled"]
    assert len(per) == 10 and len(pooled) == 1 and pooled[0]["n"] == 50
    r0 = next(r for r in records if r["method"] == "das" and r["data"] == "blur" and r["ops"] == "good" and r["seed"] == 0)
    x = [e["one_hot_psnr"] for e in r0["one_shot_ranking"]]
    cands = next(r for r in records if r["method"] == "random-search" and r["data"] == "blur" and r["ops"] == "good"
                 and r["seed"] == 0)["candidates"]
    y = [c["architecture_psnr"] for c in cands]
    row = next(r for r in per if r["seed"] == 0)
    assert row["kendall_tau"] == pytest.approx(st.kendalltau(x, y)[0])
    assert row["spearman_rho"] == pytest.approx(st.spearmanr(x, y)[0])
    assert json.loads(stats.genotype_key(cands[0]["genotype"]))["layers"] == cands[0]["genotype"]["layers"]


def test_verdicts_never_pool_groups_of_one_specification():
    first = [record("seq", "blur", "all", "das", s, 18.0 + s) for s in range(5)]
    second = [dict(record("seq", "blur", "all", "das", s, 30.0 + s), order=2, group="second-order") for s in range(6)]
    rnd = [record("seq", "blur", "all", "random", s, 8.0 + s) for s in range(7)]
    a = [v for v in stats.verdicts(first + second + rnd) if v["claim"] == "a"]
    assert sorted((v["n_x"], v["n_y"]) for v in a) == [(5, 7), (6, 7)]  # one line per DAS group
    assert any("second-order" in v["what"] for v in a)
    assert {v["median_x"] for v in a} == {20.0, 32.5}


def test_verdicts_count_searches_not_retrains():
    das = [dict(record("seq", "blur", "all", "das", s, 20.0 + s + 0.1 * k), retrain_seed=k)
           for s in range(5) for k in range(3)]
    rnd = [record("seq", "blur", "all", "random", s, 8.0 + s) for s in range(6)]
    a = next(v for v in stats.verdicts(das + rnd) if v["claim"] == "a")
    assert (a["n_x"], a["n_y"]) == (5, 6)
    per_search = np.array([20.0 + s + 0.1 for s in range(5)])  # mean of the 3 retrains
    assert a["p_greater"] == pytest.approx(st.mannwhitneyu(per_search, 8.0 + np.arange(6), alternative="greater").pvalue)
    assert stats.group_summary(das)[0]["n"] == 15  # the table still counts every retrain


def test_correlation_has_one_point_per_search():
    rs = [dict(record("seq", "blur", "all", "das", s, 10.0 + s * s + k, 20.0 + s), retrain_seed=k)
          for s in range(6) for k in range(2)]
    c = stats.correlations(rs)[0]
    x, y = 20.0 + np.arange(6), 10.5 + np.arange(6) ** 2
    assert c["n"] == 6 and c["pearson_r"] == pytest.approx(st.pearsonr(x, y)[0])


def test_wall_clock_is_the_union_of_the_trials_intervals():
    """stats.wall_clock against a second computation: the seconds covered by at least one trial,
    counted on a one-second grid with numpy (overlapping, nested, touching and separate intervals;
    a record without times is counted as untimed)."""
    rng = np.random.default_rng(0)
    t0 = 1_800_000_000
    records, grid = [], np.zeros(20_000, bool)
    for _ in range(60):
        a = int(rng.integers(0, 19_000))
        b = a + int(rng.integers(0, 900))
        grid[a:b] = True
        iso = lambda s: __import__("time").strftime("%Y-%m-%dT%H:%M:%S+0000", __import__("time").gmtime(t0 + s))
        records.append({"started": iso(a), "finished": iso(b)})
    records.append({"started": None, "finished": None})
    clock = stats.wall_clock(records)
    assert clock["trials"] == 60 and clock["untimed"] == 1
    assert clock["wall_hours"] * 3600 == pytest.approx(grid.sum(), abs=1e-6)
    assert clock["wall_hours"] <= clock["trial_hours"]


def test_preset_sensitivity_by_hand():
    """Kruskal-Wallis across presets by hand (pandas average ranks, tie correction), medians, range,
    within-preset IQR and the paper's range over the same presets (das.study.PAPER's Table 3)."""
    import pandas as pd

    rng = np.random.default_rng(7)
    centres = {"H1": 21.0, "H2": 21.2, "BOHB-Blur": 19.5}
    recs = [record("seq", "blur", "good", "das", s, round(float(rng.normal(c, 1.0)), 1), preset=p)
            for p, c in centres.items() for s in range(12)]
    recs += [record("seq", "blur", "good", "random", s, 20.0) for s in range(12)]  # no alphas: not compared
    [d] = stats.preset_sensitivity(recs)
    frame = pd.DataFrame({"preset": [r["preset"] for r in recs[:36]], "v": [r["architecture_psnr"] for r in recs[:36]]})
    med = frame.groupby("preset")["v"].median()
    assert (d["best_preset"], d["worst_preset"]) == (med.idxmax(), med.idxmin())
    assert d["range"] == pytest.approx(med.max() - med.min())
    q = frame.groupby("preset")["v"].quantile([0.25, 0.75]).unstack()
    assert d["within_iqr"] == pytest.approx(float(np.median(q[0.75] - q[0.25])))
    n = len(frame)
    frame["rank"] = frame["v"].rank(method="average")
    h = 12 / (n * (n + 1)) * sum(g["rank"].sum() ** 2 / len(g) for _, g in frame.groupby("preset")) - 3 * (n + 1)
    ties = frame["v"].value_counts()
    h /= 1 - ((ties ** 3 - ties).sum()) / (n ** 3 - n)
    assert d["kruskal_h"] == pytest.approx(h)
    assert d["kruskal_p"] == pytest.approx(math.exp(-h / 2))  # chi-square with 2 degrees of freedom
    assert d["kruskal_p"] < 0.05 and d["verdict"] == "the presets differ"  # BOHB-Blur's centre is 1.5 dB lower
    paper = {"H1": 21.60, "H2": 21.63, "BOHB-Blur": 22.38}  # the paper's Tables 1 and 3, seq blur good ops
    assert d["paper_range"] == pytest.approx(max(paper.values()) - min(paper.values()))
    assert d["paper_best"] == "BOHB-Blur" and d["paper_presets"] == 3
    pairs = [(a, b) for a in paper for b in paper if a < b]  # 3 presets, no ties: tau = (C - D) / 3
    sign = [np.sign(med[a] - med[b]) * np.sign(paper[a] - paper[b]) for a, b in pairs]
    assert d["kendall_tau_paper"] == pytest.approx(sum(sign) / len(pairs))
    assert "Kruskal-Wallis" in stats.preset_sentence(d)
    assert stats.preset_sensitivity([r for r in recs if r["preset"] == "H1"]) == []  # one preset: nothing to compare


def test_preset_sensitivity_edge_cases():
    """Identical values (scipy's Kruskal-Wallis refuses them): no difference, not a crash; a preset
    whose searches all diverged is named and left out, not counted as n = 0; two groups under one
    preset name stay apart; too few searches: no verdict."""
    same = [record("seq", "blur", "good", "das", s, 20.0, preset=p) for p in ("H1", "H2") for s in range(6)]
    [d] = stats.preset_sensitivity(same)
    assert (d["kruskal_h"], d["kruskal_p"], d["range"]) == (0.0, 1.0, 0.0)
    assert d["verdict"] == "no difference between presets detected"
    dead = [record("seq", "blur", "good", "das", s, float("nan"), preset="BOHB-Blur") for s in range(6)]
    [d] = stats.preset_sensitivity(same + dead)
    assert (d["presets"], d["n_min"], d["no_values"]) == (2, 6, "BOHB-Blur") and "left out: BOHB-Blur" in \
        stats.preset_sentence(d)
    other = [record("seq", "blur", "good", "das", s, 30.0, preset="H1") for s in range(6)]
    for r in other:  # H1 with other hyperparameter values (a BOHB incumbent of the same name): another group
        r["group"] += " (other values)"
    [d] = stats.preset_sensitivity(same + other)
    assert d["presets"] == 3 and d["best_median"] == 30.0 and d["worst_median"] == 20.0
    few = [record("seq", "blur", "good", "das", s, 20.0 + s, preset=p) for p in ("H1", "H2") for s in range(3)]
    assert stats.preset_sensitivity(few)[0]["verdict"] == "not enough trials"


def _claim_row(rows, claim, data, ops, x, y):
    [r] = [r for r in rows if (r["claim"], r["data"], r["ops"], r["x"], r["y"]) == (claim, data, ops, x, y)]
    return r


def _table3_records(seeds=range(30)):
    """Synthetic Table 3 trials (seq, blur, all ops): H2 is H1 + 0.04 dB trial for trial, BOHB-one-shot-Blur
    3 dB higher with a one-shot PSNR that tracks its architecture PSNR, the others like H1."""
    rng = np.random.default_rng(7)
    base = {s: float(rng.normal(20, 0.2)) for s in seeds}
    arch = {"H1": base, "H2": {s: v + 0.04 for s, v in base.items()},
            "BOHB-one-shot-Blur": {s: float(rng.normal(23, 1)) for s in seeds},
            "BOHB-one-shot-DS": {s: float(rng.normal(20, 0.2)) for s in seeds},
            "BOHB-Blur": {s: float(rng.normal(20.3, 0.6)) for s in seeds}}
    one_shot = {p: {s: (v[s] + float(rng.normal(0, 0.3)) if p == "BOHB-one-shot-Blur" else float(rng.normal(10, 1)))
                    for s in seeds} for p, v in arch.items()}
    recs = [record("seq", "blur", "all", "das", s, round(arch[p][s], 3), round(one_shot[p][s], 3), preset=p)
            for p in arch for s in seeds]
    values = {p: np.array([round(arch[p][s], 3) for s in seeds]) for p in arch}
    shots = {p: np.array([round(one_shot[p][s], 3) for s in seeds]) for p in arch}
    return recs, values, shots


def test_preset_claims_by_hand():
    """das.study.PRESET_CLAIMS judged on synthetic Table 3 trials, against numpy, the standard library
    and scipy's distributions by hand: medians, means and maxima and their differences; Welch's t with
    its Welch-Satterthwaite degrees of freedom; Pearson r by np.corrcoef, the Fisher z-test and Zou's
    interval of r_x - r_y by statistics.NormalDist; each test's verdict rule; and which of the paper's
    columns (max, mean, median) a statement is set against."""
    from statistics import NormalDist

    from das.study import PAPER, PRESET_CLAIMS

    recs, v, shots = _table3_records()
    rows = stats.preset_claims(recs)
    assert {r["claim"] for r in rows} == {"T3.1", "T3.2", "T3.4", "T3.5", "T3.6", "T3.7", "T3.8", "T3.10"}
    assert all(r["data"] == "blur" and r["ops"] == "all" for r in rows)  # only what ran

    t = _claim_row(rows, "T3.8", "blur", "all", "BOHB-one-shot-Blur", "BOHB-one-shot-DS")  # median
    x, y = v["BOHB-one-shot-Blur"], v["BOHB-one-shot-DS"]
    assert (t["n_x"], t["n_y"], t["statistic"]) == (30, 30, "median")
    assert t["difference"] == pytest.approx(np.median(x) - np.median(y), abs=1e-12)
    assert t["ci_low"] <= t["difference"] <= t["ci_high"] and t["verdict"] == "holds"
    paper = {p: PAPER[("seq", "blur", "all", "das", p)] for p in ("BOHB-one-shot-Blur", "BOHB-one-shot-DS", "H1")}
    assert (t["paper_x"], t["paper_y"]) == (paper["BOHB-one-shot-Blur"][2], paper["BOHB-one-shot-DS"][2])
    assert t["paper_agrees"] == ("yes" if paper["BOHB-one-shot-Blur"][2] > paper["BOHB-one-shot-DS"][2] else "no")

    m = _claim_row(rows, "T3.10", "blur", "all", "H1", "BOHB-Blur")  # mean: Welch's t by hand
    a, b = v["H1"], v["BOHB-Blur"]
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    tt = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert m["difference"] == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    assert (m["p_greater"], m["p_less"]) == (pytest.approx(st.t.sf(tt, df), rel=1e-9),
                                             pytest.approx(st.t.cdf(tt, df), rel=1e-9))
    assert m["verdict"] == "does not hold" and m["paper_x"] == paper["H1"][1]  # the paper's mean column

    mx = _claim_row(rows, "T3.4", "blur", "all", "H1", "BOHB-one-shot-Blur")  # the maximum: its sign, no test
    assert mx["difference"] == pytest.approx(v["H1"].max() - v["BOHB-one-shot-Blur"].max(), abs=1e-12)
    assert mx["verdict"] == "does not hold (the maximum: no test)" and math.isnan(mx["p_greater"])
    assert mx["paper_x"] == paper["H1"][0]

    assert _claim_row(rows, "T3.2", "blur", "all", "BOHB-one-shot-Blur", "H1")["verdict"] == "does not hold"
    [t32] = [c for c in PRESET_CLAIMS if c.claim == "T3.2"]  # H2 = H1 + 0.04 dB: on par
    [h] = stats.preset_claims(recs, claims=[dataclasses.replace(t32, ops=("all",), x=("H2",), y=("H1",))])
    assert h["difference"] == pytest.approx(0.04, abs=1e-9) and h["verdict"].startswith("holds (on par")

    r = _claim_row(rows, "T3.1", "blur", "all", "BOHB-one-shot-Blur", "H1")
    rx = np.corrcoef(shots["BOHB-one-shot-Blur"], v["BOHB-one-shot-Blur"])[0, 1]
    ry = np.corrcoef(shots["H1"], v["H1"])[0, 1]
    assert (r["value_x"], r["value_y"]) == (pytest.approx(rx, abs=1e-12), pytest.approx(ry, abs=1e-12))
    norm, se = NormalDist(), math.sqrt(1 / 27)
    z = (math.atanh(rx) - math.atanh(ry)) / math.sqrt(2 / 27)
    assert r["p_greater"] == pytest.approx(norm.cdf(-z), rel=1e-9)
    assert r["p_less"] == pytest.approx(norm.cdf(z), rel=1e-9)
    q = norm.inv_cdf(0.975)
    (lx, ux), (ly, uy) = ((math.tanh(math.atanh(w) - q * se), math.tanh(math.atanh(w) + q * se)) for w in (rx, ry))
    assert r["ci_low"] == pytest.approx(rx - ry - math.sqrt((rx - lx) ** 2 + (uy - ry) ** 2), abs=1e-9)
    assert r["ci_high"] == pytest.approx(rx - ry + math.sqrt((ux - rx) ** 2 + (ry - ly) ** 2), abs=1e-9)
    assert r["verdict"] == "holds" and math.isnan(r["paper_x"]) and r["paper_agrees"] == ""
    lines = stats.preset_claim_sentences(rows)
    assert len(lines) == 8 and any(line.startswith("T3.8") and "1 comparison, holds 1" in line for line in lines)


def test_preset_claims_spread_by_hand():
    """"sd": the standard deviations, and Brown-Forsythe's test by hand (one-way ANOVA of the absolute
    deviations from each sample's median, F distribution), halved towards the larger one."""
    from das.study import PresetClaim

    recs, v, _ = _table3_records()
    claim = PresetClaim("X", "BOHB-Blur spreads more than H1", "higher", "sd", "seq", ("blur",), ("all",),
                        ("BOHB-Blur",), ("H1",))
    [r] = stats.preset_claims(recs, claims=[claim])
    a, b = v["BOHB-Blur"], v["H1"]
    assert (r["value_x"], r["value_y"]) == (pytest.approx(a.std(ddof=1)), pytest.approx(b.std(ddof=1)))
    za, zb = np.abs(a - np.median(a)), np.abs(b - np.median(b))
    grand = np.concatenate([za, zb]).mean()
    between = len(za) * (za.mean() - grand) ** 2 + len(zb) * (zb.mean() - grand) ** 2
    within = ((za - za.mean()) ** 2).sum() + ((zb - zb.mean()) ** 2).sum()
    p = st.f.sf(between / (within / (len(za) + len(zb) - 2)), 1, len(za) + len(zb) - 2)
    assert r["p_greater"] == pytest.approx(p / 2, rel=1e-9) and r["verdict"] == "holds"
    assert r["ci_low"] <= r["difference"] <= r["ci_high"]


def _variant(r, **change):
    """A record whose group differs in `change` (as a real specification's group would)."""
    g = json.loads(r["group"])
    g.update(change)
    return {**r, **{k: v for k, v in change.items() if k != "hparams"}, "group": json.dumps(g, sort_keys=True)}


def test_preset_claims_edge_cases():
    """Too few searches: no verdict. "at least": a small deficit within the margin is on par, a large one
    does not hold. Groups that differ in more than their preset (here the search order) are never set
    against each other; a preset name two groups share (other hyperparameters) is left out; a constant
    one-shot PSNR has no correlation."""
    from das.study import PresetClaim

    few = [record("cell", "blur", "good", "das", s, 15.0 + s, preset=p) for p in ("H1", "H2") for s in range(3)]
    rows = stats.preset_claims(few)
    assert {r["claim"] for r in rows} == {"T4.1"} and all(r["verdict"] == "not enough trials" for r in rows)

    claim = PresetClaim("X", "H1 at least H2", "at least", "median", "cell", ("blur",), ("good",), ("H1",), ("H2",))
    h1 = [record("cell", "blur", "good", "das", s, 18.0 + 0.01 * s, preset="H1") for s in range(30)]
    for shift, verdict in ((0.2, "holds (on par"), (3.0, "does not hold"), (-0.3, "holds (higher)")):
        h2 = [record("cell", "blur", "good", "das", s, 18.0 + shift + 0.01 * s, preset="H2") for s in range(30)]
        [r] = stats.preset_claims(h1 + h2, claims=[claim])
        assert r["verdict"].startswith(verdict), (shift, r["verdict"], r["ci_low"], r["ci_high"])

    order2 = [_variant(r, order=2) for r in h1[:]]
    low = [record("cell", "blur", "good", "das", s, 10.0 + 0.01 * s, preset="H2") for s in range(30)]
    high2 = [_variant(record("cell", "blur", "good", "das", s, 18.0 + 0.01 * s, preset="H2"), order=2)
             for s in range(30)]
    rows = stats.preset_claims([_variant(r, order=1) for r in low] + order2 + high2, claims=[claim])
    assert len(rows) == 1 and "order=2" in rows[0]["settings"].split() and rows[0]["verdict"].startswith("holds (on")

    other_h1 = [_variant(r, hparams={"alpha_lr": 0.5}) for r in h1]
    assert stats.preset_claims(h1 + other_h1 + high2, claims=[claim]) == []  # two "H1": which one?

    recs, _, _ = _table3_records(range(8))
    flat = [dict(r, one_shot_psnr=10.0) if r["preset"] == "H1" else r for r in recs]
    r = _claim_row(stats.preset_claims(flat), "T3.1", "blur", "all", "BOHB-one-shot-Blur", "H1")
    assert r["verdict"].startswith("no value") and math.isnan(r["value_y"])


def test_preset_claims_between_two_methods():
    """Figure 5's statements set DAS-single against DAS: y is taken from y_method's trials, not from
    x's method under the same preset name."""
    das = [record("seq", "blur", "all", "das", s, 22.0 + 0.01 * s, preset="BOHB-one-shot-Blur") for s in range(20)]
    das += [record("seq", "blur", "all", "das", s, 30.0 + s, preset="BOHB-DAS-single") for s in range(20)]
    single = [record("seq", "blur", "all", "das-single", s, 20.0 + 0.1 * s, preset="BOHB-DAS-single")
              for s in range(20)]
    rows = {r["claim"]: r for r in stats.preset_claims(das + single)}
    assert set(rows) == {"F5.3", "F5.4"}  # F5.1 and F5.2 need DAS under H1 or H2
    r = rows["F5.3"]
    assert (r["method"], r["y_method"], r["value_x"], r["value_y"]) == ("das", "das-single", pytest.approx(22.19),
                                                                         pytest.approx(21.9))
    assert r["verdict"].startswith("holds") and "DAS-single BOHB-DAS-single" in stats.preset_claim_sentences([r])[0]
    sd = rows["F5.4"]  # DAS (0.01 dB steps) spreads less than DAS-single (0.1 dB steps)
    assert sd["value_x"] < sd["value_y"] and sd["verdict"] == "does not hold"
    assert not [r for r in stats.preset_claims(das) if r["claim"].startswith("F5")]  # no DAS-single trials
