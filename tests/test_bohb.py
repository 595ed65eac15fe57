"""bohb.py: a complete tiny run with 2 local workers, a coordinating master with workers joined from
its printed command (one killed mid-run), the config space, failures, bad input."""
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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
    # the trajectory: every evaluation once, the best so far at the largest budget equal to the best
    # of summary.csv's evaluations there (pandas), the paper's preset beside the incumbent
    import pandas as pd

    traj, evals = pd.read_csv(out / "trajectory.csv"), pd.read_csv(out / "summary.csv")
    assert len(traj) == 4 and sorted(traj["config_id"]) == sorted(evals["config_id"])
    assert traj["best_psnr_at_max_budget"].dropna().iloc[-1] == evals.loc[evals["budget"] == 3, "psnr"].max()
    assert traj["best_psnr_any_budget"].dropna().is_monotonic_increasing
    assert (out / "trajectory.png").is_file() and (out / "trajectory.pdf").is_file()
    vs = pd.read_csv(out / "incumbent_vs_paper.csv").set_index("hyperparameter")
    paper = json.loads((Path(ROOT) / "das" / "configs" / "BOHB-one-shot-Blur.json").read_text())
    assert float(vs.loc["alpha_lr", "paper (BOHB-one-shot-Blur)"]) == pytest.approx(paper["alpha_lr"], rel=1e-3)
    assert vs.loc["alpha_optimizer", "paper (BOHB-one-shot-Blur)"] == paper["alpha_optimizer"]
    summary_rates = json.loads((out / "bohb_summary.json").read_text())
    assert summary_rates["search_epochs"] == 3 * 1 + 1 * 3 and summary_rates["paper_preset"] == "BOHB-one-shot-Blur"
    inc = json.loads((out / "incumbent.json").read_text())
    assert float(vs.loc["param_lr", "incumbent"]) == pytest.approx(inc["param_lr"], rel=1e-3)
    assert set(inc) == {"name", "param_lr", "param_wd", "param_warmup", "alpha_lr", "alpha_wd", "alpha_warmup",
                        "alpha_scheduler", "alpha_optimizer"}
    assert isinstance(inc["param_warmup"], bool) and inc["alpha_scheduler"] in (None, "Linear")
    # search.py takes the incumbent as it is
    r = run_search(tmp_path, "--hparams", str(out / "incumbent.json"))
    assert r["spec"]["hparams"]["param_lr"] == inc["param_lr"] and r["preset"] == inc["name"]
    # and the README's recipe runs Table 3's rows under it beside H1 (from another folder)
    p = subprocess.run([sys.executable, str(Path(ROOT) / "scripts" / "sweep.py"), "--study", "table3", "--preset",
                        f"H1,{out / 'incumbent.json'}", "--seed", "0", "--dry-run"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "8 trials" in p.stdout and p.stdout.count(f"/das/{inc['name']}/seed0") == 4, p.stdout
    # and a second run warm-starts from the first one's log
    r2 = bohb.main(args(tmp_path, "--workers", "1", "--worker-threads", "--previous", str(out),
                        "--out", str(tmp_path / "bohb2")))
    assert r2["evaluations"] == 8 and (tmp_path / "bohb2" / "incumbent.json").is_file()
    # a second run into the same folder must say what it wants; --resume continues from the folder's own logs
    with pytest.raises(UserError, match="holds an earlier BOHB run"):
        bohb.main(args(tmp_path, "--workers", "1", "--worker-threads", "--out", str(out)))
    r3 = bohb.main(args(tmp_path, "--workers", "1", "--worker-threads", "--resume", "--out", str(out)))
    assert r3["evaluations"] == 8 and (out / "previous-1" / "results.json").is_file()


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def test_coordinating_master_and_joined_workers_survive_a_killed_worker(tmp_path):
    """--workers 0: the master only coordinates; two workers started from the join command it prints
    take every setting from its settings.json; one is killed -9 mid-evaluation and the run completes."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    master_log = open(tmp_path / "master.log", "w+")
    procs, workers = [], []
    try:
        master = subprocess.Popen([sys.executable, "bohb.py", "--workers", "0", "--iterations", "1", "--min-budget", "3",
                                   "--max-budget", "9", "--batches-per-epoch", "4", "--ping-interval", "2",
                                   "--out", str(out)], cwd=ROOT, stdout=master_log, stderr=subprocess.STDOUT, env=env)
        procs.append(master)
        join, deadline = None, time.time() + 60
        while join is None and time.time() < deadline and master.poll() is None:
            text = (tmp_path / "master.log").read_text()
            if "`" in text:
                join = text.split("`")[1]
            time.sleep(0.1)
        assert join, (tmp_path / "master.log").read_text()
        cmd = shlex.split(join)
        assert cmd[0] == "python" and cmd[1] == os.path.join(ROOT, "bohb.py") and cmd[2] == "--worker"
        assert "127.0.0.1:" in join and str(out) in join
        for k in range(2):
            log = open(tmp_path / f"worker{k}.log", "w")
            w = subprocess.Popen([sys.executable] + cmd[1:], cwd=tmp_path if k else ROOT, stdout=log,
                                 stderr=subprocess.STDOUT, env={**env, "PYTHONPATH": ROOT})
            procs.append(w)
            workers.append(w)
        victim, deadline = None, time.time() + 60
        while victim is None and time.time() < deadline and master.poll() is None:
            for lock in (out / "evals").rglob(".lock"):  # an evaluation in flight, and whose
                try:
                    pid = json.loads(lock.read_text())["pid"]
                except (OSError, ValueError, KeyError):
                    continue
                victim = next((w for w in workers if w.pid == pid), None)
                if victim:
                    break
            time.sleep(0.05)
        assert victim is not None, "no evaluation caught in flight"
        victim.send_signal(signal.SIGKILL)
        try:
            code = master.wait(timeout=90)
        except subprocess.TimeoutExpired:
            code = "timed out"
        assert code == 0, "\n".join(f"--- {f.name}\n{f.read_text()[-2000:]}" for f in sorted(tmp_path.glob("*.log")))
    finally:
        _stop(procs)
    summary = json.loads((out / "bohb_summary.json").read_text())
    assert summary["evaluations"] == 4 and summary["failed"] == 1, summary
    assert summary["incumbent"] is not None and (out / "incumbent.json").is_file()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["batches_per_epoch"] == 4 and settings["max_budget"] == 9 and settings["out"] == str(out)
    searches = [json.loads(f.read_text()) for f in (out / "evals").rglob("result.json")]
    assert searches and all(r["role"] == "bohb-evaluation" and r["spec"]["batches_per_epoch"] == 4 for r in searches)


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
    real, calls = bohb.run_searches, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) % 2:
            raise RuntimeError("worker blew up")
        return real(*a, **k)

    monkeypatch.setattr(bohb, "run_searches", flaky)
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
        bohb.main(bohb.get_parser().parse_args(["--worker", "--nameserver", f"127.0.0.1:{port}", "--run-id", "x",
                                                "--out", str(tmp_path)]))
    assert time.time() - t0 < bohb.CONNECT_TIMEOUT + 5


def test_worker_takes_no_settings_of_its_own(tmp_path):
    with socket.socket() as s:  # something listens where the nameserver would be
        s.bind(("127.0.0.1", 0))
        s.listen()
        ns = f"127.0.0.1:{s.getsockname()[1]}"
        base = ["--worker", "--nameserver", ns, "--run-id", "x", "--out", str(tmp_path)]
        with pytest.raises(UserError, match="from the master's settings.json; drop --objective, --threads"):
            bohb.main(bohb.get_parser().parse_args(base + ["--objective", "final", "--threads", "2"]))
        with pytest.raises(UserError, match="no settings of a running optimisation"):
            bohb.main(bohb.get_parser().parse_args(base))


def test_a_master_on_all_interfaces_advertises_an_address():
    import ipaddress
    assert ipaddress.ip_address(bohb.interface_address()).version == 4


def test_corrupt_previous_is_one_line(tmp_path):
    prev = tmp_path / "prev"
    prev.mkdir()
    (prev / "configs.json").write_text("[[0, 0, 0], {\"param_lr\": 0.1")
    (prev / "results.json").write_text("not json\n")
    with pytest.raises(UserError, match="the hpbandster log is corrupt"):
        bohb.main(args(tmp_path, "--previous", str(prev)))


@pytest.mark.parametrize("flag,value", [("--min-budget", "nan"), ("--max-budget", "inf"), ("--eta", "nan"),
                                        ("--min-budget", "-1"), ("--ping-interval", "inf")])
def test_non_finite_numbers_are_one_line_exit_2(tmp_path, flag, value):
    p = subprocess.run([sys.executable, "bohb.py", "--out", str(tmp_path / "b"), flag, value], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert p.stderr.startswith(f"error: {flag}") and not (tmp_path / "b").exists()


@pytest.mark.parametrize("extra,match", [
    (["--workers", "-1"], "--workers must be in 0..256"),
    (["--resume", "--overwrite"], "exclude each other"),
    (["--resume"], "holds no earlier run"),
    (["--min-budget", "10", "--max-budget", "5"], "--min-budget 10 is above --max-budget 5"),
    (["--worker", "--nameserver", "localhost"], "HOST:PORT"),
    (["--previous", "/nonexistent/run"], "no hpbandster log"),
])
def test_bad_input(tmp_path, extra, match):
    with pytest.raises(UserError, match=match):
        bohb.main(args(tmp_path, *extra))


@pytest.mark.parametrize("extra,match", [(["--objective", "accuracy"], "invalid choice: 'accuracy'"),
                                         (["--space", "sequential"], "invalid choice: 'sequential'"),
                                         (["--min-budget", "1e-300"], "--min-budget and --max-budget must be at least 1"),
                                         (["--min-budget", "1", "--max-budget", "10000", "--eta", "1.5"],
                                          "successive-halving rungs"),
                                         (["--version"], None)])
def test_flags_are_checked_before_anything_starts(tmp_path, extra, match):
    """bohb.py's flags: argparse choices (one line), its budget range bounded in rungs, --version."""
    p = subprocess.run([sys.executable, "bohb.py", "--out", str(tmp_path / "b"), *extra], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    if match is None:
        assert p.returncode == 0 and p.stdout.startswith("das ")
        return
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and match in p.stderr, p.stderr
    assert not (tmp_path / "b").exists()


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
