"""docs/multi-machine.md's recipe for a running Dask cluster, run as written: its certificate, `dask
scheduler` and `dask worker` lines (asserted verbatim in the doc, then run by bash with HEAD, the
port, /shared/das and /shared/results filled in), started from a folder outside the repository, on
loopback. A 2-seed study runs to completion; a scheduler or worker that cannot import das stops the
sweep with one line and exit code 2 before any task is sent."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOC = (Path(ROOT) / "docs" / "multi-machine.md").read_text()
VENV = Path(sys.prefix)

CERTS = ["mkdir -p ~/.das-tls && chmod 700 ~/.das-tls && cd ~/.das-tls",
         "openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=das-ca -keyout ca.key -out ca.pem",
         "openssl req -newkey rsa:2048 -nodes -subj /CN=das-node -keyout node.key -out node.csr",
         "openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -out node.pem"]
ENTER = "cd ~/.das-tls && . /shared/das/.venv/bin/activate && export PYTHONPATH=/shared/das"
SCHEDULER = [ENTER, "dask scheduler --host HEAD --port 8786 --tls-ca-file ca.pem --tls-cert node.pem "
                    "--tls-key node.key --dashboard-address 127.0.0.1:8787"]
WORKER = [ENTER, "export MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432",
          "dask worker tls://HEAD:8786 --nworkers $(nproc) --nthreads 1 --memory-limit 0 --tls-ca-file ca.pem "
          "--tls-cert node.pem --tls-key node.key"]
SWEEP = ("python scripts/sweep.py --study table1 --scheduler tls://HEAD:8786 --tls-ca-file ~/.das-tls/ca.pem "
         "--tls-cert ~/.das-tls/node.pem --tls-key ~/.das-tls/node.key --out /shared/results")
TINY = "--study table1 --data blur --ops all --method random --seed 0-1 --epochs 1 --batches-per-epoch 2"
NO_DAS = " && export PYTHONPATH=/shared/das"  # the one thing a member that cannot import das lacks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_recipe_is_in_the_doc_verbatim():
    for line in CERTS + SCHEDULER + WORKER + [SWEEP]:
        assert f"\n    {line}\n" in DOC, line


class Recipe:
    """The doc's lines as bash scripts for this machine; every process group started is stopped by its id."""

    def __init__(self, tmp: Path):
        self.tmp, self.out, self.port = tmp, tmp / "results", None
        (tmp / "home").mkdir()
        drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"}
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        # a 2-core node: GNU nproc (so --nworkers $(nproc)) follows OMP_NUM_THREADS; ~ is a folder of the test
        self.env.update(HOME=str(tmp / "home"), OMP_NUM_THREADS="2")
        self.procs: list[subprocess.Popen] = []

    def script(self, lines, drop: str = "") -> str:
        for line in lines:
            assert f"\n    {line}\n" in DOC, line  # followed as the doc writes it
        text = "\n".join(lines).replace(drop, "") if drop else "\n".join(lines)
        return (text.replace("/shared/das/.venv", str(VENV)).replace("/shared/das", ROOT)
                .replace("/shared/results", str(self.out)).replace("HEAD", "127.0.0.1").replace("8786", str(self.port)))

    def run(self, lines, timeout=120, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", self.script(lines, **kw)], cwd=self.tmp, env=self.env, text=True,
                              capture_output=True, timeout=timeout)

    def start(self, name, lines, **kw) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        p = subprocess.Popen(["bash", "-c", self.script(lines, **kw)], cwd=self.tmp, env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def ready(self, name, text, timeout=60):
        deadline = time.time() + timeout
        while text not in (self.tmp / f"{name}.log").read_text():
            assert time.time() < deadline, self.logs()
            time.sleep(0.2)

    def stop(self, p: subprocess.Popen):
        """TERM to the group the bash we started leads (it, dask and the nannies' worker processes), then KILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        deadline = time.time() + 15  # the nannies' worker processes end after their parent
        while time.time() < deadline:
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.killpg(p.pid, signal.SIGKILL)

    def stop_all(self):
        for p in self.procs:
            self.stop(p)

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(self.tmp.glob("*.log")))

    def client(self):
        from distributed import Client
        from distributed.security import Security
        tls = self.tmp / "home" / ".das-tls"
        security = Security(require_encryption=True, tls_ca_file=str(tls / "ca.pem"),
                            tls_client_cert=str(tls / "node.pem"), tls_client_key=str(tls / "node.key"))
        return Client(f"tls://127.0.0.1:{self.port}", security=security, timeout="20s")

    def sweep(self, tls_folder: str = "~/.das-tls") -> subprocess.CompletedProcess:
        assert SWEEP in DOC
        line = SWEEP.replace("--study table1", TINY).replace("~/.das-tls", tls_folder)
        script = f"cd /shared/das && . /shared/das/.venv/bin/activate\n{line}"  # from the repository, venv active
        script = (script.replace("/shared/das/.venv", str(VENV)).replace("/shared/das", ROOT)
                  .replace("/shared/results", str(self.out)).replace("HEAD", "127.0.0.1")
                  .replace("8786", str(self.port)))
        return subprocess.run(["bash", "-c", script], cwd=self.tmp, env=self.env, text=True, capture_output=True,
                              timeout=240)


def transitions(client) -> int:
    """Task transitions the scheduler has made: 0 while no task was ever sent to it."""
    return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)


@pytest.mark.skipif(not (VENV / "bin" / "activate").exists(), reason="tests run outside a virtual environment")
def test_the_recipe_runs_a_study_from_another_folder(tmp_path):
    r = Recipe(tmp_path)
    try:
        made = r.run(CERTS)
        assert made.returncode == 0, made.stderr
        assert (tmp_path / "home" / ".das-tls" / "node.key").stat().st_mode & 0o077 == 0  # a folder others cannot read

        # a scheduler that cannot import das: one line, exit 2, before any task
        r.port = free_port()
        bare = r.start("scheduler-without-das", SCHEDULER, drop=NO_DAS)
        r.ready("scheduler-without-das", "Scheduler at:")
        p = r.sweep()
        assert p.returncode == 2, (p.stdout, p.stderr, r.logs())
        assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.startswith(f"error: the Dask scheduler at tls://127.0.0.1:{r.port} cannot import das "
                                   f"(ModuleNotFoundError: No module named 'das')"), p.stderr
        assert f"PYTHONPATH={ROOT}" in p.stderr
        r.stop(bare)

        # the doc's scheduler; workers that cannot import das: one line, exit 2, no task sent
        r.port = free_port()
        r.start("scheduler", SCHEDULER)
        r.ready("scheduler", "Scheduler at:")
        assert f"tls://127.0.0.1:{r.port}" in (tmp_path / "scheduler.log").read_text()
        lost = r.start("workers-without-das", WORKER, drop=NO_DAS)
        with r.client() as c:
            c.wait_for_workers(2, timeout=60)  # connected before the sweep looks (else it says it waits)
        p = r.sweep()
        assert p.returncode == 2, (p.stdout, p.stderr, r.logs())
        assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.startswith("error: Dask worker") and "tls://127.0.0.1:" in p.stderr, p.stderr
        assert "cannot import das (ModuleNotFoundError: No module named 'das'); start them with PYTHONPATH=" in p.stderr
        with r.client() as c:
            assert transitions(c) == 0  # nothing was submitted
            r.stop(lost)
            deadline = time.time() + 30
            while c.nthreads() and time.time() < deadline:
                time.sleep(0.2)
            assert not c.nthreads()
        assert not r.out.exists() or not list(r.out.rglob("*.json"))

        # the doc's workers: both trials complete
        r.start("workers", WORKER)
        p = r.sweep()
        assert p.returncode == 0, (p.stdout, p.stderr, r.logs())
        assert "2 trials, 0 already done, 2 to run" in p.stdout and "0 failed" in p.stdout, p.stdout
        assert "FAILED" not in p.stdout + p.stderr and "not TLS" not in p.stderr, p.stderr
        done = {f.parent.name: json.loads(f.read_text())["status"] for f in r.out.rglob("result.json")}
        assert done == {"seed0-e1-b2": "complete", "seed1-e1-b2": "complete"}, done
        with r.client() as c:
            assert transitions(c) > 0  # the counter does count the tasks that were sent
            assert len(c.nthreads()) == 2  # --nworkers $(nproc) on this 2-core node
        # a process without the cluster's key is refused: a plain client, and a sweep with another CA's key
        from distributed import Client
        with pytest.raises(OSError):
            Client(f"tcp://127.0.0.1:{r.port}", timeout="3s")
        other = tmp_path / "other-ca"
        other.mkdir()
        assert subprocess.run(["bash", "-c", "\n".join(CERTS[1:])], cwd=other, capture_output=True,
                              timeout=60).returncode == 0
        p = r.sweep(tls_folder=str(other))
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
        refused = f"cannot reach the Dask scheduler at tls://127.0.0.1:{r.port} (TLS certificate does not match"
        assert refused in p.stderr, p.stderr
    finally:
        r.stop_all()
