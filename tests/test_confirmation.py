"""The confirmation (reproduction/confirmation/): the paper's tables under the readings screen's
chosen reading (reproduction/readings/choice.json) at the paper's scale, committed as data.

Checked against second computations: pandas medians of the pooled PSNRs each row stores, the
committed Table 1 of the defaults (a trial the reading cannot change, run again, has the same
per-sample PSNR to the last bit), and the same analysis run again from the committed table."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from das import readings
from das.hparams import load_hparams
from das.vocab import display, heading
from tests.conftest import ROOT

REPRO = Path(ROOT) / "reproduction"
CONF = REPRO / "confirmation"
CHOICE = REPRO / "readings" / "choice.json"
# the confirmation studies committed in full (the README of reproduction/confirmation/ says which), each
# with the table file that holds a cell ({preset}: the cell's preset, in the layout of Tables 1 and 2)
FULL = {"table1": "table1_seq_{preset}.csv", "table2": "table2_cell_{preset}.csv",
        "table3": "table3_seq_das_presets.csv", "table4": "table4_cell_das_presets.csv",
        "figure5": "table1_seq_{preset}.csv"}
# the studies' rows also run under preset files (sweep.py --preset FILE): Table 3 under the incumbents of
# the two committed BOHB runs (one-shot and final objective)
INCUMBENTS = [REPRO / "bohb" / run / "incumbent.json" for run in ("one-shot-blur", "final-blur")]
PRESET_FILES = {"table3": ",".join(map(str, INCUMBENTS))}
KEY = ["space", "data", "ops", "method", "preset"]
# the good-ops trials the committed defaults hold per table: Table 1's ten cells, Table 2's four blur
# cells, Table 3's H1 rows (its other presets never ran with good ops under the defaults), Table 4's H1
# row (Table 2's first 75 seeds); Figure 5 has all ops only
MIN_CHECKED = {"table1": 10 * 75, "table2": 4 * 100, "table3": 2 * 75, "table4": 75, "figure5": 0}


def _study(table):
    return readings.confirmation_study(table, CHOICE).with_presets(PRESET_FILES.get(table))


def _file(table, cell):
    return FULL[table].format(preset=load_hparams(cell.preset).name)


@pytest.fixture(scope="module")
def conf():
    frame = pd.read_csv(CONF / "trials.csv.gz", float_precision="round_trip", low_memory=False)
    return frame[frame["primary"].astype(bool)]


def _rows(frame, cell):
    m = (frame[KEY] == [cell.space, cell.data, cell.ops, cell.method, load_hparams(cell.preset).name]).all(axis=1)
    return frame[m.to_numpy()]


def _stored(row, averaging):
    """A row's architecture PSNR under an averaging, from the numbers it stores (random search:
    its best candidate under that averaging)."""
    cands = json.loads(row["candidates"]) if isinstance(row["candidates"], str) else None
    if cands and len(cands) > 1:
        return max(c["psnr_averagings"][averaging] for c in cands if c["status"] == "complete")
    return json.loads(row["psnr_averagings"])["architecture"][averaging]


@pytest.mark.parametrize("table", sorted(FULL))
def test_every_trial_of_the_confirmation_is_committed(conf, table):
    """Each cell holds its seeds 0..N-1, each once, under the chosen reading (noise sigma 1 where the
    noise op runs, PSNR pooled), each complete or diverged (Table 4's H1 row is Table 2's, seeds 0-99)."""
    chosen = readings.chosen_reading(CHOICE)
    study = _study(table)
    for cell in study.cells:
        rows = _rows(conf, cell)
        seeds = rows["seed"].tolist()
        assert len(seeds) == len(set(seeds)) and set(study.seed_list()) <= set(seeds), (cell, len(rows))
        assert len(seeds) == len(study.seed_list()) or (table, cell.preset) == ("table4", "H1"), (cell, len(seeds))
        assert set(rows["status"]) <= {"complete", "diverged"}
        for k, v in chosen.items():
            want = v if (k != "noise_sigma" or cell.ops == "all") else 0.1
            assert set(rows[k]) == {want}, (cell, k, set(rows[k]))


@pytest.mark.parametrize("table", sorted(FULL))
def test_confirmation_tables_are_the_medians_of_the_stored_pooled_psnrs(conf, table):
    """The committed table's max, mean, median and n per cell: pandas over each row's stored pooled
    PSNR (not the headline column the analysis reread)."""
    study = _study(table)
    for cell in study.cells:
        got = pd.read_csv(CONF / _file(table, cell), float_precision="round_trip")
        rows = _rows(conf, cell)
        v = rows[rows["status"] == "complete"].apply(_stored, axis=1, averaging="pooled").astype(float)
        if "Method" in got:  # Tables 1 and 2: a row per op set and method, a column group per data formation
            row = got[(got["Ops"] == display("ops", cell.ops)) & (got["Method"] == display("method", cell.method))]
            col = display("data", cell.data)
        else:  # Tables 3 and 4: a row per data formation and preset, a column group per op set
            row = got[(got["Data"] == display("data", cell.data))
                      & (got["Hyperparameters"] == load_hparams(cell.preset).name)]
            col = heading(cell.ops)
        assert row[f"{col} n"].item() == len(v), cell
        np.testing.assert_allclose([row[f"{col} Max"].item(), row[f"{col} Mean"].item(), row[f"{col} Median"].item()],
                                   [v.max(), v.mean(), v.median()], rtol=0, atol=1e-9)


@pytest.mark.parametrize("table", sorted(FULL))
def test_trials_the_reading_cannot_change_reproduce_the_committed_ones(conf, table):
    """The good-ops trials (the noise op is not in them, so the reading changes only how PSNR is
    averaged) ran again here: their per-sample PSNR equals the committed defaults' (reproduction/,
    Table 1 and Table 2's blur column), trial for trial, to the last bit, though code and sessions
    changed in between. Table 2's downsampling column was never run under the defaults."""
    old = pd.read_csv(REPRO / "trials.csv.gz", float_precision="round_trip", low_memory=False)
    old = old[old["primary"].astype(bool) & (old["label"] == old["preset"])]  # the defaults' trials
    study = _study(table)
    checked = 0
    for cell in study.cells:
        before = _rows(old, cell).set_index("seed")["architecture_psnr"]
        before = before[before.index.isin(study.seed_list())]  # Table 4's H1 row: Table 2's first 75 seeds
        if cell.ops != "good" or before.empty:
            continue
        new = _rows(conf, cell).set_index("seed")
        new = new[new.index.isin(study.seed_list())]
        assert len(new) == len(before) == len(study.seed_list()), cell
        for seed, row in new.iterrows():
            assert _stored(row, "sample") == before[seed], (cell, seed)
            checked += 1
    assert checked >= MIN_CHECKED[table]  # every good-ops cell the defaults ran, at the paper's size


def test_the_confirmation_regenerates_from_its_committed_table(tmp_path):
    """The README's command on the committed table, from another folder: the same tables."""
    studies = ",".join(f"confirmation-{t}" for t in sorted(FULL))
    files = [PRESET_FILES[t] for t in sorted(FULL) if t in PRESET_FILES]
    p = subprocess.run([sys.executable, str(Path(ROOT) / "analyze.py"), str(CONF / "trials.csv.gz"), "--study",
                        studies, *(["--preset", ",".join(files)] if files else []), "--reading", str(CHOICE),
                        "--out", str(tmp_path / "again"), "--no-plots"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    tables = sorted({_file(t, c) for t in FULL for c in _study(t).cells})
    for name in [*tables, "paper_deviation.csv", "verdicts.csv", "preset_claims.csv"]:
        # numbers to 1e-12: the classical references' last bits follow OpenBLAS's thread count
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / name), pd.read_csv(CONF / name),
                                      check_exact=False, rtol=1e-12, obj=name)
