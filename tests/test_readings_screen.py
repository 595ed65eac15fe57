"""The readings screen's pre-registered rule (das/readings.py) on synthetic trials with known
medians: views, scores against numpy, stage 2 and the choice, the study's cells, and the script."""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as st

from das import readings
from das.hparams import load_hparams
from das.model import uniform_genotype
from das.spec import TrialSpec, retrain_spec
from das.study import PAPER
from tests.conftest import ROOT

OFFSETS = {readings.name({}): 2.0, "theta_optimizer=sgd": 0.5, "residual=off": 1.0, "width=8": 2.1}


def _records(reading: dict, offset: float, seeds=range(1000, 1005)):
    """Trials of `reading` in the cells it changes, median paper + offset (each cell's values spread
    symmetrically around it)."""
    out = []
    for cell in readings.cells():
        if reading and not readings._affects(reading, cell):
            continue
        space, data, ops, method = cell
        for k, seed in enumerate(seeds):
            spec = TrialSpec.make(hp=load_hparams("H1"), space=space, data=data, ops=ops, method=method, seed=seed,
                                  **reading)
            if method == "das":  # a DAS record is its search's retrain
                spec = retrain_spec(spec, uniform_genotype(space, data, ops, "grad", spec.width))
            v = PAPER[(*cell, "H1")][2] + offset + (k - 2) * 0.1
            out.append({**spec.to_dict(), **spec.settings(), "group": spec.group(), "label": spec.label(),
                        "primary": True, "retrain_seed": seed if method == "das" else None, "status": "complete",
                        "candidates": [],
                        "architecture_psnr": v, "one_shot_psnr": v - 1,
                        "psnr_averagings": {"architecture": {"sample": v, "pooled": v - 0.2, "batch": v - 0.15},
                                            "one_shot": {"sample": v - 1, "pooled": v - 1.2, "batch": v - 1.15}}})
    return out


@pytest.fixture(scope="module")
def screen():
    recs = _records({}, OFFSETS["defaults"])
    recs += _records({"theta_optimizer": "sgd"}, OFFSETS["theta_optimizer=sgd"])
    recs += _records({"residual": "off"}, OFFSETS["residual=off"])
    recs += _records({"width": 8}, OFFSETS["width=8"])
    return recs


def test_views_take_the_baseline_where_a_reading_cannot_change_a_cell(screen):
    assert len(readings.cells()) == 28
    base = readings.view(screen, {})
    assert len(base) == 28 * 5 and {r["theta_optimizer"] for r in base} == {"adam"}
    loud = readings.view(screen, {"noise_sigma": 1.0})  # no trials of it: only the cells it cannot change
    assert {(r["ops"]) for r in loud} == {"good"} and all(r["theta_optimizer"] == "adam" for r in loud)
    pooled = readings.view(screen, {"psnr": "pooled"})
    assert len(pooled) == len(base) and all(r["psnr"] == "pooled" for r in pooled)
    assert pooled[0]["architecture_psnr"] == base[0]["architecture_psnr"] - 0.2


def test_scores_equal_numpy(screen):
    for reading, offset in (({}, 2.0), ({"theta_optimizer": "sgd"}, 0.5), ({"residual": "off"}, 1.0)):
        s = readings.score(screen, reading)
        ours = np.array([s["medians"]["/".join(c)] for c in readings.cells()])
        paper = np.array([PAPER[(*c, "H1")][2] for c in readings.cells()])
        np.testing.assert_allclose(ours - paper, offset, atol=1e-9)
        assert s["mad"] == pytest.approx(abs(offset)) and s["cells"] == 28 and s["trials"] == 140
        assert s["tau"] == pytest.approx(st.kendalltau(ours, paper).statistic)
    # how much of a row is the reading's own trials: all of the defaults' and sgd's (it changes every
    # cell), residual off's in the cells it changes; noise sigma 1 has none of its own yet
    assert readings.score(screen, {})["own"] == [28, 28]
    assert readings.score(screen, {"psnr": "pooled"})["own"] == [28, 28]  # reread, not trained
    changed = [c for c in readings.cells() if readings._affects({"residual": "off"}, c)]
    assert readings.score(screen, {"residual": "off"})["own"] == [len(changed), len(changed)]
    loud = readings.score(screen, {"noise_sigma": 1.0})
    assert loud["own"] == [0, 10] and loud["cells"] == 18


def test_stage2_and_the_choice_follow_the_rule(screen):
    """sgd (0.5 dB) and residual off (1.0 dB) help; width 8 (2.1 dB) does not: stage 2 combines the
    two helping settings in the order of their MAD; the choice is the lowest MAD."""
    assert readings.stage2(screen) == [{"theta_optimizer": "sgd", "residual": "off"}]
    study = readings.combined_study(screen)
    assert {dict(c.settings).get("theta_optimizer") for c in study.cells} == {"sgd"} and len(study.cells) == 28
    choice = readings.choose(screen)
    assert choice["chosen"]["reading"] == "theta_optimizer=sgd"  # the combination has no trials: not eligible
    assert "residual=off+theta_optimizer=sgd" in choice["incomplete"]


def test_screen_study_runs_each_reading_only_where_it_can_change_a_trial():
    study = readings.screen_study()
    assert list(study.seed_list()) == list(readings.SCREEN_SEEDS)
    assert not set(study.seed_list()) & set(readings.CONFIRMATION_SEEDS)
    by = {}
    for c in study.cells:
        by.setdefault(json.dumps(dict(c.settings), sort_keys=True), []).append(c)
    assert len(by['{}']) == 28 and len(by['{"theta_optimizer": "sgd"}']) == 28
    assert len(by['{"noise_sigma": 1.0}']) == 10 and all(c.ops == "all" for c in by['{"noise_sigma": 1.0}'])
    assert len(by['{"cell_sum": "mean"}']) == 12 and all(c.space == "cell" for c in by['{"cell_sum": "mean"}'])
    assert '{"psnr": "pooled"}' not in by  # evaluation only: read from the baseline's trials


def test_readings_script_writes_scores_choice_and_claims(screen, tmp_path):
    from das.collect import write_trials_csv

    write_trials_csv(screen, tmp_path / "trials.csv")
    p = subprocess.run([sys.executable, "scripts/readings.py", str(tmp_path / "trials.csv"), "--out",
                        str(tmp_path / "out"), "--resamples", "100", "--format", "png"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    choice = json.loads((tmp_path / "out" / "choice.json").read_text())
    assert choice["chosen"]["reading"] == "theta_optimizer=sgd"
    for f in ("screen.csv", "screen.md", "medians.csv", "claims_by_reading.csv", "claims_robustness.csv",
              "fig_claims_by_reading.png"):
        assert (tmp_path / "out" / f).is_file(), f
    assert "Chosen so far (provisional: the screen is not finished): **theta_optimizer=sgd**" in p.stdout
    import pandas as pd
    table = pd.read_csv(tmp_path / "out" / "screen.csv").set_index("reading")
    assert table.loc["noise_sigma=1", "own cells run"] == "0/10" and table.loc["defaults", "own cells run"] == "28/28"
    claims = pd.read_csv(tmp_path / "out" / "claims_by_reading.csv")
    assert "noise_sigma=1" not in set(claims["reading"]) and "theta_optimizer=sgd" in set(claims["reading"])


def test_confirmation_runs_the_chosen_reading_at_the_papers_scale(screen, tmp_path):
    """Tables 1 and 2 (both data formations) under the chosen reading, on seeds 0..N-1, which the
    screen never used; an unfinished screen's choice is refused in one line."""
    from das.utils import UserError, write_json

    choice = readings.choose(screen)
    f = tmp_path / "choice.json"
    write_json(f, {**choice, "incomplete": []})  # as scripts/readings.py writes it
    t1, t2 = readings.confirmation_study("table1", f), readings.confirmation_study("table2", f)
    assert len(t1.cells) == 16 and len(t2.cells) == 12 and {c.data for c in t2.cells} == {"blur", "downsample"}
    assert list(t1.seed_list()) == list(range(75)) and list(t2.seed_list()) == list(range(100))
    assert all(dict(c.settings) == {"theta_optimizer": "sgd"} for c in t1.cells + t2.cells)
    assert all(s.theta_optimizer == "sgd" for s in t1.specs([0]))
    t3 = readings.confirmation_study("table3", f)  # the preset study too: its H1 rows are Table 1's DAS trials
    from das.study import STUDIES
    assert [dataclasses.replace(c, settings=()) for c in t3.cells] == list(STUDIES["table3"].cells) and len(t3.cells) == 20
    assert {(s.group(), s.seed) for s in t1.specs() if s.method == "das"} <= {(s.group(), s.seed) for s in t3.specs()}
    write_json(f, choice)  # the synthetic screen lacks the combination's trials
    with pytest.raises(UserError, match="the screen is not finished"):
        readings.confirmation_study("table1", f)


def test_a_screen_in_parts_pools_once_and_exports_compact(screen, tmp_path):
    """A committed part and a tree holding the same trials count each once; --export writes the
    pooled trials without their per-epoch histories, readable again."""
    from das.collect import read_trials_csv, write_trials_csv

    part = tmp_path / "part.csv"
    write_trials_csv([{**r, "history": {"epoch": [1], "train_loss": [0.5]}} for r in screen], part)
    run = [sys.executable, "scripts/readings.py", str(part), str(part), "--out", str(tmp_path / "o"), "--no-claims",
           "--export", str(tmp_path / "all.csv")]
    p = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    back = read_trials_csv(tmp_path / "all.csv")
    assert len(back) == len(screen) and all(r["history"] is None for r in back)
    changed = [{**r, "architecture_psnr": r["architecture_psnr"] + 1} for r in screen[:1]] + screen[1:]
    write_trials_csv(changed, tmp_path / "other.csv")
    p = subprocess.run(run[:3] + [str(tmp_path / "other.csv"), *run[4:]], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2 and "with other numbers" in p.stderr


def test_a_committed_trial_counts_as_done_only_if_it_can_be_read_under_the_choice(tmp_path):
    """sweep.py --done-in for a confirmation whose reading has an evaluation-only setting (psnr=pooled):
    a committed trial that holds no PSNR averagings (a run older than them) is not done and runs
    again; for a study without such a setting it is done."""
    from pathlib import Path

    from das.collect import write_trials_csv
    from das.study import STUDIES, Study

    sys.path.insert(0, str(Path(ROOT) / "scripts"))
    import sweep

    specs = [s for s in STUDIES["table1"].specs([0, 1]) if (s.data, s.ops, s.method) == ("blur", "good", "random")]
    recs = []
    for spec in specs:
        r = {**spec.to_dict(), **spec.settings(), "group": spec.group(), "label": spec.label(), "primary": True,
             "status": "complete", "candidates": [], "architecture_psnr": 20.0 + spec.seed, "one_shot_psnr": None}
        if spec.seed == 0:  # seed 1 predates the stored averagings
            r["psnr_averagings"] = {"architecture": {"sample": 20.0, "pooled": 19.5, "batch": 19.6}, "one_shot": {}}
        recs.append(r)
    f = tmp_path / "trials.csv"
    write_trials_csv(recs, f)
    assert len(specs) == 2
    assert sweep.done_elsewhere([f]) == {(s.group(), s.seed) for s in specs}
    assert sweep.done_elsewhere([f], (("psnr", "pooled"),)) == {(specs[0].group(), 0)}
    # a table written under the reading (analyze.py --reading: the trials reread) still names the trial as run
    from das.collect import read_trials_csv, reread
    again = reread(read_trials_csv(f), psnr="pooled")
    assert len(again) == 1 and again[0]["group"] != specs[0].group()
    write_trials_csv(again, tmp_path / "reread.csv")
    assert sweep.done_elsewhere([tmp_path / "reread.csv"], (("psnr", "pooled"),)) == {(specs[0].group(), 0)}
    # the confirmation study carries its reading's evaluation-only part, which plan() hands to --done-in
    choice = {"chosen": {"settings": {"noise_sigma": 1.0, "psnr": "pooled"}, "reading": "noise_sigma=1+psnr=pooled"},
              "incomplete": []}
    (tmp_path / "choice.json").write_text(json.dumps(choice))
    t1 = readings.confirmation_study("table1", tmp_path / "choice.json")
    assert isinstance(t1, Study) and t1.reread == (("psnr", "pooled"),)
    assert all(dict(c.settings) == {"noise_sigma": 1.0} for c in t1.cells)
