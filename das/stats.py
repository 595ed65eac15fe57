"""Statistics over trials (docs/spec.md §7-8): per-group summaries with bootstrap intervals, correlations of
one-shot and architecture PSNR, random draws needed to beat DAS, verdicts for the paper's claims,
search diagnostics from alpha, and the one-shot ranking of candidate architectures.

Every function takes the flat per-trial records of `das.collect.load_trials` (one dict per trial,
with `group`, `space`, `data`, `ops`, `method`, `preset`, `seed`, `one_shot_psnr`,
`architecture_psnr`, ...). Records that share `group` are pooled; other groups never are.

Rules, stated once here and quoted in the output:
- A missing or non-finite PSNR is counted (`n_nonfinite`) and kept out of the statistics.
- 95% intervals: scipy.stats.bootstrap, BCa; the percentile method where BCa is degenerate
  (fewer than 3 values, all values equal, or a BCa bound that is not finite).
- A claim needs at least MIN_N finite values in every group it compares, else "not enough trials";
  the tests count searches, not retrains (the retrains of one search are averaged first).
- A claim "holds" when its one-sided test gives p < ALPHA, "does not hold" when the test in the
  opposite direction does, and is "undecided" otherwise (claims (b) and (d) add a margin, below).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime

import numpy as np
from scipy import stats as st

from das.spec import SETTINGS
from das.vocab import BEST_OF_RANDOM, METHODS, OP_SETS, RANDOM, UNDER_STUDY, display, has_alphas, order

MIN_N = 5             # fewest finite values per group for a verdict
ALPHA = 0.05          # significance level of every verdict
CONFIDENCE = 0.95     # level of every interval
RESAMPLES = 2000      # bootstrap resamples
MATCH_MARGIN_DB = 0.5  # claim (b): medians "match" when the difference interval lies within +-0.5 dB
WEAK_R = 0.5          # claim (d): a correlation is weak when the upper Fisher-z bound of r is below 0.5
SPEC = ("space", "data", "ops", "method", "preset")
# the columns of each table of rows, so a table with no rows is still a table (a CSV header)
CORRELATION_COLUMNS = ["group", *SPEC, "n", "pearson_r", "pearson_ci_low", "pearson_ci_high", "pearson_p",
                       "spearman_rho", "spearman_p", "kendall_tau", "kendall_p"]
DRAWS_COLUMNS = ["group", *SPEC, "das_median", "pool", "p", "expected", "median", "p_budget", "budget", "target"]
VERDICT_COLUMNS = ["claim", "what", "verdict", "text"]
DIAGNOSTICS_COLUMNS = ["group", *SPEC, "trials", "rows", "n_ops", "init_deviation", "final_deviation",
                       "final_entropy", "same_argmax", "chance", "same_argmax_rows", "p_same_argmax"]
RANKING_COLUMNS = ["scope", "group", *SPEC, "seed", "n", "kendall_tau", "kendall_p", "spearman_rho", "spearman_p"]
SPREAD_COLUMNS = ["group", *SPEC, "searches", "retrains", "within_sd_median", "between_sd", "within_share"]
PRESET_COLUMNS = ["space", "data", "ops", "method", "settings", "presets", "n_min", "no_values", "best_preset",
                  "best_median", "worst_preset",
                  "worst_median", "range", "within_iqr", "kruskal_h", "kruskal_p", "paper_presets", "paper_range",
                  "paper_best", "kendall_tau_paper", "verdict"]


# ----------------------------------------------------------------------------- basics
def finite(values) -> tuple[np.ndarray, int]:
    """The finite numbers among values (None, NaN, inf and non-numbers left out) and how many were left out."""
    kept = []
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            kept.append(float(v))
    return np.asarray(kept, dtype=float), len(values) - len(kept)


def _hparams(r: dict):
    return json.dumps(r.get("hparams"), sort_keys=True)


def comparable_key(record: dict) -> tuple:
    """Space, data, op set, preset (as shown: with its non-default settings) and every setting that
    separates comparable groups (das.spec: `comparable`): the panels of a figure."""
    return ((record.get("space"), record.get("data"), record.get("ops"), record.get("preset"))
            + tuple(record.get(s.name) for s in SETTINGS if s.comparable))


def _applies(s, r: dict) -> bool:
    try:
        return bool(s.applies(r))
    except (KeyError, TypeError):  # an unknown op set or method: the setting is taken as applying
        return True


def comparable(a: dict, b: dict, **change) -> bool:
    """Trial b may be compared with trial a, or with a's counterpart under `change` (another op set or
    space): b has the space, data, op set and hyperparameter values of {a, change}, and every
    comparable setting equal where it can change both a and b (das.spec: a setting that applies to
    one of them only, such as the noise op's sigma for good against all ops, or the cell's output for
    the sequential against the cell space, does not separate them)."""
    want = {**a, **change}
    if any(want.get(k) != b.get(k) for k in ("space", "data", "ops")) or _hparams(a) != _hparams(b):
        return False
    for s in SETTINGS:
        both = s.applies is None or _applies(s, a) and _applies(s, b)
        if s.comparable and both and a.get(s.name) != b.get(s.name):
            return False
    return True


def _when(text):
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp() if isinstance(text, str) else None
    except ValueError:
        return None


def wall_clock(records) -> dict:
    """How long a set of trials took on the clock: the length of the union of their [started,
    finished] intervals (provenance; a DAS trial from its search's start), so trials run side by
    side count once and a study run over several sessions counts only the time it ran. Also the
    sum of the intervals (trial-hours) and how many records had no times (older ones)."""
    spans = sorted((a, b) for a, b in ((_when(r.get("started")), _when(r.get("finished"))) for r in records)
                   if a is not None and b is not None and b >= a)
    union, end = 0.0, -math.inf
    for a, b in spans:
        if b > end:
            union += b - max(a, end)
            end = b
    return {"trials": len(spans), "untimed": len(records) - len(spans), "wall_hours": union / 3600,
            "trial_hours": sum(b - a for a, b in spans) / 3600,
            "first": min((a for a, _ in spans), default=None), "last": max((b for _, b in spans), default=None)}


def group_records(records) -> dict[str, list[dict]]:
    """Records by their `group` key, in a stable order."""
    groups = defaultdict(list)
    for r in records:
        groups[r["group"]].append(r)
    return dict(sorted(groups.items(), key=lambda kv: _order(kv[1][0])))


def _order(r: dict) -> tuple:
    return (str(r.get("space")), str(r.get("data")), str(r.get("preset")), order("ops", r.get("ops")),
            order("method", r.get("method")), str(r.get("group")))


DEVIATION_COLUMNS = ["cells", "n_cells", "mad", "mean_difference", "above", "paper_in_ci", "kendall_tau",
                     "kendall_p"]


def paper_deviation(summary) -> list[dict]:
    """How far our medians sit from the paper's: per paper table and over all of Tables 1 and 2
    (preset H1), over the cells with a paper median and a finite one of ours: the mean absolute
    deviation (MAD, dB, the readings screen's score), the mean signed difference, how many cells
    lie above the paper's, in how many the paper's median is inside our 95% interval, and Kendall's
    tau (with its p-value) between the two orderings."""
    from das.study import paper_value

    parts = defaultdict(list)
    for s in summary:
        paper = paper_value(s["space"], s["data"], s["ops"], s["method"], s["preset"])
        if paper is None or not math.isfinite(s.get("median", float("nan"))):
            continue
        if s["preset"] == "H1":
            table = "Table 1 (sequential, H1)" if s["space"] == "seq" else "Table 2 (cell, H1)"
            parts[table].append((s, paper[2]))
            parts["Tables 1 and 2 (H1)"].append((s, paper[2]))
        else:
            parts[f"Table {3 if s['space'] == 'seq' else 4} (other presets)"].append((s, paper[2]))
    rows = []
    for name in sorted(parts):
        ours = np.array([s["median"] for s, _ in parts[name]])
        theirs = np.array([p for _, p in parts[name]])
        inside = sum(bool(math.isfinite(s["median_ci_low"]) and s["median_ci_low"] <= p <= s["median_ci_high"])
                     for s, p in parts[name])
        tau = st.kendalltau(ours, theirs) if len(ours) > 2 else None
        rows.append({"cells": name, "n_cells": len(ours), "mad": float(np.mean(np.abs(ours - theirs))),
                     "mean_difference": float(np.mean(ours - theirs)), "above": int(np.sum(ours > theirs)),
                     "paper_in_ci": int(inside), "kendall_tau": float(tau.statistic) if tau else float("nan"),
                     "kendall_p": float(tau.pvalue) if tau else float("nan")})
    return rows


def bootstrap_interval(values, statistic=np.median, seed=0, resamples=RESAMPLES) -> tuple[float, float, str]:
    """95% interval of statistic(values): (low, high, method), method 'BCa', 'percentile' or 'none' (n < 2)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan"), "none"
    if np.ptp(v) == 0:  # every resample gives the same value: BCa divides by zero
        return float(statistic(v)), float(statistic(v)), "percentile"
    method = "BCa" if len(v) >= 3 else "percentile"
    return _bootstrap((v,), lambda x, axis: statistic(x, axis=axis), seed, resamples, method)


def median_difference_interval(x, y, seed=0, resamples=RESAMPLES) -> tuple[float, float, str]:
    """95% interval of median(x) - median(y) for independent samples: (low, high, method)."""
    return difference_interval(x, y, np.median, seed, resamples)


def _bootstrap(data, statistic, seed, resamples, method):
    import warnings

    def run(m):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns where BCa degenerates; the fallback handles it
            res = st.bootstrap(data, statistic, n_resamples=resamples, confidence_level=CONFIDENCE,
                               method=m, vectorized=True, paired=False, random_state=np.random.default_rng(seed))
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    if method == "BCa":
        lo, hi = run("BCa")
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi, "BCa"
    lo, hi = run("percentile")
    return lo, hi, "percentile"


# ----------------------------------------------------------------------------- summaries
def group_summary(records, seed=0, resamples=RESAMPLES) -> list[dict]:
    """One row per group: n, n_nonfinite, max/mean/median/std/min of architecture PSNR, 95% intervals
    of median and mean, one-shot PSNR mean/median, mean runtime per trial in seconds, and a note."""
    rows = []
    for g, rs in group_records(records).items():
        arch, bad = finite([r.get("architecture_psnr") for r in rs])
        one, _ = finite([r.get("one_shot_psnr") for r in rs])
        # runtime of the trials the numbers describe (those with a finite architecture PSNR)
        secs, _ = finite([sum((r.get("wall_seconds") or {}).values()) if r.get("wall_seconds") else None
                          for r in rs if isinstance(r.get("architecture_psnr"), (int, float))
                          and math.isfinite(r["architecture_psnr"])])
        row = {"group": g, **{k: rs[0].get(k) for k in SPEC}, "n": len(arch), "n_nonfinite": bad}
        for setting in SETTINGS:
            row[setting.name] = rs[0].get(setting.name)
        nan = float("nan")
        if len(arch):
            mlo, mhi, mmeth = bootstrap_interval(arch, np.median, seed, resamples)
            alo, ahi, _ = bootstrap_interval(arch, np.mean, seed, resamples)
            row.update(max=float(arch.max()), mean=float(arch.mean()), median=float(np.median(arch)),
                       std=float(arch.std(ddof=1)) if len(arch) > 1 else nan, min=float(arch.min()),
                       median_ci_low=mlo, median_ci_high=mhi, mean_ci_low=alo, mean_ci_high=ahi, ci_method=mmeth)
        else:
            row.update(max=nan, mean=nan, median=nan, std=nan, min=nan, median_ci_low=nan, median_ci_high=nan,
                       mean_ci_low=nan, mean_ci_high=nan, ci_method="none")
        row.update(n_one_shot=len(one), one_shot_mean=float(one.mean()) if len(one) else nan,
                   one_shot_median=float(np.median(one)) if len(one) else nan,
                   seconds=float(secs.mean()) if len(secs) else nan)
        row["note"] = (f"{bad} of {len(rs)} trials without a finite architecture PSNR left out" if bad else "")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- correlations
def correlation(x, y) -> dict:
    """Pearson r with its Fisher-z 95% interval, Spearman rho and Kendall tau, each with its p-value."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    nan = float("nan")
    out = {"n": n, "pearson_r": nan, "pearson_ci_low": nan, "pearson_ci_high": nan, "pearson_p": nan,
           "spearman_rho": nan, "spearman_p": nan, "kendall_tau": nan, "kendall_p": nan}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    r, p = st.pearsonr(x, y)
    out.update(pearson_r=float(r), pearson_p=float(p))
    if n > 3:
        z, half = np.arctanh(np.clip(r, -0.999999, 0.999999)), st.norm.ppf(0.5 + CONFIDENCE / 2) / math.sqrt(n - 3)
        out.update(pearson_ci_low=float(np.tanh(z - half)), pearson_ci_high=float(np.tanh(z + half)))
    rho, sp = st.spearmanr(x, y)
    tau, kp = st.kendalltau(x, y)
    out.update(spearman_rho=float(rho), spearman_p=float(sp), kendall_tau=float(tau), kendall_p=float(kp))
    return out


def paired_psnr(rs) -> tuple[np.ndarray, np.ndarray]:
    """(one-shot, architecture) PSNR, one pair per search (its retrains averaged), where both are finite."""
    by_seed = defaultdict(list)
    for r in rs:
        if len(finite([r.get("one_shot_psnr"), r.get("architecture_psnr")])[0]) == 2:
            by_seed[r.get("seed")].append((float(r["one_shot_psnr"]), float(r["architecture_psnr"])))
    if not by_seed:
        return np.zeros(0), np.zeros(0)
    x, y = np.asarray([np.mean(p, axis=0) for p in by_seed.values()], float).T
    return x, y


def correlations(records) -> list[dict]:
    """One-shot vs architecture PSNR correlation per search group (DAS and DAS-single)."""
    rows = []
    for g, rs in group_records(records).items():
        if not has_alphas(rs[0].get("method")):
            continue
        x, y = paired_psnr(rs)
        if len(x) < 3:
            continue
        rows.append({"group": g, **{k: rs[0].get(k) for k in SPEC}, **correlation(x, y)})
    return rows


# ----------------------------------------------------------------------------- random draws
def random_pool(records, like: dict) -> np.ndarray:
    """Finite architecture PSNRs of every random architecture trained with the specification of `like`
    (the trials of a method of role random, and every candidate of those of role random-search)."""
    pool = []
    for r in records:
        role = _role(r.get("method"))
        if role not in (RANDOM, BEST_OF_RANDOM) or not comparable(r, like):
            continue
        if role == RANDOM:
            pool.append(r.get("architecture_psnr"))
        else:
            pool += [c.get("architecture_psnr") for c in (r.get("candidates") or []) if isinstance(c, dict)]
    return finite(pool)[0]


def draws_to_beat(pool, target, budget=5) -> dict:
    """Random draws needed to beat `target`, in closed form: with p = share of the pool above target,
    the draws are geometric, expected 1/p, median ceil(log 0.5 / log(1 - p)); also the chance that the
    best of `budget` draws beats it, 1 - (1 - p)^budget."""
    pool = np.asarray(pool, float)
    p = float((pool > target).mean()) if len(pool) else float("nan")
    if not len(pool) or p == 0:
        return {"pool": len(pool), "p": p, "expected": float("inf"), "median": float("inf"), "p_budget": 0.0 * p,
                "budget": budget, "target": float(target)}
    med = 1.0 if p == 1 else float(math.ceil(math.log(0.5) / math.log(1 - p)))
    return {"pool": len(pool), "p": p, "expected": 1 / p, "median": med, "p_budget": 1 - (1 - p) ** budget,
            "budget": budget, "target": float(target)}


def draws_table(records, summary) -> list[dict]:
    """Draws to beat the DAS median, per DAS group that has random architectures beside it."""
    rows = []
    by_group = group_records(records)
    for s in summary:
        if _role(s["method"]) != UNDER_STUDY or not s["n"]:
            continue
        pool = random_pool(records, by_group[s["group"]][0])
        if len(pool):
            rows.append({"group": s["group"], **{k: s[k] for k in SPEC}, "das_median": s["median"],
                         **draws_to_beat(pool, s["median"])})
    return rows


# ----------------------------------------------------------------------------- claims
def compare(x, y, seed=0, resamples=RESAMPLES) -> dict:
    """One-sided Mann-Whitney U of x > y (and of y > x) and the 95% interval of median(x) - median(y)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    out = {"n_x": len(x), "n_y": len(y), "median_x": float(np.median(x)) if len(x) else float("nan"),
           "median_y": float(np.median(y)) if len(y) else float("nan")}
    out["difference"] = out["median_x"] - out["median_y"]
    if min(len(x), len(y)) < 1:
        out.update(p_greater=float("nan"), p_less=float("nan"), ci_low=float("nan"), ci_high=float("nan"),
                   ci_method="none")
        return out
    out["p_greater"] = float(st.mannwhitneyu(x, y, alternative="greater").pvalue)
    out["p_less"] = float(st.mannwhitneyu(x, y, alternative="less").pvalue)
    out["ci_low"], out["ci_high"], out["ci_method"] = median_difference_interval(x, y, seed, resamples)
    return out


def _verdict_text(claim, what, c, verdict, name_x, name_y) -> dict:
    text = (f"({claim}) {what}: {verdict}. One-sided Mann-Whitney U, {name_x} > {name_y}: "
            f"p = {c['p_greater']:.3g}; median difference {c['difference']:.2f} dB, "
            f"95% {c['ci_method']} interval [{c['ci_low']:.2f}, {c['ci_high']:.2f}] dB; "
            f"n = {c['n_x']} vs {c['n_y']}")
    return {"claim": claim, "what": what, "verdict": verdict, "text": text, **c}


def _shift_verdict(c, min_n=MIN_N, alpha=ALPHA) -> str:
    if min(c["n_x"], c["n_y"]) < min_n:
        return "not enough trials"
    if c["p_greater"] < alpha:
        return "holds"
    if c["p_less"] < alpha:
        return "does not hold"
    return "undecided"


def _arch(rs) -> np.ndarray:
    """One architecture PSNR per independent trial: the retrains of one search (same seed, several
    retrain seeds) are averaged, so a test never counts one search as several samples."""
    by_seed = defaultdict(list)
    for r in rs:
        by_seed[r.get("seed")].append(r.get("architecture_psnr"))
    means = []
    for values in by_seed.values():
        v = finite(values)[0]
        if len(v):
            means.append(float(v.mean()))
    return np.asarray(means, dtype=float)


def _b_verdict(c, min_n, alpha) -> str:
    """Claim (b): random search (x) matches or beats DAS (y)."""
    if min(c["n_x"], c["n_y"]) < min_n:
        return "not enough trials"
    if c["p_greater"] < alpha:
        return "holds (random search beats DAS)"
    if c["p_less"] < alpha:
        return "does not hold"
    if -MATCH_MARGIN_DB <= c["ci_low"] and c["ci_high"] <= MATCH_MARGIN_DB:
        return f"holds (medians match within +-{MATCH_MARGIN_DB:.2f} dB)"
    return "undecided"


def _role(method) -> str:
    m = METHODS.get(method)
    return m.role if m is not None else "unknown"


def _harmful(ops) -> bool | None:
    o = OP_SETS.get(ops)
    return None if o is None else o.harmful


def _das_verdicts(rs, matches, ambiguous, seed, resamples, min_n, alpha) -> list[dict]:
    """Claims (a), (b), (c), (e) for one group of the method under study (role UNDER_STUDY) against every
    comparable group of the other side. Which claims a group takes part in follows its op set
    (das.vocab.OpSet.harmful, superset_of): an op set the registry does not know takes part in none."""
    r0, das, out = rs[0], _arch(rs), []
    where = f"{r0.get('space')}/{r0.get('data')}/{r0.get('ops')}/{r0.get('preset')}"
    others = []

    def tag(other_group):  # where several groups share a specification, name both
        return f"{where} [{r0['group']} vs {other_group}]" if ambiguous or len(others) > 1 else where

    def add(claim, what, x, y, other_group, name_x, name_y, rule):
        c = compare(x, y, seed, resamples)
        out.append(_verdict_text(claim, f"{tag(other_group)}: {what}", c, rule(c, min_n, alpha), name_x, name_y))

    harmful = _harmful(r0.get("ops"))
    if harmful:
        for role in (RANDOM, BEST_OF_RANDOM):
            for method in [m for m, v in METHODS.items() if v.role == role]:
                name = display("method", method).lower()
                others = [m for m in matches(r0, method) if len(m[0])]
                for base, g in others:
                    add("a", f"DAS beats {name} with harmful ops", das, base, g, "DAS", name, _shift_verdict)
        harmless = OP_SETS[r0["ops"]].superset_of
        if harmless is not None:
            others = [m for m in matches(r0, r0["method"], ops=harmless) if len(m[0])]
            for good, g in others:
                add("c", "DAS loses median PSNR when harmful ops are added", good, das, g,
                    f"DAS {display('ops', harmless, short=True)}", f"DAS {display('ops', r0['ops'], short=True)}",
                    _shift_verdict)
    elif harmful is False:
        for method in [m for m, v in METHODS.items() if v.role == BEST_OF_RANDOM]:
            others = [m for m in matches(r0, method) if len(m[0])]
            for rsearch, g in others:
                add("b", "random search matches or beats DAS with good ops", rsearch, das, g, "random search", "DAS",
                    _b_verdict)
    if r0.get("space") == "seq":
        others = [m for m in matches(r0, r0["method"], space="cell") if len(m[0])]
        for cell, g in others:
            add("e", "the cell space scores lower than the sequential one", das, cell, g, "sequential", "cell",
                _shift_verdict)
    return out


def verdicts(records, seed=0, resamples=RESAMPLES, min_n=MIN_N, alpha=ALPHA) -> list[dict]:
    """The paper's claims (a)-(e), each judged per data formation and preset by a stated test
    (docs/readings.md states them); "DAS" is every method of role UNDER_STUDY, "random" and "random
    search" those of roles RANDOM and BEST_OF_RANDOM, "harmful" and "good" ops the op sets with
    and without a harmful op (das.vocab).

    (a) harmful ops: DAS > random, DAS > random search (one test each).
    (b) good ops: random search matches or beats DAS. Holds when random search is higher (one-sided
        p < alpha) or when the interval of median(random search) - median(DAS) lies within
        +-MATCH_MARGIN_DB; does not hold when DAS is higher (p < alpha); undecided otherwise.
    (c) DAS on the harmless op set > DAS on its superset with harmful ops.
    (d) one-shot and architecture PSNR correlate weakly: holds when the upper Fisher-z bound of
        Pearson r is below WEAK_R, does not hold when the lower bound is above WEAK_R.
    (e) sequential DAS > cell DAS (same data, ops and preset).
    """
    groups = group_records(records)
    by_method = defaultdict(list)  # method -> its groups, never merged
    for g, rs in groups.items():
        by_method[rs[0].get("method")].append(rs)
    out = []

    def matches(r0, method, **change):
        return [(_arch(rs), rs[0]["group"]) for rs in by_method.get(method, []) if comparable(r0, rs[0], **change)]

    for method, method_groups in by_method.items():
        if _role(method) != UNDER_STUDY:
            continue
        for rs in method_groups:
            ambiguous = any(other is not rs and comparable(rs[0], other[0]) for other in method_groups)
            out += _das_verdicts(rs, matches, ambiguous, seed, resamples, min_n, alpha)
    for c in correlations(records):
        if _role(c["method"]) != UNDER_STUDY:
            continue
        where = f"{c['space']}/{c['data']}/{c['ops']}/{c['preset']}"
        if c["n"] < min_n or not math.isfinite(c["pearson_ci_high"]):
            v = "not enough trials"
        elif c["pearson_ci_high"] < WEAK_R:
            v = "holds"
        elif c["pearson_ci_low"] > WEAK_R:
            v = "does not hold"
        else:
            v = "undecided"
        interval = (f"95% Fisher-z interval [{c['pearson_ci_low']:.2f}, {c['pearson_ci_high']:.2f}]"
                    if math.isfinite(c["pearson_ci_high"]) else "no Fisher-z interval below 4 trials")
        text = (f"(d) {where}: one-shot and architecture PSNR correlate weakly: {v}. Pearson r = "
                f"{c['pearson_r']:.2f}, {interval} (weak: upper bound below {WEAK_R:.2f}), "
                f"p = {c['pearson_p']:.3g}; Spearman rho = "
                f"{c['spearman_rho']:.2f} (p = {c['spearman_p']:.3g}); Kendall tau = {c['kendall_tau']:.2f} "
                f"(p = {c['kendall_p']:.3g}); n = {c['n']}")
        out.append({"claim": "d", "what": f"{where}: weak correlation", "verdict": v, "text": text, **c})
    return sorted(out, key=lambda v: (v["claim"], v["what"]))


# ----------------------------------------------------------------------------- search diagnostics
def _rows(a):
    a = np.asarray(a, dtype=float)
    return a if a.ndim == 2 and a.size else None


def alpha_diagnostics(records) -> list[dict]:
    """Per search group, from alphas_init and alphas (softmax rows, one per layer or edge):
    mean over rows of max |softmax - uniform| at the start and at the end, mean normalised entropy
    (1 = uniform) at the end, and the share of rows whose final argmax equals the initial argmax
    (rows with a tied initial argmax left out), with a binomial test against chance 1/K."""
    rows = []
    for g, rs in group_records(records).items():
        if not has_alphas(rs[0].get("method")):
            continue
        init_dev, final_dev, entropy, same, counted, trials = [], [], [], 0, 0, 0
        k = None
        for r in rs:
            a, a0 = _rows(r.get("alphas") or []), _rows(r.get("alphas_init") or [])
            if a is None or a0 is None or a.shape != a0.shape or not np.isfinite(a).all():
                continue
            trials += 1
            k = a.shape[1]
            final_dev += list(np.abs(a - 1 / k).max(axis=1))
            init_dev += list(np.abs(a0 - 1 / k).max(axis=1))
            p = np.clip(a, 1e-12, 1)
            entropy += list(-(p * np.log(p)).sum(axis=1) / math.log(k))
            top2 = np.sort(a0, axis=1)[:, -2:]
            untied = top2[:, 1] - top2[:, 0] > 1e-9
            same += int((a.argmax(1) == a0.argmax(1))[untied].sum())
            counted += int(untied.sum())
        if not trials:
            continue
        share = same / counted if counted else float("nan")
        p_binom = float(st.binomtest(same, counted, 1 / k, alternative="greater").pvalue) if counted else float("nan")
        row = {"group": g, **{f: rs[0].get(f) for f in SPEC}, "trials": trials, "rows": len(final_dev),
               "n_ops": k, "init_deviation": float(np.mean(init_dev)), "final_deviation": float(np.mean(final_dev)),
               "final_entropy": float(np.mean(entropy)), "same_argmax": share, "chance": 1 / k,
               "same_argmax_rows": counted, "p_same_argmax": p_binom}
        row["sentence"] = decided_sentence(row)
        rows.append(row)
    return rows


def decided_sentence(d: dict, moved=0.05) -> str:
    """Whether the search or its initialisation decided the architecture, in numbers.
    Rule: alpha 'barely moved' when the mean final max |softmax - uniform| is below `moved`; the
    initialisation decided when the final argmax equals the initial one significantly more often than
    chance (binomial test, p < ALPHA); the search decided otherwise."""
    where = f"{d['space']}/{d['data']}/{d['ops']}/{d['method']}/{d['preset']}"
    nums = (f"max |softmax - uniform| {d['init_deviation']:.3f} at the start and {d['final_deviation']:.3f} at "
            f"the end (mean over {d['rows']} rows of {d['trials']} trials), normalised entropy "
            f"{d['final_entropy']:.2f} (1 = uniform); the final argmax equals the initial one in "
            f"{100 * d['same_argmax']:.1f}% of rows (chance {100 * d['chance']:.1f}%, binomial p = {d['p_same_argmax']:.3g})")
    if d["final_deviation"] < moved:
        who = f"alpha barely moved from uniform (below {moved:.2f}): the search did not decide the architecture"
    elif d["p_same_argmax"] < ALPHA:
        who = "the initialisation decided the architecture more often than chance"
    else:
        who = "the search decided the architecture, not its initialisation"
    return f"{where}: {who}; {nums}."


# ----------------------------------------------------------------------------- one-shot ranking
def genotype_key(g) -> str:
    """A canonical string of a genotype's choices (layers or edges), to match one architecture across files."""
    if not isinstance(g, dict):
        return json.dumps(g, sort_keys=True)
    return json.dumps({"layers": g.get("layers"), "edges": g.get("edges")}, sort_keys=True)


def ranking_pairs(records) -> list[dict]:
    """Per search with a one_shot_ranking, the (one-hot supernet PSNR, stand-alone PSNR) pairs of the
    candidates that a random-search record with the same seed and specification trained."""
    searches = defaultdict(list)  # seed -> the random searches of that seed
    for r in records:
        if _role(r.get("method")) == BEST_OF_RANDOM and r.get("candidates"):
            searches[r.get("seed")].append(r)
    out, seen = [], set()
    for r in records:
        if not r.get("one_shot_ranking"):
            continue
        tag = (r.get("group"), r.get("seed"))
        if tag in seen:  # several retrains of one search carry the same ranking
            continue
        rs = next((v for v in searches.get(r.get("seed"), []) if comparable(v, r)), None)
        if rs is None:
            continue
        stand = {genotype_key(c.get("genotype")): c.get("architecture_psnr") for c in rs["candidates"]}
        pairs = []
        for e in r["one_shot_ranking"]:
            y = stand.get(genotype_key(e.get("genotype")))
            if len(finite([e.get("one_hot_psnr"), y])[0]) == 2:
                pairs.append((float(e["one_hot_psnr"]), float(y)))
        if pairs:
            seen.add(tag)
            out.append({"group": r.get("group"), **{k: r.get(k) for k in SPEC}, "seed": r.get("seed"),
                        "pairs": pairs})
    return out


def ranking_correlations(records) -> list[dict]:
    """Kendall tau and Spearman rho between one-hot supernet PSNR and stand-alone PSNR, per search
    (scope 'search') and pooled over the searches of a group (scope 'pooled')."""
    rows, pooled = [], defaultdict(list)
    for s in ranking_pairs(records):
        x, y = np.asarray(s["pairs"]).T
        c = correlation(x, y)
        rows.append({"scope": "search", **{k: s[k] for k in ("group", *SPEC, "seed")}, "n": len(x),
                     "kendall_tau": c["kendall_tau"], "kendall_p": c["kendall_p"],
                     "spearman_rho": c["spearman_rho"], "spearman_p": c["spearman_p"]})
        pooled[s["group"]].append(s)
    for g, ss in pooled.items():
        x, y = np.asarray([p for s in ss for p in s["pairs"]]).T
        c = correlation(x, y)
        rows.append({"scope": "pooled", "group": g, **{k: ss[0][k] for k in SPEC}, "seed": None, "n": len(x),
                     "kendall_tau": c["kendall_tau"], "kendall_p": c["kendall_p"],
                     "spearman_rho": c["spearman_rho"], "spearman_p": c["spearman_p"]})
    return rows


def retrain_spread(records) -> list[dict]:
    """How much of the spread of DAS results is the retraining seed: per search group, the searches
    retrained under two or more seeds, the standard deviation of architecture PSNR over a search's
    retrain seeds (its median over searches), the standard deviation between the searches' means,
    and the share of the total variance that lies within searches (one-way decomposition)."""
    by: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        if has_alphas(r.get("method")) and r.get("retrain_seed") is not None:
            v = r.get("architecture_psnr")
            if isinstance(v, (int, float)) and np.isfinite(v):
                by[(r["group"], r["seed"])].append(float(v))
    groups: dict[str, list[list[float]]] = defaultdict(list)
    first = {}
    for r in records:
        first.setdefault(r.get("group"), r)
    for (g, _), values in by.items():
        if len(values) >= 2:
            groups[g].append(values)
    rows = []
    for g, searches in groups.items():
        means = np.array([np.mean(v) for v in searches])
        within = np.array([np.var(v, ddof=1) for v in searches])
        total = np.var(np.concatenate([np.asarray(v) for v in searches]), ddof=1)
        r0 = first[g]
        rows.append({"group": g, **{k: r0.get(k) for k in SPEC}, "searches": len(searches),
                     "retrains": sum(len(v) for v in searches),
                     "within_sd_median": float(np.median(np.sqrt(within))),
                     "between_sd": float(np.std(means, ddof=1)) if len(means) > 1 else float("nan"),
                     "within_share": float(np.mean(within) / total) if total > 0 else float("nan")})
    return rows


# ----------------------------------------------------------------------------- hyperparameter presets
def preset_sensitivity(records, alpha=ALPHA, min_n=MIN_N) -> list[dict]:
    """Whether a search method 'hangs on its hyperparameters' (the paper's Tables 3 and 4): per space,
    data formation, op set, method and comparable settings with two or more presets (groups), the
    median of architecture PSNR per preset (one value per search), the best and the worst preset and
    the range between them, the median of the interquartile ranges over seeds of the presets with at
    least min_n searches (the spread one preset has by itself), the Kruskal-Wallis test that all
    presets give the same distribution, and the paper's range and best preset over the same presets,
    with Kendall's tau between the orderings. A preset without a finite value (every search diverged)
    is named in `no_values` and left out of the numbers. Verdict: the presets differ when p < alpha
    (each compared preset with at least min_n searches). Presets are told apart by group, so two
    groups shown under one name (another hyperparameter set of the same name) are not pooled."""
    from das.study import paper_value

    comparable_settings = [s for s in SETTINGS if s.comparable]
    by: dict[tuple, dict[str, list[dict]]] = defaultdict(dict)
    for g, rs in group_records(records).items():
        r0 = rs[0]
        if not has_alphas(r0.get("method")):
            continue
        key = (r0.get("space"), r0.get("data"), r0.get("ops"), r0.get("method")) + tuple(
            r0.get(s.name) for s in comparable_settings)
        name, k = str(r0.get("preset")), 2
        while name in by[key]:  # another group under the same name: keep it apart
            name, k = f"{r0.get('preset')} ({k})", k + 1
        by[key][name] = rs
    rows = []
    for key, presets in by.items():
        if len(presets) < 2:
            continue
        space, data, ops, method = key[:4]
        values = {p: v for p, v in ((p, _arch(rs)) for p, rs in presets.items()) if len(v)}
        if len(values) < 2:
            continue
        medians = {p: float(np.median(v)) for p, v in values.items()}
        best, worst = max(medians, key=medians.get), min(medians, key=medians.get)
        n_min = min(len(v) for v in values.values())
        try:
            h, p = st.kruskal(*values.values())
            h, p = float(h), float(p)
        except ValueError:  # every value identical: no difference to find
            h, p = 0.0, 1.0
        paper = {q: paper_value(space, data, ops, method, q) for q in medians}
        paper = {q: v[2] for q, v in paper.items() if v is not None}
        shared = sorted(paper)
        tau = (float(st.kendalltau([medians[q] for q in shared], [paper[q] for q in shared]).statistic)
               if len(shared) >= 3 else float("nan"))
        iqrs = [np.subtract(*np.percentile(v, [75, 25])) for v in values.values() if len(v) >= min_n]
        if n_min < min_n:
            verdict = "not enough trials"
        else:
            verdict = "the presets differ" if p < alpha else "no difference between presets detected"
        settings = " ".join(f"{s.name}={v}" for s, v in zip(comparable_settings, key[4:]) if v != s.default)
        rows.append({"space": space, "data": data, "ops": ops, "method": method, "settings": settings,
                     "presets": len(medians), "n_min": n_min, "no_values": " ".join(sorted(set(presets) - set(values))),
                     "best_preset": best, "best_median": medians[best], "worst_preset": worst,
                     "worst_median": medians[worst], "range": medians[best] - medians[worst],
                     "within_iqr": float(np.median(iqrs)) if iqrs else float("nan"),
                     "kruskal_h": h, "kruskal_p": p, "paper_presets": len(shared),
                     "paper_range": (max(paper.values()) - min(paper.values())) if len(shared) >= 2 else float("nan"),
                     "paper_best": max(paper, key=paper.get) if len(shared) >= 2 else "",
                     "kendall_tau_paper": tau, "verdict": verdict})
    return sorted(rows, key=lambda r: (str(r["space"]), str(r["data"]), order("ops", r["ops"]), str(r["method"]),
                                       r["settings"]))


def preset_sentence(d: dict) -> str:
    """One line per preset comparison, in numbers."""
    where = f"{d['space']}/{d['data']}/{d['ops']}/{d['method']}" + (f" ({d['settings']})" if d["settings"] else "")
    text = (f"{where}: over {d['presets']} presets the median architecture PSNR runs from {d['worst_median']:.2f} dB "
            f"({d['worst_preset']}) to {d['best_median']:.2f} dB ({d['best_preset']}), a range of {d['range']:.2f} dB "
            f"against a typical interquartile range of {d['within_iqr']:.2f} dB over seeds within one preset; "
            f"Kruskal-Wallis H = {d['kruskal_h']:.1f}, p = {d['kruskal_p']:.3g}: {d['verdict']}"
            + (f" (no finite value, left out: {d['no_values']})" if d["no_values"] else ""))
    if d["paper_presets"] >= 2:
        text += (f". The paper's range over the same {d['paper_presets']} presets: {d['paper_range']:.2f} dB, best "
                 f"{d['paper_best']}")
        if np.isfinite(d["kendall_tau_paper"]):
            text += f"; Kendall's tau between its ordering and ours {d['kendall_tau_paper']:.2f}"
    return text + "."


CLAIM_COLUMNS = ["claim", "test", "statistic", "space", "data", "ops", "method", "y_method", "settings", "x", "y",
                 "n_x", "n_y", "value_x", "value_y", "difference", "ci_low", "ci_high", "ci_method", "p_greater",
                 "p_less", "verdict", "paper_x", "paper_y", "paper_difference", "paper_agrees"]
_PAPER_COLUMN = {"max": 0, "mean": 1, "median": 2}  # das.study.PAPER's (max, mean, median)


def difference_interval(x, y, statistic, seed=0, resamples=RESAMPLES) -> tuple[float, float, str]:
    """95% interval of statistic(x) - statistic(y) for independent samples (statistic(v, axis=...)):
    (low, high, method)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or len(y) < 2:
        return float("nan"), float("nan"), "none"
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        d = float(statistic(x, axis=0) - statistic(y, axis=0))
        return d, d, "percentile"
    method = "BCa" if min(len(x), len(y)) >= 3 else "percentile"
    return _bootstrap((x, y), lambda a, b, axis: statistic(a, axis=axis) - statistic(b, axis=axis),
                      seed, resamples, method)


def _sd(v, axis=0):
    return np.std(v, axis=axis, ddof=1)


def compare_r(x_pairs, y_pairs) -> dict:
    """Pearson r of two independent samples of (one-shot, architecture) pairs: r_x - r_y with Zou's (2007)
    95% interval built from the two Fisher-z intervals, and the one-sided Fisher z-test of r_x > r_y
    (and of r_x < r_y)."""
    cx, cy = correlation(*x_pairs), correlation(*y_pairs)
    out = {"n_x": cx["n"], "n_y": cy["n"], "value_x": cx["pearson_r"], "value_y": cy["pearson_r"],
           "difference": cx["pearson_r"] - cy["pearson_r"], "ci_low": float("nan"), "ci_high": float("nan"),
           "ci_method": "none", "p_greater": float("nan"), "p_less": float("nan")}
    if min(cx["n"], cy["n"]) <= 3 or not np.isfinite([cx["pearson_r"], cy["pearson_r"]]).all():
        return out
    (rx, lx, ux), (ry, ly, uy) = ((c["pearson_r"], c["pearson_ci_low"], c["pearson_ci_high"]) for c in (cx, cy))
    out["ci_low"] = float(rx - ry - math.sqrt((rx - lx) ** 2 + (uy - ry) ** 2))
    out["ci_high"] = float(rx - ry + math.sqrt((ux - rx) ** 2 + (ry - ly) ** 2))
    out["ci_method"] = "Zou"
    clip = 0.999999
    z = ((np.arctanh(np.clip(rx, -clip, clip)) - np.arctanh(np.clip(ry, -clip, clip)))
         / math.sqrt(1 / (cx["n"] - 3) + 1 / (cy["n"] - 3)))
    out["p_greater"], out["p_less"] = float(st.norm.sf(z)), float(st.norm.cdf(z))
    return out


def compare_statistic(x, y, statistic, seed=0, resamples=RESAMPLES) -> dict:
    """Two independent samples of architecture PSNR by `statistic` (das.study.PresetClaim): the values,
    their difference with its 95% bootstrap interval, and the one-sided p-values of x above y and of
    x below y (Mann-Whitney U for the median, Welch's t for the mean, Brown-Forsythe for the standard
    deviation, halved by direction; the maximum has no test and no interval)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if statistic == "median":
        c = compare(x, y, seed, resamples)
        return {"n_x": c["n_x"], "n_y": c["n_y"], "value_x": c["median_x"], "value_y": c["median_y"],
                **{k: c[k] for k in ("difference", "ci_low", "ci_high", "ci_method", "p_greater", "p_less")}}
    f = {"mean": np.mean, "sd": _sd, "max": np.max}[statistic]
    nan = float("nan")
    vx = float(f(x)) if len(x) > (statistic == "sd") else nan
    vy = float(f(y)) if len(y) > (statistic == "sd") else nan
    out = {"n_x": len(x), "n_y": len(y), "value_x": vx, "value_y": vy, "difference": vx - vy, "ci_low": nan,
           "ci_high": nan, "ci_method": "none", "p_greater": nan, "p_less": nan}
    if statistic == "max" or min(len(x), len(y)) < 2:
        return out
    out["ci_low"], out["ci_high"], out["ci_method"] = difference_interval(x, y, f, seed, resamples)
    if statistic == "mean":
        out["p_greater"] = float(st.ttest_ind(x, y, equal_var=False, alternative="greater").pvalue)
        out["p_less"] = float(st.ttest_ind(x, y, equal_var=False, alternative="less").pvalue)
    elif np.ptp(x) > 0 or np.ptp(y) > 0:  # sd: Brown-Forsythe (Levene about the median), one side by direction
        p = float(st.levene(x, y, center="median").pvalue)
        out["p_greater"], out["p_less"] = (p / 2, 1 - p / 2) if vx > vy else (1 - p / 2, p / 2)
    return out


def _match_verdict(c, min_n, alpha) -> str:
    """On par: the interval of the difference lies within +-MATCH_MARGIN_DB (holds) or wholly outside it
    (does not hold)."""
    if min(c["n_x"], c["n_y"]) < min_n:
        return "not enough trials"
    if -MATCH_MARGIN_DB <= c["ci_low"] and c["ci_high"] <= MATCH_MARGIN_DB:
        return f"holds (on par within +-{MATCH_MARGIN_DB:.2f} dB)"
    if c["ci_low"] > MATCH_MARGIN_DB or c["ci_high"] < -MATCH_MARGIN_DB:
        return "does not hold"
    return "undecided"


def _at_least_verdict(c, min_n, alpha) -> str:
    """x matches or beats y: x higher (one-sided p < alpha), or on par (the interval within the margin);
    does not hold when the interval lies wholly below -MATCH_MARGIN_DB."""
    if min(c["n_x"], c["n_y"]) < min_n:
        return "not enough trials"
    if c["p_greater"] < alpha:
        return "holds (higher)"
    if -MATCH_MARGIN_DB <= c["ci_low"] and c["ci_high"] <= MATCH_MARGIN_DB:
        return f"holds (on par within +-{MATCH_MARGIN_DB:.2f} dB)"
    if c["ci_high"] < -MATCH_MARGIN_DB:
        return "does not hold"
    return "undecided"


def _higher_verdict(c, min_n, alpha, statistic) -> str:
    if min(c["n_x"], c["n_y"]) < min_n:
        return "not enough trials"
    if not (np.isfinite(c["value_x"]) and np.isfinite(c["value_y"])):
        return "no value (a constant PSNR has no correlation)" if statistic == "r" else "no value"
    if statistic == "max":  # the best of one sample: no test, its sign only
        return ("holds" if c["difference"] > 0 else "does not hold") + " (the maximum: no test)"
    return _shift_verdict(c, min_n, alpha)


def _verdict(test, statistic, c, min_n, alpha) -> str:
    if test == "higher":
        return _higher_verdict(c, min_n, alpha, statistic)
    return {"match": _match_verdict, "at least": _at_least_verdict}[test](c, min_n, alpha)


def _paper_agrees(test, difference) -> str:
    if not np.isfinite(difference):
        return ""
    ok = {"higher": difference > 0, "match": abs(difference) <= MATCH_MARGIN_DB,
          "at least": difference >= -MATCH_MARGIN_DB}.get(test)
    return "" if ok is None else ("yes" if ok else "no")


def _apart_from_preset(r0: dict) -> tuple[str, str]:
    """(method, everything else of the group but the preset): two groups with the same second part
    differ in their preset (name and hyperparameters) alone."""
    try:
        d = json.loads(r0["group"])
    except (TypeError, ValueError, KeyError):
        d = {k: r0.get(k) for k in ("space", "data", "ops", "method")} | {s.name: r0.get(s.name) for s in SETTINGS}
    rest = {k: v for k, v in d.items() if k not in ("preset", "hparams", "method")}
    return str(r0.get("method")), json.dumps(rest, sort_keys=True, default=str)


def preset_claims(records, claims=None, seed=0, resamples=RESAMPLES, min_n=MIN_N, alpha=ALPHA) -> list[dict]:
    """The paper's statements about its presets (das.study.PRESET_CLAIMS), one row per statement, data
    formation, op set, pair of presets (x, y) and everything else of the trials (settings, order,
    epochs, ...) that has trials of both presets: the statistic of x and of y, their difference with
    its 95% interval (BCa bootstrap; Zou's for r), the one-sided p-values both ways, the verdict by the
    statement's test (das.study.PresetClaim), and the paper's own values of x and y (its max, mean or
    median; it gives no r or standard deviation) with whether its table points the way its text says
    (`paper_agrees`). Presets are found by name; a name two groups share otherwise alike (another
    hyperparameter set under one name) is ambiguous and left out here (preset_sensitivity keeps them
    apart)."""
    from das.study import PRESET_CLAIMS, paper_value

    claims = PRESET_CLAIMS if claims is None else claims
    by: dict[tuple, dict[str, list[dict] | None]] = defaultdict(dict)
    for g, rs in group_records(records).items():
        method, rest = _apart_from_preset(rs[0])
        name = str(rs[0].get("preset"))
        presets = by[(method, rest)]
        presets[name] = None if name in presets else rs  # None: two groups under one name
    rows = []
    for cl in claims:
        y_method = cl.y_method or cl.method
        for (method, rest), presets in by.items():
            r0 = next(rs for rs in presets.values() if rs)[0] if any(presets.values()) else None
            if r0 is None or method != cl.method:
                continue
            space, data, ops = r0.get("space"), r0.get("data"), r0.get("ops")
            if space != cl.space or data not in cl.data or ops not in cl.ops:
                continue
            y_presets = by.get((y_method, rest), {})
            settings = " ".join(f"{s.name}={r0.get(s.name)}" for s in SETTINGS
                                if r0.get(s.name) is not None and r0.get(s.name) != s.default)
            for x in cl.x:
                for y in cl.y:
                    if (x, method) == (y, y_method) or not presets.get(x) or not y_presets.get(y):
                        continue
                    if cl.statistic == "r":
                        c = compare_r(paired_psnr(presets[x]), paired_psnr(y_presets[y]))
                    else:
                        c = compare_statistic(_arch(presets[x]), _arch(y_presets[y]), cl.statistic, seed, resamples)
                    col = _PAPER_COLUMN.get(cl.statistic)
                    px, py = paper_value(space, data, ops, method, x), paper_value(space, data, ops, y_method, y)
                    paper_x, paper_y = (v[col] if v is not None and col is not None else float("nan")
                                        for v in (px, py))
                    rows.append({"claim": cl.claim, "text": cl.text, "test": cl.test, "statistic": cl.statistic,
                                 "space": space, "data": data, "ops": ops, "method": method, "y_method": y_method,
                                 "settings": settings, "x": x, "y": y, **c,
                                 "verdict": _verdict(cl.test, cl.statistic, c, min_n, alpha), "paper_x": paper_x,
                                 "paper_y": paper_y, "paper_difference": paper_x - paper_y,
                                 "paper_agrees": _paper_agrees(cl.test, paper_x - paper_y)})
    return rows


def _named(r, side) -> str:
    """A preset, with its method where the row compares two methods."""
    method = r["method"] if side == "x" else r["y_method"]
    return r[side] if r["method"] == r["y_method"] else f"{display('method', method)} {r[side]}"


def preset_claim_sentences(rows) -> list[str]:
    """One line per statement: how many of its comparisons hold, do not hold, are undecided, and in how
    many the paper's own table points its way."""
    out, by = [], defaultdict(list)
    for r in rows:
        by[(r["claim"], r["text"])].append(r)
    units = {"r": "r", "sd": "standard deviation (dB)"}
    for (claim, text), rs in by.items():
        counts = defaultdict(int)
        for r in rs:
            counts[r["verdict"].split(" (")[0]] += 1
        tally = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        paper = [r["paper_agrees"] for r in rs if r["paper_agrees"]]
        pairs = [(r["data"], r["ops"], _named(r, "x"), _named(r, "y")) for r in rs]
        shown = {i for i, p in enumerate(pairs) if pairs.count(p) > 1 and rs[i]["settings"]}  # tell them apart
        diffs = ", ".join(
            f"{r['data']}/{r['ops']}{' [' + r['settings'] + ']' if i in shown else ''} {_named(r, 'x')} - "
            f"{_named(r, 'y')}: {r['difference']:+.2f}"
            + (f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" if np.isfinite(r["ci_low"]) else "")
            for i, r in enumerate(rs))
        what = units.get(rs[0]["statistic"], f"{rs[0]['statistic']} (dB)")
        out.append(f"{claim} ({text}): {len(rs)} comparison" + ("s" if len(rs) > 1 else "") + f", {tally}"
                   + (f"; the paper's own table points its way in {paper.count('yes')} of {len(paper)}"
                      if paper else "") + f". Difference in {what}"
                   + (" with 95% interval" if any(np.isfinite(r["ci_low"]) for r in rs) else "") + f": {diffs}.")
    return out
