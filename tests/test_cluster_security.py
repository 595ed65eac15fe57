"""The embedded Dask cluster of a sweep refuses every process that lacks the run's credentials
(hardening issue, item 1: another local user connected to the scheduler's port and ran
`Client(address).run(os.system, ...)`), and --scheduler tls:// takes its certificates from flags."""
import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from das.utils import UserError
from tests.conftest import ROOT

ENV = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}

# A separate process that tries every port it is given, as a stranger would, all attempts at once and
# each bounded in time: Dask's Client (plain tcp, and tls with a key of its own), Dask's identity RPC
# (plain tcp, tls presenting no certificate, tls with its own key) and HTTP GETs of Dask's pages.
# With "run" credentials on stdin it also makes the same calls with them (the control).
STRANGER = r'''
import asyncio, json, ssl, sys, time, urllib.error, urllib.request
from distributed import Client
from distributed.comm import connect
from distributed.security import Security

job = json.load(sys.stdin)
T = 3


def security(pem):
    return Security(require_encryption=True, tls_ca_file=pem["cert"], tls_client_cert=pem["cert"],
                    tls_client_key=pem["key"])


def no_cert():
    ctx = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # trusts anything, shows nothing
    return ctx


async def rpc(address, **args):
    try:
        comm = await asyncio.wait_for(connect(address, timeout=T, **args), T + 2)
        try:
            await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), T)
            reply = await asyncio.wait_for(comm.read(), T)
        finally:
            comm.abort()
        return f"ok {reply.get('type')}"
    except Exception as exc:
        return f"refused {type(exc).__name__}"


async def client(address, **args):
    try:
        c = await asyncio.wait_for(Client(address, asynchronous=True, timeout=T, **args), T + 2)
        try:
            pids = await asyncio.wait_for(c.run(lambda: __import__("os").getpid()), T)  # the audit's exploit
            return f"ok ran on {len(pids)} workers"
        finally:
            await c.close()
    except Exception as exc:
        return f"refused {type(exc).__name__}"


def get(port, path):
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an http_proxy
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=T) as r:
            return f"ok {r.status}"
    except urllib.error.HTTPError as exc:
        return f"refused {exc.code}"
    except Exception as exc:
        return f"refused {type(exc).__name__}"


async def main():
    loop = asyncio.get_running_loop()
    other = security(job["other"]).get_connection_args("client")
    names, attempts = [], []
    for port in job["ports"]:
        hp = f"127.0.0.1:{port}"
        for how, coro in (("tcp rpc", rpc(f"tcp://{hp}")),
                          ("tls rpc without a certificate", rpc(f"tls://{hp}", ssl_context=no_cert())),
                          ("tls rpc with another key", rpc(f"tls://{hp}", **other))):
            names.append((port, how)); attempts.append(coro)
        for path in ("/health", "/metrics", "/info/main/workers.html", "/json/identity.json", "/status"):
            names.append((port, f"GET {path}")); attempts.append(loop.run_in_executor(None, get, port, path))
    names.append((job["scheduler"], "tcp Client")); attempts.append(client(f"tcp://{job['scheduler']}"))
    names.append((job["scheduler"], "tls Client with another key"))
    attempts.append(client(f"tls://{job['scheduler']}", security=security(job["other"])))
    if "run" in job:
        mine = security(job["run"])
        for address in job["comm"]:
            names.append((address, "tls rpc with the run's key"))
            attempts.append(rpc(address, **mine.get_connection_args("client")))
        names.append((job["scheduler"], "tls Client with the run's key"))
        attempts.append(client(f"tls://{job['scheduler']}", security=mine))
    t0 = time.time()
    results = await asyncio.gather(*attempts)
    rows = [[str(p), how, r] for (p, how), r in zip(names, results)]
    print(json.dumps({"seconds": time.time() - t0, "results": rows}))

asyncio.run(main())
'''


def pem(security) -> dict:
    return {"cert": security.tls_client_cert, "key": security.tls_client_key}


def listening(*pids) -> set[int]:
    ports = set()
    for pid in pids:
        proc = psutil.Process(pid)
        conns = proc.net_connections("inet") if hasattr(proc, "net_connections") else proc.connections("inet")
        ports |= {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
    return ports


def stranger(job: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", STRANGER], input=json.dumps(job), capture_output=True, text=True,
                       timeout=90, env=ENV, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_the_embedded_cluster_refuses_a_process_without_the_runs_credentials():
    from distributed import Client

    from das.runner import local_cluster, run_security

    before = listening(os.getpid())
    run = run_security()
    with local_cluster(1, 1, security=run) as cluster, Client(cluster) as client:
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3  # the sweep's own client works
        worker_pids = client.run(os.getpid)
        nannies = [n.address for n in cluster.workers.values()]
        comm = [cluster.scheduler_address, *nannies, *worker_pids]
        assert len(comm) == 3 and all(a.startswith("tls://127.0.0.1:") for a in comm), comm
        # every port the cluster listens on: this process (scheduler, nanny) and the worker process
        ports = (listening(os.getpid()) - before) | listening(*worker_pids.values())
        assert {int(a.rsplit(":", 1)[1]) for a in comm} <= ports
        job = {"scheduler": cluster.scheduler_address.split("://")[1], "ports": sorted(ports), "comm": comm,
               "other": pem(run_security())}  # another run's credentials: a valid key, not this run's
        t0 = time.time()
        strangers = stranger(job)
        seconds = time.time() - t0
        control = stranger({**job, "run": pem(run)})
        assert client.submit(sum, [3, 4]).result(timeout=60) == 7  # still serving its own client
    let_in = [r for r in strangers["results"] if r[2].startswith("ok")]
    assert not let_in, let_in
    assert len(strangers["results"]) == 8 * len(ports) + 2
    assert seconds < 60, seconds  # every refusal within bounded time
    # the control: the same calls with the run's credentials get through, so the refusals above are theirs
    mine = {(p, how): r for p, how, r in control["results"] if "run's key" in how}
    assert len(mine) == 4 and all(r.startswith("ok") for r in mine.values()), control["results"]
    assert mine[(job["scheduler"], "tls Client with the run's key")] == "ok ran on 1 workers"


def test_each_run_has_its_own_credentials():
    from das.runner import run_security

    a, b = run_security(), run_security()
    assert a.require_encryption and a.tls_ca_file == a.tls_client_cert == a.tls_worker_cert == a.tls_scheduler_cert
    assert "PRIVATE KEY-----" in a.tls_client_key and "\n" in a.tls_client_key  # in memory, not a path
    assert a.tls_client_key != b.tls_client_key and a.tls_ca_file != b.tls_ca_file


# ---------------------------------------------------------------------------- --scheduler tls://
def test_scheduler_tls_flags(tmp_path):
    from das.runner import scheduler_security

    assert scheduler_security(None) is None and scheduler_security("tcp://h:8786") is None
    with pytest.raises(UserError, match="--tls-cert go with --scheduler tls://HOST:PORT"):
        scheduler_security(None, tls_cert="x.pem")
    with pytest.raises(UserError, match="--tls-ca-file need a tls:// --scheduler, not tcp://h:8786"):
        scheduler_security("tcp://h:8786", tls_ca_file="ca.pem")
    with pytest.raises(UserError, match="needs --tls-cert, --tls-key"):
        scheduler_security("tls://h:8786", tls_ca_file="ca.pem")
    with pytest.raises(UserError, match=f"--tls-ca-file {tmp_path}/ca.pem: no such file"):
        scheduler_security("tls://h:8786", str(tmp_path / "ca.pem"), "c", "k")
    for name in ("ca.pem", "c", "k"):
        (tmp_path / name).write_text("not a certificate\n")
    with pytest.raises(UserError, match="cannot load --tls-ca-file"):
        scheduler_security("tls://h:8786", str(tmp_path / "ca.pem"), str(tmp_path / "c"), str(tmp_path / "k"))


@pytest.mark.parametrize("extra,match", [
    (["--tls-ca-file", "ca.pem"], "--tls-ca-file go with --scheduler tls://HOST:PORT"),
    (["--scheduler", "tls://127.0.0.1:1"], "needs --tls-ca-file, --tls-cert, --tls-key"),
    (["--scheduler", "tcp://127.0.0.1:1", "--tls-key", "k.pem"], "--tls-key need a tls:// --scheduler"),
])
def test_bad_tls_flags_are_one_line_before_any_trial(tmp_path, extra, match):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), "--study", "table1", "--out",
                        "r", *extra], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert match in p.stderr and p.stderr.startswith("error: ")
    assert not (tmp_path / "r").exists()
