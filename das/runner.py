"""Run many trials: one Dask task per batch of trials, on this machine or on a cluster, nothing lost or
done twice.

    from das.runner import run_sweep
    run_sweep(specs, "results", workers=2)                            # an embedded LocalCluster
    run_sweep(specs, "/shared/results", scheduler="tls://head:8786",  # a running Dask cluster
              tls_ca_file="ca.pem", tls_cert="node.pem", tls_key="node.key")
    run_sweep(specs, "results", inline=True)                          # no Dask: in this process, in order

One task is `das.stages.run_trials` for a batch of specifications of one kind (`das.spec.batch_key`:
searches, or trainings, of one setting), run as one computation (searches, then the retrains of
their genotypes), in a worker whose torch uses `threads` threads. Batches are sized so that every
worker gets work (at most `max_batch` trials). What is finished is decided by the
trial's result file alone (`das.folder.trial_done`, which compares the full specification), so
the same call continues a killed sweep. A worker killed mid-trial loses its task to Dask, which runs
it again on another worker; the rerun finds the dead owner's lock stale (see das.locks) and resumes
from the trial's last epoch checkpoint. A trial locked by a live process (another sweep over the same
tree, from this machine or another) is "running elsewhere": skipped for now and tried again after
`retry_wait` seconds until it is finished there or here, never counted as failed.

Who may connect: the embedded cluster speaks only mutual TLS with credentials made for the run
(`run_security`); a running cluster is as safe as its own TLS setup (docs/multi-machine.md), and a
tcp:// one authenticates no one (the sweep warns).
"""
from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from das.folder import Status, trial_done
from das.locks import TrialLocked, lock_trial, unlock_trial, unlock_under
from das.spec import TrialSpec
from das.stages import group_batches, run_trials

# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536: glibc then hands freed memory back
# to the OS and faults it in again on every training step, which halved the speed of a trial here
# (benchmarks/bench_runner.py). 1 GiB keeps the allocator's pages. Setting it also freezes glibc's
# mmap threshold at 128 KiB (a set threshold turns off its dynamic adjustment), so every tensor
# above 128 KiB was mmap'd and unmapped again: 45% of a worker's time in page faults and a batch of
# 38 searches 2.7x slower than in a plain process. The mmap threshold is set too, to glibc's
# largest (32 MiB): a plain process raises its threshold by itself, to the largest block it freed.
MALLOC_TRIM_THRESHOLD = 1 << 30
MALLOC_MMAP_THRESHOLD = 32 << 20
RETRY_WAIT = 30.0   # seconds before a trial running elsewhere is looked at again
CONNECT_TIMEOUT = 20.0  # seconds to reach a --scheduler before giving up

DONE, DIVERGED, FAILED, ELSEWHERE = "done", "diverged", "failed", "running elsewhere"


def batch_task(spec_dicts: list[dict], root: str, retrain_seeds=None, device: str = "cpu", threads: int = 1,
               max_batch: int = 64) -> list[dict]:
    """One Dask task: run (or resume, or find finished) a batch of trials of one kind as one
    computation. Returns one outcome per trial; never raises for a trial's own failure, so one bad
    trial never stops a sweep. A trial another process holds is left to it (running elsewhere)."""
    import socket

    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    base = {"host": socket.gethostname(), "pid": os.getpid()}
    outcomes, runnable = {}, []
    for d in spec_dicts:
        spec = TrialSpec.from_dict(d)
        folder = spec.folder(root)
        if trial_done(spec, root, retrain_seeds):  # by another sweep since this one looked
            outcomes[id(d)] = {**base, "spec": d, "outcome": DONE, "message": "(finished elsewhere)", "seconds": 0.0}
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock_trial(folder)
        except TrialLocked as exc:
            outcomes[id(d)] = {**base, "spec": d, "outcome": ELSEWHERE, "message": str(exc), "seconds": 0.0}
            continue
        runnable.append((d, spec, folder))
    try:
        if runnable:
            results = run_trials([s for _, s, _ in runnable], root, retrain_seeds=retrain_seeds, device=device,
                                 max_batch=max_batch)
    except TrialLocked as exc:
        results, error = None, (ELSEWHERE, str(exc))
    except Exception as exc:  # reported, and retried by the next sweep
        results, error = None, (FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        for _, _, folder in runnable:
            unlock_under(folder)  # the retrains' locks; one worker process runs many batches
            unlock_trial(folder)
    seconds = (time.perf_counter() - t0) / max(len(runnable), 1)  # amortised over the batch
    for d, spec, folder in runnable:
        if results is None:
            outcomes[id(d)] = {**base, "spec": d, "outcome": error[0], "message": error[1], "seconds": seconds}
            continue
        mine = [r for r in results if Path(r["dir"]) == folder or Path(r["dir"]).parent == folder]
        bad = [r for r in mine if r["status"] not in (Status.SEARCHED, Status.COMPLETE)]
        if bad and bad[0]["status"] == Status.DIVERGED:
            outcome, message = DIVERGED, f"diverged: {bad[0].get('error')}"
        elif bad:
            outcome, message = FAILED, f"{bad[0]['status']}: {bad[0].get('error')}"
        else:
            outcome, message = DONE, ""
        outcomes[id(d)] = {**base, "spec": d, "outcome": outcome, "message": message, "seconds": seconds}
    return [outcomes[id(d)] for d in spec_dicts]


class Progress:
    """One overall line: done / running / elsewhere / failed / remaining and an ETA. A tqdm bar on a
    terminal, plain lines (one per finished trial) otherwise."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.t0 = time.perf_counter()
        self.done = self.diverged = self.failed = self.running = self.elsewhere = 0
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, file=self.stream, unit="trial", dynamic_ncols=True)

    def rate(self) -> float:
        finished = self.done + self.diverged + self.failed
        return finished / max(time.perf_counter() - self.t0, 1e-9) * 3600

    def status(self) -> str:
        finished = self.done + self.diverged + self.failed
        remaining = self.total - finished
        rate = self.rate()
        eta = f"{remaining / rate * 3600:.0f}s" if rate > 0 else "?"
        return (f"done {self.done}, diverged {self.diverged}, running {self.running}, running elsewhere "
                f"{self.elsewhere}, failed {self.failed}, remaining {remaining}; {rate:.0f} trials/hour, ETA {eta}")

    def update(self, line: str | None = None, finished: bool = False) -> None:
        if self.bar is not None:
            if line:
                self.bar.write(line, file=self.stream)
            if finished:
                self.bar.update(1)
            self.bar.set_postfix_str(self.status(), refresh=True)
        elif line:
            print(f"{line} [{self.status()}]", file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_security():
    """TLS credentials for one embedded cluster, made for this run and held in memory only.

    One fresh self-signed certificate and its key serve as the cluster's CA and as the certificate of
    every member (scheduler, nannies, workers, this sweep's client). Every listener requires it of the
    other side (mutual TLS), so a process without this run's key, another user's included, cannot
    complete a connection, let alone run code. Made by `Security.temporary()` where the `cryptography`
    package is installed, else by the `openssl` command (its output read from a pipe, never a file).
    The nannies hand the credentials to their worker processes over multiprocessing's pipe; Dask
    itself writes the key for a moment into a private temporary folder (mode 700) as it loads it."""
    import subprocess

    from distributed.security import Security

    from das.utils import UserError

    try:
        import cryptography  # noqa: F401
    except ImportError:
        pass
    else:
        return Security.temporary()
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", "-", "-subj", "/CN=das-sweep", "-days", "7"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    except FileNotFoundError:
        raise UserError("the embedded Dask cluster needs a TLS certificate for this run, made with the `cryptography` "
                        "package or the `openssl` command; neither is installed (install one, or run inline)") from None
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        reason = (getattr(exc, "stderr", None) or str(exc)).strip().splitlines()
        raise UserError(f"openssl could not make the embedded Dask cluster's TLS certificate "
                        f"({reason[-1] if reason else type(exc).__name__})") from None
    start = out.find("-----BEGIN CERTIFICATE-----")
    if start < 0 or "PRIVATE KEY-----" not in out[:start]:
        raise UserError("openssl printed no key and certificate for the embedded Dask cluster")
    key, cert = out[:start], out[start:]
    roles = {f"tls_{role}_{part}": value for role in ("client", "scheduler", "worker")
             for part, value in (("cert", cert), ("key", key))}
    return Security(require_encryption=True, tls_ca_file=cert, **roles)


def local_cluster(workers: int, threads: int, security=None):
    """An embedded cluster sized to this machine: `workers` processes of one Dask thread each.

    Every listener of it (scheduler, nannies, workers) is on loopback and speaks only mutual TLS
    with this run's credentials (`run_security`, or `security`); a `Client(cluster)` gets them
    from the cluster. The HTTP servers Dask starts in the scheduler and in each worker whatever
    the dashboard setting are given no routes, so they serve nothing (every path is 404)."""
    import dask
    from distributed import LocalCluster

    security = security if security is not None else run_security()
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": MALLOC_TRIM_THRESHOLD})
    # the nanny lets this process's environment win over the config, and writes its value there itself
    for name, value in (("MALLOC_TRIM_THRESHOLD_", MALLOC_TRIM_THRESHOLD),
                        ("MALLOC_MMAP_THRESHOLD_", MALLOC_MMAP_THRESHOLD)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(value)
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    # read by the scheduler as it starts and by each nanny as it is made (it hands its worker processes
    # a copy of the config), so the setting outlives this block for them and no one else
    with dask.config.set({"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}):
        # the scheduler's server on a free port, not 8787: a second sweep then has no "port in use" warning
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            protocol="tls://", security=security, dashboard_address=None, env=env,
                            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, memory_limit=0, silence_logs=40)


# What a member of the cluster must import to run a task; evaluated there by the builtin `eval`, so the
# probe itself is unpickled anywhere, with or without das (a function of das would not be).
IMPORT_PROBE = "__import__('das.runner').__file__"
RECIPE = "docs/multi-machine.md"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _check_cluster(client, scheduler: str) -> None:
    """Before any task is sent: the scheduler (it unpickles every task graph, so it imports das) and
    every worker import das; one line, not a wall of tracebacks, when one cannot. Waits for the first
    worker if none has connected yet; a worker that joins after this check and cannot import das
    fails its tasks (FAILED, with the ModuleNotFoundError)."""
    from das.utils import UserError

    repo = Path(__file__).resolve().parent.parent

    def hint(who: str, whose: str) -> str:
        return f"start {who} with PYTHONPATH={repo} or with das installed in {whose} environment ({RECIPE})"
    try:
        client.run_on_scheduler(eval, IMPORT_PROBE, {})
    except Exception as exc:
        raise UserError(f"the Dask scheduler at {scheduler} cannot import das ({_one_line(exc)}), and it unpickles "
                        f"every task; {hint('it', 'its')}") from None
    if not client.nthreads():
        print(f"waiting for a Dask worker to connect to {scheduler}", file=sys.stderr, flush=True)
        client.wait_for_workers(1)
    found = client.run(eval, IMPORT_PROBE, {}, on_error="return")
    missing = {w: r for w, r in found.items() if isinstance(r, BaseException)}
    if missing:
        first = _one_line(next(iter(missing.values())))
        raise UserError(f"Dask worker{'s' if len(missing) > 1 else ''} {', '.join(sorted(missing))} cannot import das "
                        f"({first}); {hint('them', 'their')}")


def scheduler_security(scheduler: str | None, tls_ca_file=None, tls_cert=None, tls_key=None):
    """The client's credentials for `scheduler`: a Security for tls://HOST:PORT (all three files
    required and loaded now), None for any other address; one line for a bad combination."""
    import ssl

    from distributed.security import Security

    from das.utils import UserError

    flags = {"--tls-ca-file": tls_ca_file, "--tls-cert": tls_cert, "--tls-key": tls_key}
    given = [f for f, v in flags.items() if v is not None]
    if scheduler is None:
        if given:
            raise UserError(f"{', '.join(given)} go with --scheduler tls://HOST:PORT; the embedded cluster makes "
                            "its own credentials for each run")
        return None
    if not scheduler.startswith("tls://"):
        if given:
            raise UserError(f"{', '.join(given)} need a tls:// --scheduler, not {scheduler}")
        return None
    missing = [f for f, v in flags.items() if v is None]
    if missing:
        raise UserError(f"--scheduler {scheduler} needs {', '.join(missing)} (the cluster's CA certificate, this "
                        f"client's certificate signed by it, and its key; {RECIPE})")
    for flag, path in flags.items():
        if not os.path.isfile(path):
            raise UserError(f"{flag} {path}: no such file")
    security = Security(require_encryption=True, tls_ca_file=tls_ca_file, tls_client_cert=tls_cert,
                        tls_client_key=tls_key)
    try:
        security.get_connection_args("client")  # reads and checks the three files
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UserError(f"cannot load --tls-ca-file {tls_ca_file}, --tls-cert {tls_cert}, --tls-key {tls_key} "
                        f"({_one_line(exc)})") from None
    return security


def run_sweep(specs: list[TrialSpec], root, *, retrain_seeds=None, device: str = "cpu", threads: int = 1,
              workers: int = 1, scheduler: str | None = None, inline: bool = False,
              retry_wait: float = RETRY_WAIT, progress: Progress | None = None, max_batch: int = 64,
              tls_ca_file: str | None = None, tls_cert: str | None = None, tls_key: str | None = None) -> dict:
    """Run every specification not finished under root; returns counts and the failed trials.

    `scheduler` (tls://HOST:8786 with the `tls_*` files, or an unauthenticated tcp://HOST:8786) sends
    the tasks to a running cluster whose scheduler and workers import das and whose workers see `root`
    at the same path; without it an embedded LocalCluster of `workers` processes runs them (mutual
    TLS with credentials made for this run, see `local_cluster`), or, with `inline`, this process runs
    them one after another (no Dask)."""
    security = scheduler_security(scheduler, tls_ca_file, tls_cert, tls_key)
    root = str(Path(root).absolute())
    todo = [s for s in specs if not trial_done(s, root, retrain_seeds)]
    progress = progress or Progress(len(todo))
    t0 = time.perf_counter()
    outcomes: list[dict] = []

    def record(r: dict) -> bool:
        """Count a task's outcome; True when the trial is to be tried again later."""
        spec = TrialSpec.from_dict(r["spec"])
        if r["outcome"] == ELSEWHERE:
            progress.elsewhere += 1
            owner = r["message"].split("(", 1)[-1].split(")")[0]
            progress.update(f"running elsewhere {spec.describe()} ({owner}); looking again in {retry_wait:g}s")
            return True
        outcomes.append(r)
        counter = {DONE: "done", DIVERGED: "diverged", FAILED: "failed"}[r["outcome"]]
        setattr(progress, counter, getattr(progress, counter) + 1)
        name = r["outcome"] if r["outcome"] == DONE else r["outcome"].upper()
        progress.update(f"{name} {spec.describe()} {r['seconds']:.0f}s {r['message']}".rstrip(), finished=True)
        return False

    try:
        if inline:
            _run_inline(todo, root, retrain_seeds, device, threads, retry_wait, record, progress, max_batch)
        else:
            _run_dask(todo, root, retrain_seeds, device, threads, workers, scheduler, security, retry_wait, record,
                      progress, max_batch)
    finally:
        progress.close()
    failed = [(str(TrialSpec.from_dict(r["spec"]).folder(root)), r["message"]) for r in outcomes
              if r["outcome"] == FAILED]
    return {"trials": len(specs), "todo": len(todo), "ran": len(outcomes), "failed": failed,
            "diverged": sum(r["outcome"] == DIVERGED for r in outcomes), "seconds": time.perf_counter() - t0,
            "outcomes": outcomes}


def _batches(specs, slots: int, max_batch: int) -> list[list[TrialSpec]]:
    """Batches of one kind, small enough that `slots` workers all get work."""
    size = max(1, min(max_batch, -(-len(specs) // max(slots, 1))))
    return group_batches(specs, size)


def _run_inline(todo, root, retrain_seeds, device, threads, retry_wait, record, progress, max_batch):
    queue = [(0.0, b) for b in _batches(todo, 1, max_batch)]
    while queue:
        queue.sort(key=lambda x: x[0])
        ready_at, batch = queue.pop(0)
        time.sleep(max(0.0, ready_at - time.time()))
        if ready_at:
            progress.elsewhere -= len(batch)
        progress.running = len(batch)
        outcomes = batch_task([s.to_dict() for s in batch], root, retrain_seeds, device, threads, max_batch)
        progress.running = 0
        again = [TrialSpec.from_dict(r["spec"]) for r in outcomes if record(r)]
        if again:
            queue.append((time.time() + retry_wait, again))


def _run_dask(todo, root, retrain_seeds, device, threads, workers, scheduler, security, retry_wait, record,
              progress, max_batch):
    from distributed import Client, wait

    from das.utils import UserError

    cluster = None
    if scheduler is None:
        cluster = local_cluster(workers, threads)
        client = Client(cluster)
    else:
        t0 = time.perf_counter()
        try:
            client = Client(scheduler, security=security, timeout=f"{CONNECT_TIMEOUT}s")
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            waited = f" within {CONNECT_TIMEOUT:g}s" if time.perf_counter() - t0 > 0.9 * CONNECT_TIMEOUT else ""
            tls = (" and that --tls-cert is signed by the CA the scheduler trusts and --tls-ca-file is the CA that "
                   "signed the scheduler's certificate" if security is not None else "")
            raise UserError(f"cannot reach the Dask scheduler at {scheduler}{waited} ({reason}); "
                            f"check that it runs (`dask scheduler` prints its address){tls}") from None
    try:
        if cluster is None:
            _check_cluster(client, scheduler)
            if security is None:
                print(f"warning: {scheduler} is not TLS: the cluster authenticates no one, and whoever reaches its "
                      f"ports runs code as its workers' user; use tls:// ({RECIPE})", file=sys.stderr, flush=True)
        slots = max(_slots(client), 1)

        def submit(batch):
            key = f"batch-{uuid.uuid4().hex[:12]}"  # unique: a retry is a new task, never a cached result
            return client.submit(batch_task, [s.to_dict() for s in batch], root, retrain_seeds, device, threads,
                                 max_batch, key=key, pure=False, retries=0)

        pending = {submit(b): b for b in _batches(todo, slots, max_batch)}
        waiting: list[tuple[float, list[TrialSpec]]] = []
        progress.running = sum(len(b) for b in list(pending.values())[:slots])
        progress.update()
        while pending or waiting:
            now = time.time()
            for ready_at, batch in [w for w in waiting if w[0] <= now]:
                waiting.remove((ready_at, batch))
                progress.elsewhere -= len(batch)
                left = []
                for spec in batch:
                    if trial_done(spec, root, retrain_seeds):
                        record({"spec": spec.to_dict(), "outcome": DONE, "message": "(finished elsewhere)",
                                "seconds": 0.0})
                    else:
                        left.append(spec)
                for b in _batches(left, slots, max_batch):
                    pending[submit(b)] = b
            if not pending:
                if waiting:
                    time.sleep(min(1.0, max(0.0, min(w[0] for w in waiting) - time.time())))
                continue
            if not any(f.done() for f in pending):
                try:
                    wait(list(pending), timeout=1.0, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    pass
            for f in [f for f in pending if f.done()]:
                batch = pending.pop(f)
                try:
                    outcomes = f.result()
                except Exception as exc:  # the task itself died: KilledWorker after repeated worker losses
                    outcomes = [{"spec": s.to_dict(), "outcome": FAILED, "message": f"{type(exc).__name__}: {exc}",
                                 "seconds": 0.0} for s in batch]
                again = [TrialSpec.from_dict(r["spec"]) for r in outcomes if record(r)]
                if again:
                    waiting.append((time.time() + retry_wait, again))
            progress.running = sum(len(b) for b in list(pending.values())[:slots])
            progress.update()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _slots(client) -> int:
    """Tasks the cluster runs at once (its workers' threads)."""
    try:
        return sum(client.nthreads().values())
    except Exception:  # a scheduler that went away is reported by the futures themselves
        return 0
