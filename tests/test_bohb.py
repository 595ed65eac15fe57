"""bohb.py: a complete tiny run with 2 local workers, the config space, failures, bad input."""
import json
import socket
import subprocess
import sys
import time

import pytest

import bohb
from das.utils import UserError
from tests.conftest import ROOT
from tests.helpers import run_search


def args(tmp_path, *extra):
    return bohb.get_parser().parse_args(["--iterations", "1", "--min-budget", "1", "--max-budget", "3",
                                         "--batches-per-epoch", "2", "--out", str(tmp_path / "bohb"), *extra])


def test_complete_run_with_two_worker_processes(tmp_path):
    """A real hpbandster run over Pyro4 on loopback finishes in bounded time and writes a usable preset."""
    t0 = time.time()
    p = subprocess.run([sys.executable, "bohb.py", "--iterations", "1", "--min-budget", "1", "--max-budget", "3",
                        "--workers", "2", "--batches-per-epoch", "2", "--out", str(tmp_path / "bohb")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert time.time() - t0 < 300
    out = tmp_path / "bohb"
    for f in ("configs.json", "results.json", "summary.csv", "incumbent.json", "bohb_summary.json"):
        assert (out / f).is_file(), f
    summary = json.loads((out / "bohb_summary.json").read_text())
    # eta 3 from budget 1 to 3: one bracket of 3 configs at budget 1, the best one again at 3
    assert summary["evaluations"] == 4 and summary["failed"] == 0
    assert len((out / "summary.csv").read_text().strip().splitlines()) == 5
    inc = json.loads((out / "incumbent.json").read_text())
    assert set(inc) == {"name", "param_lr", "param_wd", "param_warmup", "alpha_lr", "alpha_wd", "alpha_warmup",
                        "alpha_scheduler", "alpha_optimizer"}
    assert isinstance(inc["param_warmup"], bool) and inc["alpha_scheduler"] in (None, "Linear")
    # search.py takes the incumbent as it is
    r = run_search(tmp_path, "--hparams", str(out / "incumbent.json"))
    assert r["spec"]["hparams"]["param_lr"] == inc["param_lr"] and r["preset"] == inc["name"]
    # and a second run warm-starts from the first one's log
    r2 = bohb.main(args(tmp_path, "--workers", "1", "--worker-threads", "--previous", str(out),
                        "--out", str(tmp_path / "bohb2")))
    assert r2["evaluations"] == 8 and (tmp_path / "bohb2" / "incumbent.json").is_file()


def test_configspace_matches_table7():
    cs = bohb.get_configspace(0)
    hp = {h.name: h for h in cs.values()}
    assert (hp["param_lr"].lower, hp["param_lr"].upper, hp["param_lr"].log) == (1e-5, 1.0, True)
    assert (hp["param_wd"].lower, hp["param_wd"].upper, hp["param_wd"].log) == (1e-8, 0.1, True)
    assert (hp["alpha_lr"].lower, hp["alpha_lr"].upper, hp["alpha_lr"].log) == (1e-5, 0.1, True)
    assert (hp["alpha_wd"].lower, hp["alpha_wd"].upper, hp["alpha_wd"].log) == (1e-5, 0.1, True)
    assert set(hp["alpha_optimizer"].choices) == {"Adam", "GradientDescent"}
    assert set(hp["alpha_scheduler"].choices) == {"None", "Linear"}
    assert set(hp["param_warmup"].choices) == set(hp["alpha_warmup"].choices) == {"True", "False"}
    # sampled configs become plain Python hyperparameters, never numpy types
    h = bohb.config_to_hparams(dict(cs.sample_configuration()), "x")
    assert type(h.param_lr) is float and type(h.alpha_warmup) is bool and type(h.alpha_optimizer) is str


def test_crashing_evaluations_do_not_stop_the_run(tmp_path, monkeypatch):
    real, calls = bohb.run_search, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) % 2:
            raise RuntimeError("worker blew up")
        return real(*a, **k)

    monkeypatch.setattr(bohb, "run_search", flaky)
    r = bohb.main(args(tmp_path, "--workers", "2", "--worker-threads"))
    assert r["evaluations"] == 4 and r["failed"] >= 1 and r["incumbent"] is not None
    rows = (tmp_path / "bohb" / "summary.csv").read_text()
    assert "crashed" in rows and "inf" in rows


def test_diverging_evaluation_is_infinite_loss(tmp_path):
    a = args(tmp_path)
    cfg = {"param_lr": 1e6, "param_wd": 0.0, "param_warmup": "False", "alpha_lr": 0.1, "alpha_wd": 1e-5,
           "alpha_warmup": "False", "alpha_scheduler": "None", "alpha_optimizer": "Adam"}
    r = bohb.evaluate_config(a, cfg, 3, "wild")
    assert r["loss"] == float("inf") and r["info"]["status"] == "diverged"


def test_unreachable_nameserver_fails_fast(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.time()
    with pytest.raises(UserError, match=f"cannot reach the nameserver at 127.0.0.1:{port}"):
        bohb.main(args(tmp_path, "--worker", "--nameserver", f"127.0.0.1:{port}", "--run-id", "x"))
    assert time.time() - t0 < bohb.CONNECT_TIMEOUT + 5


@pytest.mark.parametrize("extra,match", [
    (["--objective", "accuracy"], "unknown objective 'accuracy'"),
    (["--min-budget", "10", "--max-budget", "5"], "--min-budget 10 is above --max-budget 5"),
    (["--worker", "--nameserver", "localhost"], "HOST:PORT"),
    (["--previous", "/nonexistent/run"], "no hpbandster log"),
])
def test_bad_input(tmp_path, extra, match):
    with pytest.raises(UserError, match=match):
        bohb.main(args(tmp_path, *extra))


@pytest.mark.parametrize("objective", ["final", "das-single"])
def test_other_objectives(tmp_path, objective):
    r = bohb.main(args(tmp_path, "--objective", objective, "--workers", "1", "--worker-threads"))
    assert r["evaluations"] == 4 and r["failed"] == 0 and r["incumbent"] is not None
    results = sorted((tmp_path / "bohb" / "evals").rglob("result.json"))
    searches = [f for f in results if f.parent.name.startswith("seed")]
    res = json.loads(searches[0].read_text())
    assert res["role"] == "bohb-evaluation"  # never read as a trial of a study
    if objective == "final":
        assert res["status"] == "searched" and (searches[0].parent / "retrain-seed0" / "network.pt").is_file()
    else:
        assert res["method"] == "das-single" and (tmp_path / "bohb" / "pretrained" / "grad-only.pt").is_file()
