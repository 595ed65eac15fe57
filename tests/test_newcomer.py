"""What a newcomer reaches for: the README's Python block runs as written, one hyperparameter of a
preset replaced from the command line, scheduler and optimizer names in any case, many genotypes
retrained in one call, and the flags that mean one thing everywhere."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import retrain
from das.hparams import HParams, load_hparams, override
from das.utils import UserError
from tests.conftest import ROOT
from tests.helpers import run_retrain, run_search


def test_readme_python_block_runs_as_written(tmp_path):
    text = (Path(ROOT) / "README.md").read_text()
    code = text.split("### From Python (a notebook)", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    rows = eval(p.stdout.strip().splitlines()[-1])  # the printed (seed, one-shot, architecture) triples
    assert sorted(r[0] for r in rows) == [0, 1, 2] and all(isinstance(r[2], float) for r in rows)
    folders = list((tmp_path / "results").rglob("result.json"))
    assert any("-thetasgd-h" in str(f) for f in folders)  # the reading and the changed preset name the folder


def test_set_replaces_one_value_and_names_the_folder(tmp_path):
    h1 = load_hparams("H1")
    h = override(h1, ["alpha_lr=0.01", "alpha_scheduler=none", "param_warmup=True"])
    assert (h.alpha_lr, h.alpha_scheduler, h.param_warmup) == (0.01, None, True)
    assert {k: v for k, v in h.values().items() if v != h1.values()[k]} == {
        "alpha_lr": 0.01, "alpha_scheduler": None, "param_warmup": True}
    with pytest.raises(UserError, match="expected KEY=VALUE with KEY one of"):
        override(h1, ["lr=0.1"])
    with pytest.raises(UserError, match="alpha_lr must be a finite number >= 0"):
        override(h1, ["alpha_lr=-1"])
    r = run_search(tmp_path, "--seed", "0", "--set", "alpha_lr=0.01", "--no-plot")
    assert Path(r["dir"]).name.startswith("seed0-e2-b2-h") and r["spec"]["hparams"]["alpha_lr"] == 0.01


@pytest.mark.parametrize("value,want", [("linear", "Linear"), ("LINEAR", "Linear"), ("none", None), ("None", None)])
def test_scheduler_and_optimizer_names_in_any_case(value, want):
    d = {**HParams().values(), "alpha_scheduler": value, "alpha_optimizer": "adam"}
    h = HParams.from_dict(d, "x")
    assert h.alpha_scheduler == want and h.alpha_optimizer == "Adam"


def test_many_genotypes_retrain_in_one_call(tmp_path):
    """A folder of searches: every searched genotype under it, retrained as one batch."""
    searched = run_search(tmp_path, "--seed", "0-2", "--no-plot")
    tree = Path(searched["dir"]).parent
    r = run_retrain(tmp_path, "--genotype", str(tree))
    assert len(r["results"]) == 3 and {x["status"] for x in r["results"]} == {"complete"}
    assert all((tree / f"seed{s}-e2-b2" / f"retrain-seed{s}" / "result.json").is_file() for s in range(3))
    logs = {(Path(x["dir"]) / "log.txt").read_text() for x in r["results"]}
    assert all("3 networks" in log for log in logs)  # one batch of three
    # the files of two of them, named one by one: the finished ones are kept, nothing runs twice
    files = [str(tree / f"seed{s}-e2-b2" / "genotype.json") for s in (0, 1)]
    again = run_retrain(tmp_path, "--genotype", *files)
    assert [x["architecture_psnr"] for x in again["results"]] == [x["architecture_psnr"] for x in r["results"][:2]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no genotype.json of a finished search under this folder"):
        run_retrain(tmp_path, "--genotype", str(tmp_path / "empty"))


@pytest.mark.parametrize("script", ["search.py", "retrain.py", "bohb.py", "analyze.py", "scripts/sweep.py",
                                    "scripts/readings.py"])
def test_every_script_has_version_and_one_line_usage_errors(script):
    p = subprocess.run([sys.executable, script, "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("das "), p.stderr
    p = subprocess.run([sys.executable, script, "--no-such-flag"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_device_and_threads_mean_one_thing_everywhere():
    """--device defaults to cpu in every script (also where CUDA is present: README, Measured here);
    --threads is torch threads per process."""
    import analyze  # noqa: F401
    import bohb
    import search
    sys.path.insert(0, str(Path(ROOT) / "scripts"))
    import sweep

    for parser in (search.get_parser(), retrain.get_parser(), bohb.get_parser(), sweep.get_parser()):
        actions = {a.dest: a for a in parser._actions}
        assert actions["device"].default is None, parser.prog
        assert actions["device"].help.startswith("cpu, cuda or cuda:N (default cpu")
        assert "torch threads per process" in actions["threads"].help


def test_a_folder_of_genotypes_means_the_finished_searches_only(tmp_path):
    """Baselines' and BOHB evaluations' genotype.json files under the folder are not searches."""
    run_search(tmp_path, "--seed", "0", "--no-plot")
    run_retrain(tmp_path, "--method", "random", "--seed", "0")
    files = retrain.genotype_files([str(tmp_path / "results")])
    assert [f.parent.name for f in files] == ["seed0-e2-b2"] and "/das/" in str(files[0])


def test_bohb_resume_accepts_its_own_earlier_settings(tmp_path):
    """A run folder written by an earlier version (seed stored as 0, another thread count) resumes."""
    import bohb

    out = tmp_path / "b"
    out.mkdir()
    for name in bohb.LOGS:
        (out / name).write_text("")
    a = bohb.get_parser().parse_args(["--out", str(out), "--resume", "--threads", "2"])
    old = {k: getattr(a, k) for k in bohb.EVAL_SETTINGS}
    (out / bohb.SETTINGS_FILE).write_text(json.dumps({**old, "seed": 0, "threads": 1}))
    assert bohb._prepare_out(a, out) is not None  # kept aside for the warm start, no refusal
    (out / bohb.SETTINGS_FILE).write_text(json.dumps({**old, "seed": 3}))
    for name in bohb.LOGS:
        (out / name).write_text("")
    with pytest.raises(UserError, match="continues a run of other settings .seed"):
        bohb._prepare_out(a, out)


def test_tensorboard_flag_writes_every_network_from_the_command_line(tmp_path):
    """search.py and retrain.py --tensorboard, as real processes: the search's supernet and each
    of random search's candidates get their own TensorBoard folder, whose train/loss steps are the
    epochs of metrics.csv beside it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "res"
    common = ["--epochs", "2", "--batches-per-epoch", "2", "--batch-size", "16", "--quiet", "--tensorboard",
              "--out", str(out)]
    for cmd in (["search.py", "--seed", "0", "--no-plot"], ["retrain.py", "--method", "random-search", "--seed", "0"]):
        p = subprocess.run([sys.executable, str(Path(ROOT) / cmd[0]), *cmd[1:], *common], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
        assert p.returncode == 0, p.stderr
    boards = sorted(d for d in out.rglob("tensorboard") if d.is_dir())
    assert len(boards) == 2
    search_board = next(d for d in boards if "/das/" in str(d))
    random_board = next(d for d in boards if "/random-search/" in str(d))
    candidates = sorted(d.name for d in random_board.iterdir() if d.is_dir())
    assert candidates == [f"candidate{k}" for k in range(len(list(random_board.parent.glob("candidate*_metrics.csv"))))]
    assert candidates, "random search trains candidates"
    for folder, csv in [(search_board, search_board.parent / "metrics.csv")] + \
            [(random_board / c, random_board.parent / f"{c}_metrics.csv") for c in candidates]:
        acc = EventAccumulator(str(folder))
        acc.Reload()
        epochs = [int(line.split(",")[0]) for line in csv.read_text().splitlines()[1:]]
        assert [e.step for e in acc.Scalars("train/loss")] == epochs == [1, 2]
