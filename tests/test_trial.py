"""The trial specification: unique folders, no silent reuse, retrain seeds, studies as data."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import analyze
from das.hparams import load_hparams
from das.study import STUDIES, paper_value
from das.spec import TrialSpec
from das.collect import load_trials
from das.utils import UserError
from tests.conftest import ROOT
from tests.helpers import run_retrain, run_search

QUICK = ["--batches-per-epoch", "2", "--device", "cpu", "--quiet"]


def cli(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def spec(**kw):
    base = dict(space="seq", data="blur", ops="all", method="das", seed=3)
    return TrialSpec.make(hp=load_hparams(kw.pop("preset", "H1")), **{**base, **kw})


def test_folder_is_readable_and_unique_per_specification(tmp_path):
    assert spec().folder("r") == Path("r/seq/blur/all/das/H1/seed3")  # the defaults: no suffix
    assert spec(epochs=10, order=2).folder("r").name == "seed3-e10-o2"
    assert spec(sigma_n=0.01, width=32).folder("r").name == "seed3-w32-sn0.01"
    other = load_hparams("H1")
    other.alpha_lr = 0.5  # same name, other values: the folder says so with a digest
    s = TrialSpec.make(hp=other, space="seq", data="blur", ops="all", method="das", seed=3)
    assert s.folder("r").name.startswith("seed3-h") and s.folder("r") != spec().folder("r")
    names = {spec(**kw).folder("r") for kw in ({}, {"epochs": 3}, {"order": 2}, {"width": 8}, {"batch_size": 64},
                                              {"batches_per_epoch": 4}, {"noise_sigma": 0.2}, {"sigma_n": 0.01})}
    assert len(names) == 8
    # the group pools seeds, never settings
    assert spec().group() == spec(seed=4).group() != spec(epochs=3).group()
    assert TrialSpec.from_dict(json.loads(json.dumps(spec(order=2).to_dict()))) == spec(order=2)


@pytest.mark.parametrize("kw,match", [
    ({"epochs": 0}, "--epochs must be in 1"), ({"width": -1}, "--width must be in 1"),
    ({"batches_per_epoch": 0}, "--batches-per-epoch must be in 1"), ({"seed": 2**64}, "seed must be in 0.."),
    ({"sigma_n": float("nan")}, "sigma-n must be a finite number"), ({"method": "random-search", "candidates": 0},
                                                                      "--candidates must be in 1..20"),
])
def test_bad_settings_are_one_line_errors(kw, match):
    with pytest.raises(UserError, match=match):
        spec(**kw)


def test_resume_with_other_settings_names_the_differences(tmp_path):
    out = str(tmp_path / "results")
    p = cli("search.py", "--seed", "3", "--epochs", "3", "--out", out, *QUICK)
    assert p.returncode == 0, p.stderr
    p = cli("search.py", "--seed", "3", "--epochs", "3", "--order", "2", "--width", "32", "--resume", "--out", out, *QUICK)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "differs in order, width" in p.stderr and "seed3-e3-b2" in p.stderr
    # without --resume it is a new trial in a folder of its own
    p = cli("search.py", "--seed", "3", "--epochs", "3", "--order", "2", "--width", "32", "--out", out, *QUICK)
    assert p.returncode == 0 and (tmp_path / "results/seq/blur/all/das/H1/seed3-e3-o2-w32-b2/result.json").is_file()


def test_a_folder_holding_another_specification_is_refused(tmp_path):
    r = run_search(tmp_path, "--seed", "1")
    d = Path(r["dir"])
    res = json.loads((d / "result.json").read_text())
    res["spec"]["width"] = 8  # as if another version of the code had written it here
    (d / "result.json").write_text(json.dumps(res))
    with pytest.raises(UserError, match="another specification .differs in width"):
        run_search(tmp_path, "--seed", "1", "--resume")


def test_checkpoint_of_another_trial_is_refused(tmp_path, monkeypatch):
    import das.train as train_mod
    real = train_mod.save_torch

    def killed(path, obj):
        real(path, obj)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_torch", killed)
    with pytest.raises(KeyboardInterrupt):
        run_search(tmp_path, "--seed", "0")
    with pytest.raises(KeyboardInterrupt):
        run_search(tmp_path, "--seed", "1")
    monkeypatch.setattr(train_mod, "save_torch", real)
    base = tmp_path / "results/seq/blur/all/das/H1"
    shutil.copy(base / "seed1-e2-b2/checkpoint.pt", base / "seed0-e2-b2/checkpoint.pt")
    with pytest.raises(UserError, match="checkpoint of another trial .differs in seed"):
        run_search(tmp_path, "--seed", "0", "--resume")


def test_sweep_reruns_a_trial_of_other_epochs(tmp_path):
    out = str(tmp_path / "results")
    sweep = [sys.executable, "scripts/sweep.py", "--study", "table1", "--data", "blur", "--ops", "good", "--method",
             "grad-only", "--seed", "0", "--batches-per-epoch", "2", "--workers", "1", "--out", out]
    p = subprocess.run(sweep + ["--epochs", "3"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0 and "1 to run" in p.stdout, p.stdout + p.stderr
    p = subprocess.run(sweep + ["--epochs", "3", "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "1 already done, 0 to run" in p.stdout
    p = subprocess.run(sweep + ["--epochs", "4", "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "0 already done, 1 to run" in p.stdout and "seed0-e4-b2" in p.stdout


def test_retrain_under_several_seeds_writes_a_record_each(tmp_path):
    r = run_search(tmp_path, "--seed", "5", "--ops", "good")
    d = Path(r["dir"])
    out = run_retrain(tmp_path, "--genotype", str(d / "genotype.json"), "--seed", "0-2")
    assert [Path(x["dir"]).name for x in out["results"]] == ["retrain-seed0", "retrain-seed1", "retrain-seed2"]
    psnrs = [json.loads((d / f"retrain-seed{s}" / "result.json").read_text())["architecture_psnr"] for s in range(3)]
    assert len(set(psnrs)) == 3  # fresh init and data per retrain seed
    records, _ = load_trials(tmp_path / "results")
    assert sorted(r["retrain_seed"] for r in records) == [0, 1, 2]
    assert [r["primary"] for r in records] == [False, False, False]  # the search's own seed (5) was not retrained


def test_analyze_never_pools_other_settings_and_skips_bohb(tmp_path):
    root = tmp_path / "results"
    for epochs in ("2", "3"):  # the demo's short runs beside longer ones of the same seeds
        for seed in ("0", "1"):
            run_retrain(tmp_path, "--method", "random", "--seed", seed, "--epochs", epochs)
    # a BOHB evaluation tree inside the results tree
    bohb = root / "bohb" / "run1" / "evals" / "0-0-0-b1"
    shutil.copytree(root / "seq", bohb / "seq")
    res = analyze.main(analyze.get_parser().parse_args([str(root), "--out", str(tmp_path / "a"), "--no-plots"]))
    keys = sorted((s["space"], s["data"], s["ops"], s["method"], s["preset"]) for s in res["summary"])
    assert keys == [("seq", "blur", "all", "random", "H1_e2-b2"), ("seq", "blur", "all", "random", "H1_e3-b2")]
    assert all(s["n"] == 2 for s in res["summary"])
    # a copy of a trial in a second folder: both reported, neither used
    src = root / "seq/blur/all/random/H1/seed0-e2-b2"
    shutil.copytree(src, root / "seq/blur/all/random/H1/copy-of-seed0")
    res = analyze.main(analyze.get_parser().parse_args([str(root), "--out", str(tmp_path / "b"), "--no-plots"]))
    assert sum(r == "duplicate" for r, _ in res["skipped"]) == 2
    assert next(s for s in res["summary"] if s["preset"] == "H1_e2-b2")["n"] == 1


def test_bohb_evaluation_results_are_skipped_by_kind(tmp_path):
    from das.stages import run_train
    from das.locks import unlock_all
    s = spec(method="random", epochs=1, batches_per_epoch=1).replace(stage="train")
    run_train(s, tmp_path / "results" / "elsewhere", role="bohb-evaluation", quiet=True)
    unlock_all()
    records, skipped = load_trials(tmp_path / "results")
    assert records == [] and [r for r, _ in skipped] == ["bohb"]


def test_small_table1_study_end_to_end(tmp_path):
    out = str(tmp_path / "results")
    p = subprocess.run([sys.executable, "scripts/sweep.py", "--study", "table1", "--seed", "0-1", "--epochs", "2",
                        "--batches-per-epoch", "2", "--out", out], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "32 trials, 0 already done, 32 to run" in p.stdout and "0 failed" in p.stdout
    p = cli("analyze.py", out, "--no-plots")
    assert p.returncode == 0, p.stderr
    table = p.stdout[p.stdout.index("sequential space, preset H1_e2-b2"):]
    for row in ("| good ops. | Learnable Grad. only |", "| good ops. | DAS |", "| all | Random Search |"):
        assert row in table
    assert table.count("| 2 |") >= 8  # n = 2 seeds in every cell


def test_studies_as_data():
    t1, t2 = STUDIES["table1"], STUDIES["table2"]
    assert t1.seeds == 75 and t2.seeds == 100 and STUDIES["table3"].seeds == 75
    assert len(t1.cells) == 16 and len(t1.specs()) == 16 * 75
    assert {c.method for c in t1.cells} == {"das", "grad-only", "net-only", "random", "random-search"}
    assert {c.preset for c in STUDIES["table4"].cells} >= {"BOHB-Non-Seq-Blur", "BOHB-Non-Seq-one-shot-Blur"}
    assert paper_value("seq", "blur", "all", "das", "H1") == (22.86, 15.64, 18.57)  # docs/spec.md §8's median 18.57
    assert paper_value("seq", "downsample", "good", "random-search", "H1")[2] == 17.56


def test_version_flag():
    for script in ("search.py", "retrain.py", "scripts/sweep.py"):
        p = cli(script, "--version")
        assert p.returncode == 0 and p.stdout.startswith("das 0."), script


def _incumbent(folder):
    """A preset file as bohb.py writes its incumbent.json."""
    inc = folder / "incumbent.json"
    inc.write_text(json.dumps({"name": "BOHB-one-shot-mine", "param_lr": 0.0123, "param_wd": 1e-4,
                               "param_warmup": False, "alpha_lr": 7e-4, "alpha_wd": 2e-3, "alpha_warmup": False,
                               "alpha_scheduler": None, "alpha_optimizer": "Adam"}))
    return inc


def test_a_preset_file_runs_the_studys_rows_under_it(tmp_path):
    """`sweep.py --study table3 --preset H1,incumbent.json`: H1's cells of the study, plus each of its
    rows under the file's hyperparameters, the same trials as `search.py --hparams incumbent.json`."""
    sys.path.insert(0, str(Path(ROOT) / "scripts"))
    import sweep

    inc = _incumbent(tmp_path)
    a = sweep.get_parser().parse_args(["--study", "table3", "--preset", f"H1,{inc}", "--data", "blur",
                                       "--seed", "0-1", "--out", str(tmp_path / "r")])
    specs = sweep.plan(a)
    h1 = [s for s in specs if s.preset == "H1"]
    mine = [s for s in specs if s.preset == "BOHB-one-shot-mine"]
    assert len(specs) == len(h1) + len(mine) == 2 * 2 * 2  # (good, all) x 2 seeds, twice
    hp = load_hparams(str(inc))
    want = {json.dumps(TrialSpec.make(hp=hp, space="seq", data="blur", ops=ops, method="das", seed=s).to_dict(),
                       sort_keys=True) for ops in ("good", "all") for s in (0, 1)}
    assert {json.dumps(s.to_dict(), sort_keys=True) for s in mine} == want
    assert {s.hparams["alpha_optimizer"] for s in mine} == {"Adam"}
    p = cli("scripts/sweep.py", "--study", "table3", "--preset", str(tmp_path / "missing.json"), "--dry-run")
    assert p.returncode == 2 and "missing.json" in p.stderr and "not found" in p.stderr
    # only a file named: every preset of the study is kept, and the file's rows come on top
    a = sweep.get_parser().parse_args(["--study", "table3", "--preset", str(inc), "--data", "blur",
                                       "--seed", "0", "--out", str(tmp_path / "r")])
    every = sweep.plan(a)
    presets = {c.preset for c in STUDIES["table3"].cells}
    assert {s.preset for s in every} == presets | {"BOHB-one-shot-mine"}
    assert len(every) == (len(presets) + 1) * 2  # (good, all) at one seed per preset
    p = cli("scripts/sweep.py", "--study", "table3", "--preset", "H9", "--dry-run")
    assert p.returncode == 2 and "H9" in p.stderr and "not in this study" in p.stderr


def test_analyze_counts_a_preset_files_trials_as_the_studys(tmp_path):
    """`analyze.py --study table3 --preset incumbent.json` keeps the study's trials and those of its
    rows under the file (the specifications sweep.py --preset runs), and nothing else."""
    inc = _incumbent(tmp_path)
    hp = load_hparams(str(inc))
    specs = {"h2": TrialSpec.make(hp=load_hparams("H2"), space="seq", data="blur", ops="all", method="das", seed=3),
             "mine": TrialSpec.make(hp=hp, space="seq", data="downsample", ops="good", method="das", seed=74),
             "late": TrialSpec.make(hp=hp, space="seq", data="blur", ops="all", method="das", seed=75),
             "cell": TrialSpec.make(hp=hp, space="cell", data="blur", ops="all", method="das", seed=0)}
    records = [{"group": s.group(), "seed": s.seed, "label": k} for k, s in specs.items()]
    kept, _ = analyze.only_study(records, "table3", "trials.csv", str(inc))
    assert [r["label"] for r in kept] == ["h2", "mine"]
    kept, note = analyze.only_study(records, "table3", "trials.csv")
    assert [r["label"] for r in kept] == ["h2"] and "1 of the 4 trials" in note
    p = cli("analyze.py", str(tmp_path), "--study", "table3", "--preset", "H2")
    assert p.returncode == 2 and "JSON preset files" in p.stderr
    p = cli("analyze.py", str(tmp_path), "--preset", str(inc))
    assert p.returncode == 2 and "--study" in p.stderr
