"""BOHB hyperparameter optimisation of the DAS search (paper 5.1, Tables 7-8) with hpbandster.

    python bohb.py --objective one-shot --data blur --ops all --iterations 4 --workers 2
    python bohb.py --objective final --iterations 128 --max-budget 50 --out results/bohb/final
    python bohb.py --host 0.0.0.0 --workers 0 --out /shared/bohb/run1      # a master that only coordinates
    python bohb.py --worker --nameserver HOST:PORT --run-id ID --out /shared/bohb/run1   # join, as it prints

The budget is the number of search epochs (--min-budget .. --max-budget, --eta). Objectives:
`one-shot` maximises the search's one-shot PSNR, `final` searches, derives and retrains at the
same budget and maximises the architecture PSNR, `das-single` maximises the one-shot PSNR of a
DAS-single search over networks pretrained once at the max budget. Each evaluation reuses
search.py's and retrain.py's code (das/stages.py). Writes hpbandster's configs.json/results.json
(warm start with --previous DIR, or --resume to continue this folder's own run), summary.csv of
every evaluation, incumbent.json, a preset that `search.py --hparams incumbent.json` takes as it is,
incumbent_vs_paper.* (beside the paper's preset) and trajectory.* (best PSNR so far, a figure).
The master writes every evaluation setting to settings.json in the run folder; a worker reads them
from there (the run folder must be on a filesystem every worker sees), never from its own flags. Pyro4 has no authentication: the nameserver and workers must only listen on a trusted
network (the default is loopback; docs/multi-machine.md shows an SSH tunnel).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from das import cli
from das.cli import run_main
from das.folder import Status
from das.genotype import Genotype
from das.hparams import HParams, load_hparams
from das.locks import unlock_all, unlock_under
from das.spec import MAX_EPOCHS, SETTINGS, TrialSpec, check_choice, retrain_spec
from das.stages import pretrained_ops, run_searches, run_train, run_trains
from das.utils import UserError, device_of, parse_seeds, set_threads, write_json
from das.vocab import FORMATIONS, OP_SETS, SPACES, uniform_method

ROLE = "bohb-evaluation"  # analyze.py never reads these as trials of a study

OBJECTIVES = ("one-shot", "final", "das-single")
CONNECT_TIMEOUT = 10.0
SETTINGS_FILE = "settings.json"
LOGS = ("configs.json", "results.json")
# what a worker takes from the master's settings.json, never from its own flags: the run's own, and
# every trial setting of das.spec.SETTINGS but the epochs (the budget)
EVAL_SETTINGS = ("objective", "space", "data", "ops", "seed", "device", "threads", "min_budget", "max_budget",
                 "eta") + tuple(s.name for s in SETTINGS if s.name != "epochs")
MAX_RUNGS = 12  # successive-halving rungs of one bracket; more means a budget range no search can use


def get_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--objective", default="one-shot", choices=OBJECTIVES, help=f"{' | '.join(OBJECTIVES)} "
                   "(default one-shot)")
    p.add_argument("--space", default="seq", choices=list(SPACES), help="search space (default seq)")
    p.add_argument("--data", default="blur", choices=list(FORMATIONS), help="data formation (default blur)")
    p.add_argument("--ops", default="all", choices=list(OP_SETS), help="op set (default all)")
    p.add_argument("--iterations", type=int, default=128, help="hyperband iterations (paper: 128)")
    p.add_argument("--min-budget", type=float, default=5, help="smallest budget in search epochs (default 5)")
    p.add_argument("--max-budget", type=float, default=50, help="largest budget in search epochs (paper: 50)")
    p.add_argument("--eta", type=float, default=3, help="hyperband's eta (default 3)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="local worker processes (default: cores); 0: a master that only coordinates workers "
                        "started elsewhere")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1: one worker "
                   "process per core)")
    p.add_argument("--worker-threads", action="store_true",
                   help="run the local workers as threads of this process (one GPU, or debugging)")
    p.add_argument("--seed", default="0", help="seed(s) of every evaluation: 0, 0-4 or 0,3,7; with several, one "
                   "evaluation runs them as one computation and scores their mean (default 0)")
    cli.add_settings(p, exclude=("epochs",), help_prefix="every evaluation's setting: ")
    p.add_argument("--out", default=None, help="run folder (default results/bohb/<space>_<data>_<ops>_<objective>)")
    p.add_argument("--previous", default=None, help="folder of an earlier run's results.json to warm-start from")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out: warm-start from its own logs (moved to previous-N/)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out (its logs and evaluations)")
    p.add_argument("--host", default=None,
                   help="master: interface the nameserver binds to (default 127.0.0.1; 0.0.0.0 for all); worker: "
                        "interface its Pyro server binds to (default: the one that reaches the nameserver)")
    p.add_argument("--advertise", default=None,
                   help="master: the address workers reach it at (default: --host, or this machine's interface "
                        "address when --host is 0.0.0.0)")
    p.add_argument("--port", type=int, default=0, help="nameserver port (default: any free port)")
    p.add_argument("--ping-interval", type=float, default=10,
                   help="seconds between the master's checks for dead workers (default 10); a dead worker's "
                        "evaluation counts as failed")
    p.add_argument("--worker", action="store_true", help="run as a worker that joins a running optimisation")
    p.add_argument("--nameserver", default=None, help="worker: HOST:PORT printed by the master")
    p.add_argument("--run-id", default=None, help="worker: the run id printed by the master")
    p.add_argument("--device", default=None, help=cli.DEVICE_HELP)
    return p


def get_configspace(seed: int | None = None):
    """The paper's Table 7 ranges: learning rates and decays log-uniform, the rest categorical."""
    import ConfigSpace as CS
    import ConfigSpace.hyperparameters as CSH

    cs = CS.ConfigurationSpace(seed=seed)
    cs.add_hyperparameters([
        CSH.UniformFloatHyperparameter("param_lr", 1e-5, 1.0, log=True),
        CSH.UniformFloatHyperparameter("param_wd", 1e-8, 0.1, log=True),
        CSH.CategoricalHyperparameter("param_warmup", ["True", "False"]),
        CSH.UniformFloatHyperparameter("alpha_lr", 1e-5, 0.1, log=True),
        CSH.UniformFloatHyperparameter("alpha_wd", 1e-5, 0.1, log=True),
        CSH.CategoricalHyperparameter("alpha_warmup", ["True", "False"]),
        CSH.CategoricalHyperparameter("alpha_scheduler", ["None", "Linear"]),
        CSH.CategoricalHyperparameter("alpha_optimizer", ["Adam", "GradientDescent"]),
    ])
    return cs


def config_to_hparams(config: dict, name: str) -> HParams:
    """Plain Python values only: numpy scalars break hpbandster's Pyro4/serpent transport."""
    as_bool = lambda v: v if isinstance(v, bool) else str(v) == "True"
    d = {
        "param_lr": float(config["param_lr"]), "param_wd": float(config["param_wd"]),
        "param_warmup": as_bool(config["param_warmup"]),
        "alpha_lr": float(config["alpha_lr"]), "alpha_wd": float(config["alpha_wd"]),
        "alpha_warmup": as_bool(config["alpha_warmup"]),
        "alpha_scheduler": None if str(config["alpha_scheduler"]) == "None" else str(config["alpha_scheduler"]),
        "alpha_optimizer": str(config["alpha_optimizer"]),
    }
    return HParams.from_dict(d, name)


def default_out(a) -> Path:
    return Path(a.out) if a.out else Path("results") / "bohb" / f"{a.space}_{a.data}_{a.ops}_{a.objective}"


def seeds_of(a) -> list[int]:
    return parse_seeds(a.seed) if isinstance(a.seed, str) else [int(a.seed)]


def eval_specs(a, hp: HParams, epochs: int) -> list[TrialSpec]:
    """The searches one evaluation runs: one per seed, every setting the master's."""
    method = "das-single" if a.objective == "das-single" else "das"
    settings = {s.name: getattr(a, s.name) for s in SETTINGS if s.name != "epochs" and hasattr(a, s.name)}
    return [TrialSpec.make(hp=hp, space=a.space, data=a.data, ops=a.ops, method=method, seed=seed, epochs=epochs,
                           **settings) for seed in seeds_of(a)]


def _mean(values) -> float | None:
    """The mean of the scores, or None when any seed failed or diverged (a configuration that breaks
    one search is not a good one)."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def evaluate_config(a, config: dict, budget: float, name: str) -> dict:
    """One BOHB evaluation: loss = -PSNR of the objective (the mean over the seeds, run as one
    computation); inf for a diverged or crashed run."""
    root = default_out(a) / "evals" / name
    device = device_of(a.device)  # the master's choice (settings.json), cpu by default
    hp = config_to_hparams(config, name)
    epochs = max(1, int(round(float(budget))))
    specs = eval_specs(a, hp, epochs)
    pretrained = None
    if specs[0].method == "das-single":
        pre = default_out(a) / "pretrained"
        pretrained = tuple(str(pre / f"{uniform_method(op)}.pt") for op in pretrained_ops(a.ops))
    t0 = time.perf_counter()
    try:
        rs = run_searches(specs, root, device=device, overwrite=True, pretrained=pretrained, quiet=True, role=ROLE)
        info = {"status": rs[0]["status"] if len(rs) == 1 else [r["status"] for r in rs],
                "one_shot_psnr": _mean([r.get("one_shot_psnr") for r in rs]),
                "genotype": [(r.get("genotype") or {}).get("layers") or (r.get("genotype") or {}).get("edges")
                             for r in rs] if len(rs) > 1 else
                (rs[0].get("genotype") or {}).get("layers") or (rs[0].get("genotype") or {}).get("edges")}
        score = _mean([r.get("one_shot_psnr") if r["status"] == Status.SEARCHED else None for r in rs])
        if a.objective == "final" and score is not None:
            ts = run_trains([retrain_spec(s, Genotype.from_dict(r["genotype"])) for s, r in zip(specs, rs)], root,
                            device=device, overwrite=True, quiet=True, role=ROLE)
            score = _mean([t["architecture_psnr"] if t["status"] == Status.COMPLETE else None for t in ts])
            info["architecture_psnr"] = score
    except Exception as exc:  # a crashed evaluation is a failed one; the optimisation goes on
        info, score = {"status": "crashed", "error": f"{type(exc).__name__}: {exc}"}, None
    finally:
        unlock_under(root)  # only this evaluation's: other worker threads may hold theirs
    info["seconds"] = time.perf_counter() - t0
    ok = score is not None and score == score and abs(score) != float("inf")
    return {"loss": -float(score) if ok else float("inf"), "info": info}


def _worker_class():
    from hpbandster.core.worker import Worker

    class DASWorker(Worker):
        def __init__(self, a, **kwargs):
            super().__init__(**kwargs)
            self.a = a

        def compute(self, config_id, config, budget, working_directory):
            name = "-".join(str(int(i)) for i in config_id) + f"-b{int(round(float(budget)))}"
            return evaluate_config(self.a, dict(config), float(budget), name)

    return DASWorker


def parse_nameserver(text: str | None):
    if not text or ":" not in text:
        raise UserError(f"--nameserver must be HOST:PORT as printed by the master, got {text!r}")
    host, port = text.rsplit(":", 1)
    try:
        return host, int(port)
    except ValueError:
        raise UserError(f"--nameserver port must be a number, got {port!r}") from None


def check_reachable(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str:
    """Fail within `timeout` seconds, not hang, when the nameserver cannot be reached. Returns this
    machine's address on the way there (the interface a worker's own server should listen on)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            return s.getsockname()[0]
    except OSError as exc:
        raise UserError(f"cannot reach the nameserver at {host}:{port} within {timeout:.0f}s ({exc.strerror or exc}); "
                        "start the master first (bohb.py without --worker) and pass the HOST:PORT it prints") from None


def interface_address() -> str:
    """This machine's first non-loopback IPv4 address (what a master bound to 0.0.0.0 advertises)."""
    try:
        import netifaces
        for name in netifaces.interfaces():
            for entry in netifaces.ifaddresses(name).get(netifaces.AF_INET, []):
                if not entry.get("addr", "127.").startswith("127."):
                    return entry["addr"]
    except (ImportError, ValueError, OSError):
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def load_settings(out: Path, run_id: str) -> argparse.Namespace:
    """The evaluation settings the master wrote into the shared run folder."""
    f = out / SETTINGS_FILE
    if not f.is_file():
        raise UserError(f"{f}: no settings of a running optimisation; pass the --out the master printed (the run "
                        "folder must be on a filesystem this machine shares with the master)")
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{f}: unreadable settings ({exc}); restart the master") from None
    if not isinstance(d, dict) or any(k not in d for k in EVAL_SETTINGS + ("run_id", "out")):
        raise UserError(f"{f}: not the settings of a bohb.py master; restart the master")
    if d["run_id"] != run_id:
        raise UserError(f"{f}: belongs to run {d['run_id']}, not {run_id}; pass the run id and --out the master "
                        "printed together")
    return argparse.Namespace(**d)


def _watch_nameserver(worker, host: str, port: int, every: float = 30.0, misses: int = 4) -> None:
    """A master that died never tells its workers: stop once its nameserver has been gone a while."""
    def watch():
        missed = 0
        while missed < misses:
            time.sleep(every)
            try:
                socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
                missed = 0
            except OSError:
                missed += 1
        worker.shutdown()

    threading.Thread(target=watch, name="nameserver-watch", daemon=True).start()


def run_worker(a) -> dict:
    host, port = parse_nameserver(a.nameserver)
    if not a.run_id:
        raise UserError("--worker needs --run-id, as printed by the master")
    defaults = get_parser().parse_args([])
    own = [k for k in EVAL_SETTINGS if getattr(a, k, None) != getattr(defaults, k, None)]
    if own:
        flags = ", ".join("--" + k.replace("_", "-") for k in own)
        raise UserError(f"a worker takes every evaluation setting from the master's {SETTINGS_FILE}; drop {flags}")
    if not a.out:
        raise UserError("--worker needs --out, the run folder the master printed")
    local = check_reachable(host, port)
    settings = load_settings(Path(a.out), a.run_id)
    set_threads(settings.threads)
    import Pyro4

    Pyro4.config.COMMTIMEOUT = 0  # evaluations are long; only the first contact is bounded (above)
    logger = logging.getLogger("das.bohb.worker")
    logger.setLevel(logging.WARNING)
    w = _worker_class()(settings, run_id=a.run_id, nameserver=host, nameserver_port=port, logger=logger,
                        host=a.host or local)
    _watch_nameserver(w, host, port)
    print(f"worker {w.worker_id} of run {a.run_id}, listening on {a.host or local}", flush=True)
    w.run(background=False)
    return {"worker": w.worker_id}


def _finite(a, name, lo=None, integer=False):
    v = getattr(a, name)
    flag = "--" + name.replace("_", "-")
    if v is None or isinstance(v, float) and not math.isfinite(v):
        raise UserError(f"{flag} must be a finite number, got {v}")
    if lo is not None and v < lo:
        raise UserError(f"{flag} must be >= {lo:g}, got {v:g}")


def _validate(a):
    check_choice(a.objective, OBJECTIVES, "objective")
    check_choice(a.space, SPACES, "space")
    check_choice(a.data, FORMATIONS, "data formation")
    check_choice(a.ops, OP_SETS, "op set")
    for name in ("min_budget", "max_budget", "eta", "ping_interval"):
        _finite(a, name, 0)
    if a.min_budget < 1 or a.max_budget < 1:
        raise UserError("--min-budget and --max-budget must be at least 1 (they are search epochs)")
    if a.max_budget > MAX_EPOCHS:
        raise UserError(f"--max-budget must be at most {MAX_EPOCHS} search epochs, got {a.max_budget:g}")
    if a.min_budget > a.max_budget:
        raise UserError(f"--min-budget {a.min_budget:g} is above --max-budget {a.max_budget:g}; swap them")
    if a.iterations < 1:
        raise UserError(f"--iterations must be >= 1, got {a.iterations}")
    if not 0 <= a.workers <= 256:
        raise UserError(f"--workers must be in 0..256, got {a.workers}")
    if a.workers == 0 and a.worker_threads:
        raise UserError("--worker-threads starts local workers; drop it or pass --workers >= 1")
    if a.eta <= 1:
        raise UserError(f"--eta must be > 1, got {a.eta:g}")
    rungs = math.floor(math.log(a.max_budget / a.min_budget) / math.log(a.eta) + 1e-9) + 1
    if rungs > MAX_RUNGS:
        raise UserError(f"--min-budget {a.min_budget:g}, --max-budget {a.max_budget:g} and --eta {a.eta:g} make "
                        f"{rungs} successive-halving rungs (at most {MAX_RUNGS}); raise --min-budget or --eta")
    seeds = seeds_of(a)
    if len(seeds) > 64:
        raise UserError(f"--seed names {len(seeds)} seeds; one evaluation runs at most 64")
    eval_specs(a, HParams(), 1)  # every setting checked by TrialSpec, before anything starts
    if not 0 <= a.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {a.port}")
    if a.ping_interval < 1:
        raise UserError(f"--ping-interval must be >= 1 second, got {a.ping_interval:g}")
    if a.objective == "das-single" and a.space != "seq":
        raise UserError("the das-single objective is defined for the sequential space; use --space seq")
    if a.resume and a.overwrite:
        raise UserError("--resume and --overwrite exclude each other")


def _pretrain(a, out: Path):
    """das-single: one grad-only and one net-only network at the max budget (preset BOHB-DAS-single),
    trained once as ordinary baseline trials and shared by all evaluations."""
    import shutil

    pre = out / "pretrained"
    settings = {s.name: getattr(a, s.name) for s in SETTINGS if s.name != "epochs"}
    for op in pretrained_ops(a.ops):
        method = uniform_method(op)
        target = pre / f"{method}.pt"
        if target.exists():
            continue
        spec = TrialSpec.make(hp=load_hparams("BOHB-DAS-single"), space=a.space, data=a.data, ops=a.ops,
                              method=method, seed=seeds_of(a)[0], epochs=int(a.max_budget), **settings)
        r = run_train(spec, pre, device=a.device, resume=True, quiet=True, role=ROLE)
        unlock_all()
        if r["status"] != Status.COMPLETE:
            raise UserError(f"{r['dir']}: pretraining the {method} network failed ({r['status']}); see its log.txt")
        shutil.copy(Path(r["dir"]) / "network.pt", target)


def _prepare_out(a, out: Path):
    """A run folder holds one optimisation: continuing or replacing an earlier one is asked for."""
    earlier = [f for f in LOGS if (out / f).exists()]
    if not earlier:
        return None
    if a.overwrite:
        for name in LOGS + ("summary.csv", "incumbent.json", "bohb_summary.json", SETTINGS_FILE):
            (out / name).unlink(missing_ok=True)
        for folder in ("evals", "pretrained"):  # pretrained networks belong to the old run's seed and budget
            shutil.rmtree(out / folder, ignore_errors=True)
        return None
    if a.resume and (out / SETTINGS_FILE).is_file():
        try:
            old = json.loads((out / SETTINGS_FILE).read_text())
        except (OSError, ValueError):
            old = {}
        def same(k):  # a seed list written as 0 or "0"; the thread count changes no number
            if k == "seed":
                return parse_seeds(str(old[k])) == seeds_of(a)
            return k == "threads" or old[k] == getattr(a, k, None)

        differ = [k for k in EVAL_SETTINGS if k in old and not same(k)]
        if differ:
            raise UserError(f"{out}: --resume continues a run of other settings ({', '.join(differ)}); pass its "
                            "settings, or --overwrite to replace it")
    if not (a.resume or a.previous):
        raise UserError(f"{out}: holds an earlier BOHB run ({', '.join(earlier)}); pass --resume to continue it, "
                        "--previous DIR to warm-start a new one here, or --overwrite to replace it")
    k = 1
    while (out / f"previous-{k}").exists():
        k += 1
    keep = out / f"previous-{k}"
    keep.mkdir()
    for name in LOGS:
        if (out / name).exists():
            os.replace(out / name, keep / name)
    return keep


def _load_previous(folder: Path):
    import hpbandster.core.result as hpres

    if not (folder / "results.json").is_file() or not (folder / "configs.json").is_file():
        raise UserError(f"{folder}: no hpbandster log (configs.json, results.json) to warm-start from; "
                        "pass the folder of an earlier bohb.py run")
    try:
        previous = hpres.logged_results_to_HBS_result(str(folder))
        previous.get_all_runs()
    except Exception as exc:  # hpbandster reads line by line and fails with whatever the line holds
        raise UserError(f"{folder}: the hpbandster log is corrupt ({type(exc).__name__}: {exc}); "
                        "pass another --previous or start without it") from None
    return previous


def run_master(a) -> dict:
    import hpbandster.core.nameserver as hpns
    import hpbandster.core.result as hpres
    from hpbandster.optimizers import BOHB as BOHBOptimizer

    out = default_out(a).absolute()
    a.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = _load_previous(Path(a.previous)) if a.previous else None
    kept = _prepare_out(a, out)
    if a.resume and kept is None:
        raise UserError(f"--resume: {out} holds no earlier run to continue; drop --resume")
    if a.resume and previous is None:
        previous = _load_previous(kept)
    bind = a.host or "127.0.0.1"
    advertise = a.advertise or (interface_address() if bind == "0.0.0.0" else bind)
    run_id = a.run_id or f"das-{uuid.uuid4().hex[:8]}"
    write_json(out / "args.json", vars(a))
    write_json(out / SETTINGS_FILE, {**{k: getattr(a, k) for k in EVAL_SETTINGS}, "run_id": run_id, "out": str(out),
                                "epochs": "a budget b runs max(1, round(b)) search epochs"})
    if a.objective == "das-single":
        _pretrain(a, out)
    logging.getLogger("hpbandster").setLevel(logging.WARNING)
    ns = hpns.NameServer(run_id=run_id, host=bind, port=a.port)
    _, ns_port = ns.start()
    join = [sys.executable, str(Path(__file__).resolve()), "--worker", "--nameserver", f"{advertise}:{ns_port}",
            "--run-id", run_id, "--out", str(out)]
    print(f"nameserver {bind}:{ns_port} run id {run_id}; join from a machine that shares {out} with "
          f"`python {shlex.quote(join[1])} --worker --nameserver {advertise}:{ns_port} --run-id {run_id} "
          f"--out {shlex.quote(str(out))}`", flush=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    logs, procs = [], []
    if a.worker_threads:
        quiet = logging.getLogger("das.bohb.worker")
        quiet.setLevel(logging.WARNING)
        for k in range(a.workers):
            _worker_class()(a, run_id=run_id, nameserver=advertise, nameserver_port=ns_port, id=k,
                            logger=quiet, host=advertise).run(background=True)
    else:
        logs = [open(out / f"worker{k}.log", "w") for k in range(a.workers)]
        procs = [subprocess.Popen(join, stdout=logs[k], stderr=subprocess.STDOUT, env=env) for k in range(a.workers)]
    logger = logging.getLogger("das.bohb.master")
    logger.setLevel(logging.WARNING)
    t0 = time.perf_counter()
    optimizer = None
    try:
        optimizer = BOHBOptimizer(configspace=get_configspace(seeds_of(a)[0]), run_id=run_id, nameserver=advertise,
                                  nameserver_port=ns_port, host=advertise, ping_interval=a.ping_interval,
                                  min_budget=a.min_budget, max_budget=a.max_budget, eta=a.eta,
                                  result_logger=_progress_logger(hpres, out, a),
                                  previous_result=previous, logger=logger)
        res = optimizer.run(n_iterations=a.iterations, min_n_workers=max(1, a.workers))
    finally:
        if optimizer is not None:
            optimizer.shutdown(shutdown_workers=True)
        ns.shutdown()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for f in logs:
            f.close()
    seconds = time.perf_counter() - t0
    return _report(a, out, res, seconds)


def _progress_logger(hpres, out: Path, a):
    """hpbandster's JSON result logger, printing one line per finished evaluation: its number, the
    configuration, the rung's budget, its PSNR and the best so far at the largest budget seen."""
    class Progress(hpres.json_result_logger):
        count, best = 0, {}

        def __call__(self, job):
            super().__call__(job)
            Progress.count += 1
            loss = (job.result or {}).get("loss", float("inf")) if job.exception is None else float("inf")
            budget = float(job.kwargs["budget"])
            if math.isfinite(loss):
                Progress.best[budget] = max(Progress.best.get(budget, -math.inf), -loss)
            top = max(Progress.best) if Progress.best else None
            psnr = f"{-loss:.2f} dB" if math.isfinite(loss) else "failed"
            best = f"{Progress.best[top]:.2f} dB at budget {top:g}" if top is not None else "none yet"
            print(f"evaluation {Progress.count}: config {'-'.join(map(str, job.id))} budget {budget:g} "
                  f"({max(1, round(budget))} epochs): {psnr}; best so far {best}", flush=True)

    return Progress(str(out), overwrite=True)


# the paper's BOHB presets (Tables 7 and 8: configs/) by objective, space and data formation
PAPER_PRESETS = {("one-shot", "seq", "blur"): "BOHB-one-shot-Blur", ("one-shot", "seq", "downsample"): "BOHB-one-shot-DS",
                 ("final", "seq", "blur"): "BOHB-Blur", ("das-single", "seq", "blur"): "BOHB-DAS-single",
                 ("one-shot", "cell", "blur"): "BOHB-Non-Seq-one-shot-Blur", ("final", "cell", "blur"): "BOHB-Non-Seq-Blur"}


def trajectory(runs, max_budget: float) -> list[dict]:
    """The evaluations in the order they finished, with the best PSNR so far at the largest budget
    (the incumbent's rung) and at any budget."""
    order = sorted(range(len(runs)), key=lambda i: ((runs[i].time_stamps or {}).get("finished", i), i))
    rows, best_top, best_any = [], None, None
    for k, i in enumerate(order, 1):
        r = runs[i]
        psnr = -r.loss if r.loss is not None and math.isfinite(r.loss) else None
        if psnr is not None:
            best_any = psnr if best_any is None else max(best_any, psnr)
            if r.budget >= max_budget:
                best_top = psnr if best_top is None else max(best_top, psnr)
        rows.append({"evaluation": k, "finished_seconds": (r.time_stamps or {}).get("finished"),
                     "config_id": "-".join(map(str, r.config_id)), "budget": r.budget, "psnr": psnr,
                     "best_psnr_at_max_budget": best_top, "best_psnr_any_budget": best_any})
    return rows


def incumbent_vs_paper(a, hp: HParams) -> list[dict]:
    """The incumbent's hyperparameters beside the paper's preset for the same objective, space and
    data formation (Table 7 / 8), with Table 7's search range."""
    name = PAPER_PRESETS.get((a.objective, a.space, a.data))
    paper = load_hparams(name).to_dict() if name else {}
    ranges = {h.name: (f"[{h.lower:g}, {h.upper:g}]{' log' if h.log else ''}" if hasattr(h, "lower")
                       else " | ".join(map(str, h.choices))) for h in list(get_configspace().values())}
    ours = hp.to_dict()
    text = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # exact values: incumbent.json, configs/
    return [{"hyperparameter": k, "search range": ranges[k], "incumbent": text(ours.get(k)),
             f"paper ({name or 'no preset for this objective'})": text(paper.get(k)) if name else ""}
            for k in sorted(ranges)]


def _report(a, out: Path, res, seconds: float) -> dict:
    id2conf = res.get_id2config_mapping()
    runs = res.get_all_runs()
    rows = []
    for r in runs:
        cfg = id2conf[r.config_id]["config"]
        info = r.info if isinstance(r.info, dict) else {}
        loss = r.loss if r.loss is not None else float("inf")
        rows.append({"config_id": "-".join(map(str, r.config_id)), "budget": r.budget, "loss": loss,
                     "psnr": -loss if loss != float("inf") else None, "status": info.get("status", "crashed"),
                     **{k: cfg[k] for k in sorted(cfg)}})
    with open(out / "summary.csv", "w", newline="") as f:
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    incumbent = res.get_incumbent_id()
    summary = {"objective": a.objective, "evaluations": len(runs), "seconds": seconds,
               "failed": sum(1 for r in rows if r["loss"] == float("inf"))}
    inc_runs = [r for r in runs if incumbent is not None and r.config_id == incumbent and r.loss is not None
                and math.isfinite(r.loss)]
    if not inc_runs:  # hpbandster names an incumbent even when every loss is inf: that is no incumbent
        summary["incumbent"] = None
        write_json(out / "bohb_summary.json", summary)
        (out / "incumbent.json").unlink(missing_ok=True)
        raise UserError(f"{out}: no evaluation finished with a finite PSNR ({summary['failed']} of {len(runs)} failed "
                        f"or diverged), so there is no incumbent; see summary.csv and {out}/worker*.log")
    name = f"BOHB-{a.objective}-{a.space}-{a.data}-{a.ops}"
    hp = config_to_hparams(id2conf[incumbent]["config"], name)
    best = max(inc_runs, key=lambda r: r.budget)
    write_json(out / "incumbent.json", hp.to_dict())
    epochs = sum(max(1, round(float(r.budget))) for r in runs) * len(seeds_of(a))
    summary.update(incumbent=hp.to_dict(), incumbent_budget=best.budget, incumbent_psnr=-best.loss,
                   incumbent_file=str(out / "incumbent.json"), paper_preset=PAPER_PRESETS.get(
                       (a.objective, a.space, a.data)),
                   evaluations_per_hour=len(runs) / max(seconds, 1e-9) * 3600,
                   search_epochs=epochs, search_epochs_per_hour=epochs / max(seconds, 1e-9) * 3600)
    write_json(out / "bohb_summary.json", summary)
    from das import plot, report

    steps = trajectory(runs, a.max_budget)
    report.write_table(report.rows_table("trajectory", "BOHB: every evaluation in the order it finished, and the "
                                         "best PSNR so far", steps, 3), out, latex=False)
    report.write_table(report.rows_table("incumbent_vs_paper", "The incumbent's hyperparameters beside the "
                                         "paper's BOHB preset", incumbent_vs_paper(a, hp), 2), out, latex=False)
    plot.bohb_trajectory_figure(steps, out, title=f"BOHB {a.objective}, {a.space}/{a.data}/{a.ops}")
    print(f"{len(runs)} evaluations ({summary['failed']} failed) in {seconds:.0f}s "
          f"({summary['evaluations_per_hour']:.0f} evaluations, {summary['search_epochs_per_hour']:.0f} search epochs "
          f"per hour); incumbent PSNR {-best.loss:.2f} dB at budget {best.budget:g}: {out / 'incumbent.json'}; "
          f"beside the paper's preset: {out / 'incumbent_vs_paper.md'}; trajectory: {out / 'trajectory.png'}")
    return summary


def main(a) -> dict:
    set_threads(a.threads)
    if not a.worker:  # a worker takes the master's device from settings.json
        cli.check_device(a)
    _validate(a)
    return run_worker(a) if a.worker else run_master(a)


if __name__ == "__main__":
    run_main(main, get_parser())
