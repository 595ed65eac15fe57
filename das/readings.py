"""Which readings of the paper make its numbers: the screen of the open details (das.spec settings
marked `reading`), its pre-registered selection rule, and views of a results tree under a reading.

The rule is fixed here, in code, before the screen runs, and it is applied to the screen's seeds
(SCREEN_SEEDS, 1000-1009) only; the confirmation at the paper's scale uses seeds 0-99, which the
screen never sees. No cell is tuned on its own: a reading is one setting value for every trial.

    SCREEN (stage 1)   the defaults (BASELINE) and every single reading of READINGS, at 10 seeds,
                       over the 28 cells the paper reports for H1 (Table 1: 16; Table 2, both
                       data formations: 12); a reading's trials are run only in the cells it can
                       change (das.spec `applies`); elsewhere its trials are the baseline's.
    SCORE              the mean absolute deviation (MAD, dB) of our medians from the paper's over
                       the 28 cells, and Kendall's tau between the two sets of medians.
    HELPS              a reading whose MAD is at least MIN_GAIN_DB below the baseline's while its
                       tau is no more than MAX_TAU_LOSS below the baseline's.
    COMBINE (stage 2)  per setting, its helping value of lowest MAD; the settings ranked by that
                       MAD; the cumulative combinations of the best 2 and the best 3 (at most
                       MAX_COMBINED settings) are run at the same seeds.
    CHOICE             of the baseline, every single reading and every combination, the lowest MAD
                       among those whose tau is no more than MAX_TAU_LOSS below the baseline's;
                       ties go to fewer changed settings.

An evaluation-only reading (how PSNR is averaged) trains nothing: its trials are the baseline's
(or a combination's) read under that averaging (das.collect.reread).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
from scipy import stats as st

from das.collect import once, reread
from das.spec import SETTINGS, TrialSpec, setting
from das.study import PAPER, Cell, Study

SCREEN_SEEDS = range(1000, 1010)
CONFIRMATION_SEEDS = range(0, 100)     # the paper's scale; never part of the screen
BASELINE: dict = {}
READINGS: list[dict] = [
    {"theta_optimizer": "sgd"}, {"theta_optimizer": "momentum"},
    {"residual": "off"},
    {"psnr": "pooled"}, {"psnr": "batch"},
    {"noise_sigma": 1.0},
    {"roll": "signal"}, {"roll": "flat"},
    {"kernel_size": 5},
    {"width": 8}, {"width": 32},
    {"cell_output": "last2-k3"}, {"cell_output": "all"},
    {"cell_sum": "mean"},
    {"sigma_n": 0.01},
]
MIN_GAIN_DB = 0.25
MAX_TAU_LOSS = 0.10
MAX_COMBINED = 3
RULE = (f"score: the mean absolute deviation (MAD) of our medians from the paper's over the 28 cells, and "
        f"Kendall's tau between the two sets of medians; helps: MAD at least {MIN_GAIN_DB} dB below the "
        f"defaults' with tau no more than {MAX_TAU_LOSS} below theirs; stage 2: per setting its helping value "
        f"of lowest MAD, the settings ranked by it, the cumulative combinations of the best 2..{MAX_COMBINED}; "
        f"choice: the lowest MAD among the defaults, every single reading and every combination whose tau is "
        f"no more than {MAX_TAU_LOSS} below the defaults', ties to fewer changed settings")


def cells() -> list[tuple]:
    """The 28 cells (space, data, ops, method) the paper reports for preset H1 (Tables 1 and 2)."""
    return [(space, data, ops, method) for (space, data, ops, method, preset) in PAPER if preset == "H1"]


def name(reading: dict) -> str:
    """A reading as text: 'defaults' or 'theta_optimizer=sgd+residual=off'."""
    return "+".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(reading.items())) \
        or "defaults"


def parse(text: str) -> dict:
    """A reading from the command line: 'defaults', settings as name() writes them
    ('noise_sigma=1+psnr=pooled'), or the path of a choice.json (its chosen reading; only from a
    finished screen)."""
    from pathlib import Path

    from das.utils import UserError

    text = str(text).strip()
    if text.endswith(".json"):
        return chosen_reading(Path(text))
    if text == "defaults":
        return {}
    known = [s.name for s in SETTINGS]
    out = {}
    for part in text.split("+"):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in known:
            raise UserError(f"--reading {text}: '{part}' is not SETTING=VALUE with a setting of {known} (e.g. "
                            "noise_sigma=1+psnr=pooled, 'defaults', or a choice.json)")
        s = setting(key.strip())
        try:
            v = s.type(value.strip())
        except ValueError:
            raise UserError(f"--reading {text}: {s.name} takes a {s.type.__name__}, got {value.strip()!r}") from None
        out[s.name] = s.check(v)
    return {k: v for k, v in out.items() if v != setting(k).default}


def trained_part(reading: dict) -> dict:
    """The part of a reading that changes training (evaluation-only settings are reread)."""
    return {k: v for k, v in reading.items() if not setting(k).evaluation_only}


def evaluation_part(reading: dict) -> dict:
    """The part of a reading that only rereads the trials (das.collect.reread): the rest of trained_part."""
    return {k: v for k, v in reading.items() if setting(k).evaluation_only}


def _affects(reading: dict, cell: tuple) -> bool:
    space, data, ops, method = cell
    from das.hparams import load_hparams
    s = TrialSpec.make(hp=load_hparams("H1"), space=space, data=data, ops=ops, method=method, seed=0)
    return s.replace(**reading) != s


def study(readings: list[dict], name_: str, title: str) -> Study:
    """The trials of these readings: each reading's training settings, in the cells they change
    (the baseline in every cell)."""
    out, seen = [], set()
    for reading in readings:
        trained = trained_part(reading)
        for cell in cells():
            if trained and not _affects(trained, cell):
                continue
            key = (cell, json.dumps(trained, sort_keys=True))
            if key not in seen:
                seen.add(key)
                out.append(Cell(*cell, preset="H1", settings=tuple(sorted(trained.items()))))
    return Study(name_, title, tuple(out), len(SCREEN_SEEDS), first_seed=SCREEN_SEEDS[0])


def screen_study() -> Study:
    return study([BASELINE] + READINGS, "readings", "Readings screen (stage 1): the defaults and every single "
                 "reading, 10 seeds (1000-1009), the 28 cells of Tables 1 and 2")


# ---------------------------------------------------------------------------- views and scores
def view(records, reading: dict) -> list[dict]:
    """The records that are trials under `reading` (every other setting at its default): a record
    belongs when each setting holds the reading's value where that setting can change the record's
    trial (das.spec `applies`) and its default elsewhere, so a cell the reading cannot change
    contributes its baseline trials. Evaluation-only settings reread the records (das.collect.reread;
    a record already reread under the reading is kept as it is, so a view of a view is the view)."""
    trained = trained_part(reading)
    out = []
    for r in records:
        keep = True
        for s in SETTINGS:
            want = trained.get(s.name, s.default)
            if s.applies is not None and not _applies(s, r):
                want = s.default
            if s.evaluation_only:  # the trials as run, or already reread under this reading
                want = (s.default, reading.get(s.name, s.default))
            if r.get(s.name, s.default) not in (want if isinstance(want, tuple) else (want,)):
                keep = False
                break
        if keep:
            out.append(r)
    evaluation = evaluation_part(reading)
    if not evaluation:
        return out
    # a trial both as run and already reread is one trial
    return once(reread(out, **evaluation), "the trials as run and as reread")


def _applies(s, r) -> bool:
    try:
        return bool(s.applies(r))
    except (KeyError, TypeError):
        return True


def medians(records) -> dict[tuple, tuple[float, int]]:
    """(median architecture PSNR, n) per cell of cells(), from the primary records of preset H1."""
    by = defaultdict(list)
    for r in records:
        if r.get("preset") != "H1" or r.get("primary") is False:
            continue
        v = r.get("architecture_psnr")
        if isinstance(v, (int, float)) and math.isfinite(v):
            by[(r["space"], r["data"], r["ops"], r["method"])].append(float(v))
    return {c: (float(np.median(by[c])), len(by[c])) for c in cells() if by.get(c)}


def own_cells(reading: dict) -> list[tuple]:
    """The cells whose trials a reading trains itself (every cell for the defaults and for an
    evaluation-only reading, which rereads the defaults' trials); elsewhere its view holds the
    defaults' trials."""
    trained = trained_part(reading)
    return [c for c in cells() if not trained or _affects(trained, c)]


def score(records, reading: dict) -> dict:
    """MAD and Kendall tau of the reading's medians against the paper's over the cells it has;
    `own` = (cells of own_cells that have trials, len(own_cells)), so a partial candidate shows
    how much of it is its own trials and how much the defaults'."""
    med = medians(view(records, reading))
    have = [c for c in cells() if c in med]
    mine = own_cells(reading)
    ours = np.array([med[c][0] for c in have])
    paper = np.array([PAPER[(*c, "H1")][2] for c in have])
    tau = float(st.kendalltau(ours, paper).statistic) if len(have) > 2 else float("nan")
    return {"reading": name(reading), "settings": reading, "cells": len(have),
            "own": [sum(c in med for c in mine), len(mine)], "trials": sum(med[c][1] for c in have),
            "mad": float(np.mean(np.abs(ours - paper))) if len(have) else float("nan"), "tau": tau,
            "medians": {"/".join(c): med[c][0] for c in have}}


def complete(s: dict) -> bool:
    """A scored candidate has trials in all 28 cells (its own or, where it cannot change a cell, the
    defaults'): only such a candidate can help or be chosen."""
    return s["cells"] == len(cells())


def helps(s: dict, base: dict) -> bool:
    """The rule's HELPS: complete, MAD at least MIN_GAIN_DB below the defaults', tau no more than
    MAX_TAU_LOSS below theirs."""
    return complete(s) and s["mad"] <= base["mad"] - MIN_GAIN_DB and s["tau"] >= base["tau"] - MAX_TAU_LOSS


def stage2(records) -> list[dict]:
    """The combinations stage 2 runs (the rule above), from the stage-1 scores."""
    return _combinations(score(records, BASELINE), [score(records, reading) for reading in READINGS])


def _combinations(base: dict, singles: list[dict]) -> list[dict]:
    """COMBINE of the rule, from the baseline's and the single readings' scores."""
    helping = [s for s in singles if helps(s, base)]
    best_per_setting = {}
    for s in sorted(helping, key=lambda s: s["mad"]):
        (k, v), = s["settings"].items()
        best_per_setting.setdefault(k, (v, s["mad"]))
    ranked = [(k, v) for k, (v, _) in sorted(best_per_setting.items(), key=lambda kv: kv[1][1])]
    return [dict(ranked[:n]) for n in range(2, min(MAX_COMBINED, len(ranked)) + 1)]


def combined_study(records) -> Study:
    return study(stage2(records), "readings-combined", "Readings screen (stage 2): the best helping readings "
                 "combined, 10 seeds (1000-1009), the 28 cells of Tables 1 and 2")


def choose(records) -> dict:
    """The pre-registered choice among the baseline, every single reading and every stage-2
    combination: every candidate's score, and the chosen reading."""
    base = score(records, BASELINE)
    singles = [score(records, r) for r in READINGS]
    candidates = [base] + singles + [score(records, r) for r in _combinations(base, singles)]
    eligible = [s for s in candidates if complete(s) and s["tau"] >= base["tau"] - MAX_TAU_LOSS]
    chosen = min(eligible, key=lambda s: (s["mad"], len(s["settings"]))) if eligible else base
    incomplete = [s["reading"] for s in candidates if not complete(s)]
    return {"rule": RULE, "baseline": base, "final": not incomplete, "candidates": candidates, "chosen": chosen,
            "incomplete": incomplete}


# ---------------------------------------------------------------------------- the claims under every reading
def claims_by_reading(records, readings: list[dict], seed=0, resamples=2000) -> list[dict]:
    """Every claim's verdict, median difference and its interval under each reading (das.stats.
    verdicts on the reading's view), one row per reading and comparison."""
    from das import stats

    rows = []
    for reading in readings:
        primary = [r for r in view(records, reading) if r.get("primary") is not False and r.get("preset") == "H1"]
        for v in stats.verdicts(primary, seed, resamples):
            what = v["what"].split(": ", 1)
            rows.append({"reading": name(reading), "claim": v["claim"], "where": what[0],
                         "comparison": what[1] if len(what) > 1 else what[0], "verdict": v["verdict"],
                         "difference": v.get("difference", v.get("pearson_r")),
                         "ci_low": v.get("ci_low", v.get("pearson_ci_low")),
                         "ci_high": v.get("ci_high", v.get("pearson_ci_high")),
                         "p": v.get("p_greater", v.get("pearson_p")), "n_x": v.get("n_x", v.get("n")),
                         "n_y": v.get("n_y")})
    return rows


def robustness_summary(rows) -> list[dict]:
    """Per claim and comparison: under how many readings it holds, does not hold, or is undecided,
    and whether the verdict is the same under every reading."""
    by = defaultdict(list)
    for r in rows:
        by[(r["claim"], r["where"], r["comparison"])].append(r)
    out = []
    for (claim, where, comparison), rs in sorted(by.items()):
        verdicts = [r["verdict"].split(" (")[0] for r in rs]
        out.append({"claim": claim, "where": where, "comparison": comparison, "readings": len(rs),
                    "holds": sum(v == "holds" for v in verdicts),
                    "does not hold": sum(v == "does not hold" for v in verdicts),
                    "undecided": sum(v == "undecided" for v in verdicts),
                    "not enough trials": sum(v == "not enough trials" for v in verdicts),
                    "same under every reading": len(set(verdicts)) == 1})
    return out


# ---------------------------------------------------------------------------- the confirmation
CHOICE_FILE = "reproduction/readings/choice.json"


def chosen_reading(path) -> dict:
    """The reading the screen chose (choice.json of scripts/readings.py), checked: it must have been
    chosen from a complete screen (every candidate with trials in all 28 cells)."""
    from pathlib import Path

    from das.utils import UserError, read_json

    choice = read_json(Path(path), "the screen's choice", "run python scripts/readings.py on the finished screen")
    chosen = choice.get("chosen") if isinstance(choice.get("chosen"), dict) else None
    if chosen is None or not isinstance(chosen.get("settings"), dict):
        raise UserError(f"{path}: holds no chosen reading; run python scripts/readings.py on the screen")
    if choice.get("incomplete"):
        raise UserError(f"{path}: the screen is not finished ({len(choice['incomplete'])} candidates lack trials in "
                        "some cells); finish it (docs/readings.md) before the confirmation")
    for k, v in chosen["settings"].items():
        setting(k).check(v)
    return chosen["settings"]


# the confirmations: the paper's studies under the screen's chosen reading (Tables 1 and 2 for the
# readings issue, Tables 3 and 4 and Figure 5 for the rest of the paper at its scale)
CONFIRMED = ("table1", "table2", "table3", "table4", "figure5")
STUDY_NAMES = ("readings", "readings-combined") + tuple(f"confirmation-{t}" for t in CONFIRMED)


def study_names() -> list[str]:
    """Every study a sweep runs and an analysis can keep (das.study's and the readings')."""
    from das.study import STUDIES

    return list(STUDIES) + list(STUDY_NAMES)


def named_study(name: str, records=()) -> Study:
    """A study by name: those of das.study, the screen (stage 1), its stage 2 (planned from
    `records`, the stage-1 trials) and the confirmations (from the committed choice.json)."""
    from pathlib import Path

    from das.study import STUDIES

    if name == "readings":
        return screen_study()
    if name == "readings-combined":
        return combined_study(list(records))
    if name in STUDY_NAMES:  # confirmation-NAME: the study NAME under the screen's chosen reading
        return confirmation_study(name.split("-", 1)[1], Path(__file__).resolve().parent.parent / CHOICE_FILE)
    return STUDIES[name]


def confirmation_study(table: str, path=CHOICE_FILE) -> Study:
    """A study of the paper (Table 1, 75 seeds; Table 2 with both data formations, 100 seeds; Tables
    3 and 4 and Figure 5) under the chosen reading, on the confirmation seeds (never the screen's)."""
    from das.study import STUDIES

    chosen = chosen_reading(path)
    reading = trained_part(chosen)
    base = STUDIES[table]
    cells = tuple(Cell(c.space, c.data, c.ops, c.method, c.preset, tuple(sorted(reading.items()))) for c in base.cells)
    return Study(f"confirmation-{table}", f"{base.title}, under the chosen reading {name(chosen)}", cells,
                 base.seeds, first_seed=CONFIRMATION_SEEDS[0],
                 reread=tuple(sorted(evaluation_part(chosen).items())))
