"""The committed BOHB runs (reproduction/bohb/<run>/): hpbandster's own logs (configs.json,
results.json) read with plain json, against what bohb.py reported from them (incumbent.json, the
trajectory, summary.csv), and the incumbent's best evaluation run again alone with search.py."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import bohb
from das.spec import SETTINGS
from tests.conftest import ROOT

RUNS = sorted(p.parent for p in (Path(ROOT) / "reproduction" / "bohb").glob("*/results.json"))


def _logs(run: Path):
    configs = {tuple(c[0]): c[1] for c in map(json.loads, (run / "configs.json").read_text().splitlines())}
    rows = []
    for line in (run / "results.json").read_text().splitlines():
        cid, budget, stamps, result, exc = json.loads(line)
        loss = result["loss"] if result and exc is None else float("inf")
        rows.append({"config_id": "-".join(map(str, cid)), "cid": tuple(cid), "budget": budget, "loss": loss,
                     "finished": stamps["finished"]})
    return configs, pd.DataFrame(rows)


@pytest.fixture(params=RUNS, ids=[r.name for r in RUNS])
def run(request):
    return request.param


def test_the_incumbent_is_the_best_configuration_at_the_largest_budget(run):
    """incumbent.json: the lowest finite loss among the evaluations at the run's largest budget, its
    configuration in hpbandster's log, written as a preset."""
    configs, rows = _logs(run)
    settings = json.loads((run / "settings.json").read_text())
    summary = json.loads((run / "bohb_summary.json").read_text())
    assert len(rows) == summary["evaluations"]
    top = rows[(rows["budget"] == rows["budget"].max()) & rows["loss"].map(lambda v: v != float("inf"))]
    assert rows["budget"].max() == pytest.approx(settings["max_budget"])
    best = top.loc[top["loss"].idxmin()]
    want = bohb.config_to_hparams(configs[best["cid"]], "x").to_dict()
    got = json.loads((run / "incumbent.json").read_text())
    assert {k: v for k, v in got.items() if k != "name"} == {k: v for k, v in want.items() if k != "name"}
    assert summary["incumbent_psnr"] == -best["loss"]


def test_the_trajectory_is_the_running_best_of_the_log(run):
    """trajectory.csv: the evaluations in the order they finished, the best PSNR so far at the largest
    budget (pandas' cummax over the log)."""
    _, rows = _logs(run)
    rows = rows.sort_values("finished", kind="stable").reset_index(drop=True)
    psnr = (-rows["loss"]).where(rows["loss"] != float("inf"))
    top = psnr.where(rows["budget"] == rows["budget"].max()).cummax().ffill()  # cummax keeps NaN in place
    got = pd.read_csv(run / "trajectory.csv", float_precision="round_trip")
    assert list(got["config_id"]) == list(rows["config_id"])
    pd.testing.assert_series_equal(got["best_psnr_at_max_budget"], top, check_names=False)
    pd.testing.assert_series_equal(got["best_psnr_any_budget"], psnr.cummax().ffill(), check_names=False)
    assert (run / "trajectory.png").stat().st_size > 10_000 and (run / "trajectory.pdf").exists()


def test_the_incumbents_best_evaluation_reruns_alone_to_the_last_bit(run, tmp_path):
    """search.py with incumbent.json at the largest budget, the run's seed and settings: the same
    one-shot PSNR as the BOHB evaluation (a function of its specification alone); for the final
    objective, retrain.py on the genotype that search derives, at the same budget: the same
    architecture PSNR."""
    settings = json.loads((run / "settings.json").read_text())
    summary = json.loads((run / "bohb_summary.json").read_text())
    if settings["objective"] not in ("one-shot", "final") or not str(settings["seed"]).isdigit():
        pytest.skip("only a one-shot or final evaluation on one seed is a single search (and retrain)")
    flags = []
    for k in ("space", "data", "ops", *(s.name for s in SETTINGS if s.name != "epochs")):  # every trial setting
        flags += [f"--{k.replace('_', '-')}", str(settings[k])]
    epochs = str(max(1, round(settings["max_budget"])))
    p = subprocess.run([sys.executable, str(Path(ROOT) / "search.py"), "--hparams", str(run / "incumbent.json"),
                        "--seed", str(settings["seed"]), "--epochs", epochs, *flags, "--no-plot",
                        "--out", str(tmp_path / "r")], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    (result,) = (tmp_path / "r").rglob("result.json")
    if settings["objective"] == "one-shot":
        assert json.loads(result.read_text())["one_shot_psnr"] == summary["incumbent_psnr"]
        return
    p = subprocess.run([sys.executable, str(Path(ROOT) / "retrain.py"), "--genotype",
                        str(result.parent / "genotype.json"), "--quiet"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    (trained,) = (r for r in (tmp_path / "r").rglob("result.json") if r != result)
    got = json.loads(trained.read_text())
    assert got["retrain_seed"] == int(settings["seed"]) and got["spec"]["epochs"] == int(epochs)
    assert got["architecture_psnr"] == summary["incumbent_psnr"]
