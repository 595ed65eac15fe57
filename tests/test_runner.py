"""das/runner.py and scripts/sweep.py: a real Dask cluster on loopback, a worker killed mid-sweep, two
sweeps over one tree, the shared-filesystem lock and its stale rule, bad input."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from das import locks as trial
from das.runner import run_sweep
from das.locks import TrialLocked, lock_trial, unlock_trial
from das.spec import TrialSpec
from das.hparams import load_hparams
from das.utils import UserError
from tests.conftest import ROOT

SWEEP = [sys.executable, os.path.join(ROOT, "scripts", "sweep.py")]
ENV = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(procs):
    """Stop every process we started, by its pid: TERM, then KILL after a grace period."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def logs(tmp_path) -> str:
    return "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(tmp_path.glob("*.log")))


def start_cluster(tmp_path, n_workers=2):
    """A `dask scheduler` and `dask worker`s on 127.0.0.1 (no nanny: a kill -9 kills the trial's process)."""
    port = free_port()
    dask = str(Path(sys.executable).parent / "dask")
    procs, workers = [], []
    log = open(tmp_path / "scheduler.log", "w")
    procs.append(subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=ENV))
    for k in range(n_workers):
        log = open(tmp_path / f"worker{k}.log", "w")
        w = subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-nanny",
                              "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{k}"],
                             stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=ENV)
        procs.append(w)
        workers.append(w)
    return f"tcp://127.0.0.1:{port}", procs, workers


def sweep_cmd(out, *extra):
    return SWEEP + ["--study", "table1", "--data", "blur", "--ops", "good", "--method", "grad-only,das",
                    "--seed", "0-1", "--batches-per-epoch", "2", "--out", str(out), *extra]


def results(out) -> dict:
    """Every result file under out: relative folder -> (status, one-shot PSNR, architecture PSNR)."""
    return {str(f.parent.relative_to(out)): (r["status"], r["one_shot_psnr"], r["architecture_psnr"])
            for f in sorted(Path(out).rglob("result.json")) for r in [json.loads(f.read_text())]}


def done_lines(out) -> dict:
    """How often each stage of each trial logged its end: a trial run twice would log it twice."""
    return {str(f.parent.relative_to(out)): sum(" done: " in line for line in f.read_text().splitlines())
            for f in sorted(Path(out).rglob("log.txt"))}


def test_sweep_on_a_cluster_survives_a_killed_worker(tmp_path):
    """kill -9 of a worker mid-trial: Dask reruns its task elsewhere, the rerun takes over the dead
    owner's lock and resumes from the epoch checkpoint; every result once, numbers as an inline run."""
    address, procs, workers = start_cluster(tmp_path)
    out = tmp_path / "dask"
    sweep = None
    try:
        log = open(tmp_path / "sweep.log", "w")
        sweep = subprocess.Popen(sweep_cmd(out, "--epochs", "12", "--scheduler", address), stdout=log,
                                 stderr=subprocess.STDOUT, cwd=tmp_path, env=ENV)
        procs.append(sweep)
        victim, deadline = None, time.time() + 60
        while victim is None and time.time() < deadline and sweep.poll() is None:
            # a worker holding a trial whose epoch checkpoint exists is mid-trial
            for lock in out.rglob(".lock"):
                try:
                    pid = json.loads(lock.read_text())["pid"]
                except (OSError, ValueError, KeyError):
                    continue
                w = next((w for w in workers if w.pid == pid), None)
                if w is not None and list(lock.parent.glob("*checkpoint.pt")):
                    victim, killed = w, lock.parent
                    break
            time.sleep(0.1)
        assert victim is not None, "no trial was caught mid-flight\n" + logs(tmp_path)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        assert sweep.wait(timeout=120) == 0, logs(tmp_path)
    finally:
        stop(procs)
    text = (tmp_path / "sweep.log").read_text()
    assert "0 failed" in text and "FAILED" not in text, text
    assert f"warning: {address} is not TLS: the cluster authenticates no one" in text  # a plain tcp:// cluster
    assert "resuming from epoch" in (killed / "log.txt").read_text()
    assert not list(out.rglob(".lock*"))  # every lock released
    # the same sweep inline, in this process, with no Dask at all
    ref = tmp_path / "inline"
    specs = [TrialSpec.make(hp=load_hparams("H1"), space="seq", data="blur", ops="good", method=m, seed=s,
                            epochs=12, batches_per_epoch=2) for m in ("grad-only", "das") for s in (0, 1)]
    r = run_sweep(specs, ref, inline=True)
    assert r["failed"] == [] and r["ran"] == 4
    assert results(out) == results(ref) and len(results(out)) == 6  # 2 baselines, 2 searches and 2 retrains
    assert set(done_lines(out).values()) == {1}


def test_two_sweeps_over_one_tree_never_run_a_trial_twice(tmp_path):
    """An embedded-cluster sweep and an inline one started at once: neither fails, each trial runs once."""
    out = tmp_path / "results"
    logs_ = [open(tmp_path / f"sweep{k}.log", "w") for k in range(2)]
    procs = []
    try:
        procs.append(subprocess.Popen(sweep_cmd(out, "--epochs", "10", "--workers", "2", "--retry-wait", "1"),
                                      stdout=logs_[0], stderr=subprocess.STDOUT, cwd=tmp_path, env=ENV))
        procs.append(subprocess.Popen(sweep_cmd(out, "--epochs", "10", "--inline", "--retry-wait", "1"),
                                      stdout=logs_[1], stderr=subprocess.STDOUT, cwd=tmp_path, env=ENV))
        codes = [p.wait(timeout=150) for p in procs]
    finally:
        stop(procs)
    text = logs(tmp_path)
    assert codes == [0, 0], text
    assert "FAILED" not in text and text.count("0 failed") == 2, text
    assert "finished elsewhere" in text  # they did meet: one found trials the other had run
    assert len(results(out)) == 6 and {v[0] for v in results(out).values()} <= {"complete", "searched"}
    assert set(done_lines(out).values()) == {1}, (done_lines(out), text)
    assert not list(out.rglob(".lock*"))


# ---------------------------------------------------------------------------- the lock
def _write_lock(folder: Path, **owner):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(json.dumps({"since": "then", "token": "theirs", **owner}))
    return folder / ".lock"


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stale_lock_rule_and_takeover(tmp_path):
    here = socket.gethostname()
    # a live owner on this host (this very process, holding it by other means): locked
    _write_lock(tmp_path / "a", host=here, pid=os.getpid())
    with pytest.raises(TrialLocked, match="another process is running this trial"):
        lock_trial(tmp_path / "a")
    # its owner was killed (same host, pid gone): taken over at once
    _write_lock(tmp_path / "b", host=here, pid=dead_pid())
    lock_trial(tmp_path / "b")
    mine = json.loads((tmp_path / "b" / ".lock").read_text())
    assert mine["pid"] == os.getpid() and mine["token"] != "theirs"
    unlock_trial(tmp_path / "b")
    assert not (tmp_path / "b" / ".lock").exists()
    # another host's lock: its pid means nothing here; live while its heartbeat is fresh, stale after
    lock = _write_lock(tmp_path / "c", host="elsewhere.example", pid=1)
    with pytest.raises(TrialLocked, match="host elsewhere.example pid 1"):
        lock_trial(tmp_path / "c")
    old = time.time() - trial.STALE - 5
    os.utime(lock, (old, old))
    lock_trial(tmp_path / "c")
    assert json.loads(lock.read_text())["host"] == here
    # a lock taken over from us (we paused past the stale limit) is not ours to remove
    _write_lock(tmp_path / "c", host="elsewhere.example", pid=1)
    unlock_trial(tmp_path / "c")
    assert json.loads(lock.read_text())["host"] == "elsewhere.example"
    assert not list(tmp_path.rglob(".lock.stale-*"))


def test_of_several_takers_of_a_stale_lock_one_wins(tmp_path):
    """Four processes find the same dead owner's lock at once: exactly one takes it over."""
    _write_lock(tmp_path / "t", host=socket.gethostname(), pid=dead_pid())
    # after every interpreter has imported das.locks; the winner holds the lock for 10 s, so one
    # that imports late on a loaded machine still finds a live owner, not a free lock
    start = time.time() + 4
    code = ("import sys, time; from das.locks import lock_trial, TrialLocked\n"
            "time.sleep(max(0, float(sys.argv[2]) - time.time()))\n"
            "try:\n    lock_trial(sys.argv[1]); print('got', flush=True); time.sleep(10)\n"
            "except TrialLocked:\n    print('locked', flush=True)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "t"), str(start)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, env=ENV) for _ in range(4)]
    try:
        outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    finally:
        stop(procs)
    assert sorted(outs) == ["got", "locked", "locked", "locked"], outs
    assert not list((tmp_path / "t").glob(".lock*"))  # the winner released it at exit


def test_heartbeat_keeps_a_lock_fresh(tmp_path):
    """A holder touches its lock while it runs; once it is killed, the lock ages."""
    code = ("import sys, time; from das.locks import lock_trial; lock_trial(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                         env={**ENV, "DAS_LOCK_HEARTBEAT": "0.2"})
    try:
        assert p.stdout.readline().strip() == "locked"
        lock = tmp_path / ".lock"
        old = time.time() - 1000
        os.utime(lock, (old, old))
        deadline = time.time() + 20
        while lock.stat().st_mtime < time.time() - 100 and time.time() < deadline:
            time.sleep(0.1)
        assert lock.stat().st_mtime > time.time() - 100  # touched again by the heartbeat
        with pytest.raises(TrialLocked):
            lock_trial(tmp_path)
    finally:
        p.kill()
        p.wait(timeout=10)
    lock_trial(tmp_path)  # its owner is dead: taken over
    unlock_trial(tmp_path)


def test_a_trial_running_elsewhere_is_retried_not_failed(tmp_path, capsys):
    """A live owner holds the trial: the sweep reports it running elsewhere, looks again, runs it once free."""
    import threading
    spec = TrialSpec.make(hp=load_hparams("H1"), space="seq", data="blur", ops="good", method="grad-only", seed=0,
                          epochs=2, batches_per_epoch=2)
    lock = _write_lock(spec.folder(tmp_path), host=socket.gethostname(), pid=os.getpid())
    timer = threading.Timer(2.0, lock.unlink)  # the other sweep ends without finishing it
    timer.start()
    try:
        r = run_sweep([spec], tmp_path, inline=True, retry_wait=0.5)
    finally:
        timer.cancel()
    assert r["failed"] == [] and r["ran"] == 1 and r["outcomes"][0]["outcome"] == "done"
    err = capsys.readouterr().err
    assert "running elsewhere seq/blur/good/grad-only/H1 seed 0 (host" in err and "FAILED" not in err


def test_a_diverged_trial_is_reported_as_diverged(tmp_path, capsys):
    wild = TrialSpec(space="seq", data="blur", ops="good", method="das", preset="wild",
                     hparams={**load_hparams("H1").values(), "param_lr": 1e6}, seed=0, epochs=2, batches_per_epoch=2)
    r = run_sweep([wild], tmp_path, inline=True)
    assert r["failed"] == [] and r["diverged"] == 1
    err = capsys.readouterr().err
    assert "DIVERGED" in err and "No such file" not in err


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("extra,match", [
    (["--seed", "abc"], "--seed 'abc': expected a seed"),
    (["--seed", "5-3"], "runs backwards"),
    (["--workers", "0"], "--workers must be in 1..256"),
    (["--method", "magic"], "--method magic: not in this study"),
    (["--preset", "H9"], "--preset H9: not in this study"),
    (["--study", "table9"], "invalid choice"),
    (["--epochs", "0"], "--epochs must be in 1..10000"),
    (["--scheduler", "tcp://127.0.0.1:1", "--inline"], "exclude each other"),
])
def test_bad_input_is_one_line_before_any_trial(tmp_path, extra, match):
    p = subprocess.run(SWEEP + ["--study", "table1", "--out", "r", *extra], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=ENV)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert match in p.stderr and p.stderr.startswith("error: ")
    assert not (tmp_path / "r").exists()


def test_unreachable_scheduler_is_one_line(tmp_path, monkeypatch):
    import das.runner
    monkeypatch.setattr(das.runner, "CONNECT_TIMEOUT", 3.0)
    spec = TrialSpec.make(hp=load_hparams("H1"), space="seq", data="blur", ops="good", method="grad-only", seed=0,
                          epochs=2, batches_per_epoch=2)
    address, t0 = f"tcp://127.0.0.1:{free_port()}", time.time()  # nothing listens there
    with pytest.raises(UserError, match=f"cannot reach the Dask scheduler at {address} within 3s"):
        run_sweep([spec], tmp_path, scheduler=address)
    assert time.time() - t0 < 30 and not list(tmp_path.iterdir())


def test_relative_out_is_the_callers(tmp_path):
    p = subprocess.run(SWEEP + ["--method", "grad-only", "--seed", "0", "--data", "blur", "--ops", "good",
                                "--out", "mine", "--dry-run"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env=ENV)
    assert p.returncode == 0, p.stderr
    assert str(tmp_path / "mine" / "seq" / "blur" / "good" / "grad-only" / "H1" / "seed0") in p.stdout


def _page_faults_of_reallocation():
    """Minor page faults while a 1 MiB tensor (256 pages; below the 2 MiB of a huge page) is
    allocated, written and freed 100 times."""
    import resource

    import torch
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(100):
        torch.ones(256 * 1024)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_embedded_workers_reuse_freed_memory():
    """In a worker of the embedded cluster a freed tensor's pages are reused, not unmapped and
    faulted in again (the trim threshold alone froze glibc's mmap threshold at 128 KiB: each
    1 MiB tensor then costs 256 page faults)."""
    from distributed import Client

    from das.runner import local_cluster
    with local_cluster(1, 1) as cluster, Client(cluster) as client:
        env = client.run(lambda: {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")})
        faults = list(client.run(_page_faults_of_reallocation).values())[0]
    assert list(env.values())[0] == {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}
    assert faults < 100 * 256 / 10, faults
    # the failure it guards against, in a plain process with the trim threshold alone
    code = "import tests.test_runner as t; print(t._page_faults_of_reallocation())"
    env_trim = {**ENV, "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
    env_trim.pop("MALLOC_MMAP_THRESHOLD_", None)
    frozen = int(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env_trim, capture_output=True, text=True,
                                timeout=120).stdout.split()[-1])
    assert frozen > 100 * 256 / 2, frozen


def test_a_study_continues_in_another_tree_from_committed_trials(tmp_path):
    """--done-in: the trials finished in a trials.csv (a study's part committed as data) are not run
    again; the rest run into the new tree, and the two parts pool in one analysis."""
    sweep = [sys.executable, "scripts/sweep.py", "--study", "table1", "--data", "blur", "--ops", "good",
             "--method", "grad-only", "--epochs", "1", "--batches-per-epoch", "1", "--batch-size", "8", "--inline"]
    a, b = tmp_path / "a", tmp_path / "b"
    p = subprocess.run(sweep + ["--seed", "0-1", "--out", str(a)], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([sys.executable, "analyze.py", str(a), "--no-plots", "--resamples", "100"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    csv = a / "analysis" / "trials.csv"
    p = subprocess.run(sweep + ["--seed", "0-2", "--out", str(b), "--done-in", str(csv)], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0 and "2 trials done in" in p.stdout and "1 to run" in p.stdout, p.stdout + p.stderr
    assert sorted(x.name for x in (b / "seq/blur/good/grad-only/H1").iterdir()) == ["seed2-e1-b1-bs8"]
    p = subprocess.run([sys.executable, "analyze.py", str(csv), str(b), "--no-plots", "--resamples", "100",
                        "--out", str(tmp_path / "both")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "3 trials read" in p.stdout, p.stdout + p.stderr
