"""A hostile-but-fair user: crafted checkpoints, escaping names, out-of-range flags, malformed and
mutated JSON, unreadable and looping result trees. Each must end in a valid result or one line on
stderr starting with "error:" and exit code 2 (never a traceback, a hang, a NaN written as a
number, or a file written outside --out). Command lines run as subprocesses with tiny settings."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analyze
import das.train as train_mod
from das.genotype import Genotype
from das.hparams import HParams, load_hparams
from das.spec import TrialSpec, retrain_spec
from das.collect import load_trials, summarize_skipped
from das.utils import UserError, write_json
from tests.conftest import ROOT
from tests.helpers import run_retrain, run_search
from tests.test_analyze import write_trial

LISTED, EXTRA = True, False  # a case of the issue's list (run as a subprocess), or one added here (in-process)
TINY = ["--epochs", "1", "--batches-per-epoch", "1", "--device", "cpu", "--quiet", "--threads", "1"]
SEQ = {"space": "seq", "ops": "all", "data": "blur", "width": 16, "layers": ["grad", "net"] * 5}
CELL = {"space": "cell", "ops": "good", "data": "blur", "width": 16,
        "edges": [[0, 1, "grad"], [1, 2, "net"], [0, 2, "zero"]]}
H1 = {k: v for k, v in load_hparams("H1").to_dict().items()}


def cli(script, *args, cwd=ROOT, timeout=300, umask=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env, preexec_fn=pre)


def in_process(monkeypatch, script, *args):
    """The same command line through the script's own cli.run_main, without a new interpreter (for
    the cases beyond the issue's list, to keep this file quick): .returncode and .stderr like cli()."""
    import contextlib
    import importlib
    import io
    import types
    from das import cli as cli_mod

    module = importlib.import_module(script.removesuffix(".py"))
    monkeypatch.setattr(sys, "argv", [script, *map(str, args)])
    err, code = io.StringIO(), 0
    with contextlib.redirect_stderr(err):
        try:
            cli_mod.run_main(module.main, module.get_parser())
        except SystemExit as exc:
            code = exc.code
    return types.SimpleNamespace(returncode=code, stderr=err.getvalue())


def run_case(listed, monkeypatch, script, *args, **kw):
    """A case of the issue's list runs as a subprocess; others in-process."""
    return cli(script, *args, **kw) if listed else in_process(monkeypatch, script, *args)


def tiny_except(args):
    """TINY without the flags the case sets itself."""
    out, i = [], 0
    while i < len(TINY):
        step = 1 if TINY[i] == "--quiet" else 2
        if TINY[i] not in args:
            out += TINY[i:i + step]
        i += step
    return out


def one_line_error(p, match=None):
    """Exit code 2, one line on stderr starting with error:, no traceback; returns the line."""
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    if match:
        assert re.search(match, lines[0]), lines[0]
    return lines[0]


def strict_load(path):
    def refuse(name):
        raise ValueError(f"{name} token in {path}")
    return json.loads(Path(path).read_text(), parse_constant=refuse)


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in Path(path).rglob("*"))


class Crafted:
    """A pickle that would create `marker` when loaded by a plain torch.load / pickle.load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def craft(path, marker):
    torch.save({"model": Crafted(marker), "epoch": 1}, path)
    # the file has teeth: an unguarded load runs it (then the marker is removed again)
    torch.load(path, weights_only=False)
    assert Path(marker).exists()
    Path(marker).unlink()


def as_running(folder):
    """As if the run had been killed: result.json says running."""
    r = json.loads((Path(folder) / "result.json").read_text())
    r["status"] = "running"
    write_json(Path(folder) / "result.json", r)


def killed_after_epoch(monkeypatch, run, *args, epochs_done=1):
    """Run a stage in-process and interrupt it right after it saved the checkpoint of epoch
    `epochs_done`, leaving result.json running and the checkpoint on disk."""
    real, saves = train_mod.save_torch, []

    def save(path, obj):
        real(path, obj)
        saves.append(path)
        if len(saves) == epochs_done:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_torch", save)
    with pytest.raises(KeyboardInterrupt):
        run(*args)
    monkeypatch.setattr(train_mod, "save_torch", real)
    return Path(saves[-1])


# ============================================================================ security and data loss
def test_crafted_checkpoint_resumed_in_a_search_is_refused_not_run(tmp_path):
    out, marker = tmp_path / "results", tmp_path / "pwned"
    d = Path(run_search(tmp_path, "--seed", "0", "--epochs", "1", "--batches-per-epoch", "1")["dir"])
    as_running(d)
    craft(d / "checkpoint.pt", marker)
    p = cli("search.py", "--out", out, *TINY, "--resume")
    one_line_error(p, "checkpoint.pt: epoch checkpoint cannot be read as a plain checkpoint")
    assert not marker.exists()


def test_crafted_checkpoint_resumed_in_a_retrain_is_refused_not_run(tmp_path):
    out, marker = tmp_path / "results", tmp_path / "pwned"
    d = Path(run_retrain(tmp_path, "--method", "random", "--epochs", "1", "--batches-per-epoch", "1")["dir"])
    as_running(d)
    craft(d / "network_checkpoint.pt", marker)
    p = cli("retrain.py", "--method", "random", "--out", out, *TINY, "--resume")
    one_line_error(p, "network_checkpoint.pt: epoch checkpoint cannot be read")
    assert not marker.exists()


def test_crafted_pretrained_network_is_refused_not_run(tmp_path):
    out, marker = tmp_path / "results", tmp_path / "pwned"
    # the grad-only network DAS-single takes (same settings), replaced by a crafted pickle
    d = Path(run_retrain(tmp_path, "--method", "grad-only", "--epochs", "1", "--batches-per-epoch", "1")["dir"])
    craft(d / "network.pt", marker)
    p = cli("search.py", "--method", "das-single", "--out", out, *TINY)
    one_line_error(p, "network.pt: pretrained checkpoint cannot be read as a plain checkpoint")
    assert not marker.exists()
    r = strict_load(out / "seq/blur/all/das-single/H1/seed0-e1-b1/result.json")
    assert r["status"] == "failed" and "pretrained checkpoint" in r["error"]  # not left `running`


def test_cell_checkpoint_resumed_in_a_seq_trial_is_one_line(tmp_path, monkeypatch):
    out = tmp_path / "results"
    common = ["--epochs", "2", "--batches-per-epoch", "1"]
    cell = killed_after_epoch(monkeypatch, run_search, tmp_path, "--space", "cell", "--ops", "good", *common)
    seq = killed_after_epoch(monkeypatch, run_search, tmp_path, "--space", "seq", "--ops", "good", *common)
    args = ["search.py", "--space", "seq", "--ops", "good", "--out", out, "--epochs", "2", "--batches-per-epoch",
            "1", "--device", "cpu", "--quiet", "--threads", "1", "--resume"]
    shutil.copy(cell, seq)
    one_line_error(cli(*args), "checkpoint of another trial .differs in space")
    # the same weights claiming to be this trial's: the shapes differ, still one line
    state = torch.load(cell, weights_only=True)
    state["spec"] = json.loads((seq.parent / "result.json").read_text())["spec"]
    torch.save(state, seq)
    line = one_line_error(cli(*args), r"checkpoint does not fit this trial \((RuntimeError|KeyError)\)")
    assert len(line) < 400
    # a checkpoint that names no trial cannot be checked, so it is not taken
    del state["spec"]
    torch.save(state, seq)
    one_line_error(cli(*args), "records no trial specification")


@pytest.mark.parametrize("listed,name", [(LISTED, "../../../../escaped"), (LISTED, "/tmp/das-escaped-{uid}"),
                                         (LISTED, 5), (LISTED, ""), (EXTRA, "a/b"), (EXTRA, "..")])
def test_hparams_name_cannot_leave_out(tmp_path, monkeypatch, listed, name):
    uid = uuid.uuid4().hex[:8]
    name = name.format(uid=uid) if isinstance(name, str) else name
    work = tmp_path / "work"
    work.mkdir()
    f = work / "h.json"
    f.write_text(json.dumps({**H1, "name": name}))
    monkeypatch.chdir(work)
    p = run_case(listed, monkeypatch, "search.py", "--preset", f, "--out", work / "out", *TINY, cwd=work)
    one_line_error(p, "cannot name a folder")
    assert files_under(tmp_path) == ["work", "work/h.json"]
    assert not Path(f"/tmp/das-escaped-{uid}").exists() and not Path("/escaped").exists()


def test_results_are_written_with_the_umask_not_0600(tmp_path):
    out = tmp_path / "results"
    p = cli("search.py", "--out", out, *TINY, umask=0o022)
    assert p.returncode == 0, p.stderr
    d = out / "seq/blur/all/das/H1/seed0-e1-b1"
    for name in ("result.json", "args.json", "genotype.json", "supernet.pt", "log.txt"):
        assert (d / name).stat().st_mode & 0o777 == 0o644, name
    p = cli("retrain.py", "--genotype", d / "genotype.json", *TINY, umask=0o002)
    assert p.returncode == 0, p.stderr
    for name in ("result.json", "network.pt"):
        assert (d / "retrain-seed0" / name).stat().st_mode & 0o777 == 0o664, name


# ============================================================================ wrong records
@pytest.fixture
def huge_lr(tmp_path):
    f = tmp_path / "huge.json"
    f.write_text(json.dumps({**H1, "name": "huge", "param_lr": 1e6}))
    return f


@pytest.mark.parametrize("stage", [["search.py"], ["retrain.py", "--method", "grad-only"],
                                   ["retrain.py", "--method", "random-search", "--candidates", "2"]])
def test_a_huge_learning_rate_diverges_never_completes(tmp_path, huge_lr, stage):
    out = tmp_path / "results"
    p = cli(*stage, "--preset", huge_lr, "--out", out, "--epochs", "2", "--batches-per-epoch", "2",
            "--device", "cpu", "--threads", "1", "--quiet")
    assert p.returncode == 0, p.stderr
    [f] = list(out.rglob("result.json"))
    r = strict_load(f)  # no NaN or Infinity token anywhere
    assert r["status"] == "diverged" and r["error"]
    assert r["architecture_psnr"] is None and r["one_shot_psnr"] is None
    for c in r.get("candidates") or []:
        assert c["status"] == "diverged" and c["architecture_psnr"] is None and c["error"]


def test_random_search_never_picks_a_non_finite_candidate(tmp_path, monkeypatch):
    import das.stages as trial_mod
    # the four candidates train as one batch: one evaluation gives one PSNR per candidate
    monkeypatch.setattr(trial_mod, "evaluate_averagings", lambda *a, **k: [
        {"sample": v, "pooled": v, "batch": v} for v in (float("nan"), 12.0, float("inf"), 11.0)])
    r = run_retrain(tmp_path, "--method", "random-search", "--candidates", "4", "--epochs", "1",
                    "--batches-per-epoch", "1")
    stored = strict_load(Path(r["dir"]) / "result.json")
    assert stored["status"] == "complete" and stored["architecture_psnr"] == 12.0
    assert [c["status"] for c in stored["candidates"]] == ["diverged", "complete", "diverged", "complete"]
    assert stored["candidates"][0]["architecture_psnr"] is None


def test_resume_with_a_checkpoint_of_another_seed_or_data_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "results"
    tiny = ["--epochs", "2", "--batches-per-epoch", "1"]
    target = killed_after_epoch(monkeypatch, run_search, tmp_path, "--seed", "0", *tiny)
    other_seed = killed_after_epoch(monkeypatch, run_search, tmp_path, "--seed", "1", *tiny)
    other_data = killed_after_epoch(monkeypatch, run_search, tmp_path, "--seed", "0", "--data", "downsample", *tiny)
    args = ["search.py", "--out", out, "--epochs", "2", "--batches-per-epoch", "1", "--device", "cpu", "--quiet",
            "--resume"]
    for source, what in ((other_seed, "seed"), (other_data, "data")):
        shutil.copy(source, target)
        one_line_error(cli(*args), f"checkpoint of another trial .differs in {what}")


def test_resume_on_another_kind_of_device_is_refused(tmp_path, monkeypatch):
    """A checkpoint written on CUDA does not continue on the CPU (their numbers differ): the
    device recorded in the running result decides, and the folder is left as it was."""
    out = tmp_path / "results"
    ckpt = killed_after_epoch(monkeypatch, run_search, tmp_path, "--epochs", "2", "--batches-per-epoch", "1")
    result = ckpt.parent / "result.json"
    stored = json.loads(result.read_text())
    assert stored["status"] == "running" and stored["provenance"]["device"] == "cpu"
    stored["provenance"]["device"] = "cuda:0"
    result.write_text(json.dumps(stored))
    before = {f.name: f.read_bytes() for f in ckpt.parent.iterdir() if f.is_file() and f.name != "log.txt"}
    args = ["search.py", "--out", out, "--epochs", "2", "--batches-per-epoch", "1", "--device", "cpu", "--quiet",
            "--resume"]
    one_line_error(cli(*args), "checkpoint was written on .cuda:0.; continue it with --device cuda ")
    assert {f.name: f.read_bytes() for f in ckpt.parent.iterdir() if f.is_file() and f.name != "log.txt"} == before
    stored["provenance"]["device"] = "cpu"  # the same kind of device continues it
    result.write_text(json.dumps(stored))
    p = cli(*args)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(result.read_text())["status"] == "searched"


def test_resume_with_fewer_epochs_than_the_checkpoint_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "results"
    ckpt = killed_after_epoch(monkeypatch, run_search, tmp_path, "--epochs", "3", "--batches-per-epoch", "1",
                              epochs_done=3)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 3
    base = ["search.py", "--out", out, "--batches-per-epoch", "1", "--device", "cpu", "--quiet", "--resume"]
    one_line_error(cli(*base, "--epochs", "2"), "no run of these settings to continue.*differs in epochs")
    # the epoch-3 checkpoint carried into an epochs-2 trial by hand
    short = killed_after_epoch(monkeypatch, run_search, tmp_path, "--epochs", "2", "--batches-per-epoch", "1")
    shutil.copy(ckpt, short)
    one_line_error(cli(*base, "--epochs", "2"), "checkpoint of another trial .differs in epochs")
    # and one that keeps the specification but claims epoch 3
    state = torch.load(short, weights_only=True)
    state["spec"]["epochs"] = 2
    torch.save(state, short)
    one_line_error(cli(*base, "--epochs", "2"), "at epoch 3, not within this trial's 1..2")


def test_an_unexpected_exception_marks_the_trial_failed_not_running(tmp_path, monkeypatch):
    import das.stages as trial_mod

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(trial_mod, "evaluate_averagings", boom)
    with pytest.raises(RuntimeError):
        run_retrain(tmp_path, "--method", "random", "--epochs", "1", "--batches-per-epoch", "1")
    [f] = list(tmp_path.rglob("result.json"))
    r = strict_load(f)
    assert r["status"] == "failed" and r["error"] == "RuntimeError: boom"
    monkeypatch.undo()
    out = run_retrain(tmp_path, "--method", "random", "--epochs", "1", "--batches-per-epoch", "1", "--resume")
    assert out["status"] == "complete"


def test_non_finite_numbers_are_written_as_null(tmp_path):
    f = tmp_path / "r.json"
    write_json(f, {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": np.float32("nan"),
                   "d": torch.tensor([1.0, float("nan")]), "e": np.array([np.inf, 2.0]), "f": {"g": np.float64(3)}})
    assert strict_load(f) == {"a": None, "b": [None, None, 1.5], "c": None, "d": [1.0, None], "e": [None, 2.0],
                              "f": {"g": 3.0}}


# ============================================================================ one line, exit 2
BAD_FLAGS = [
    (LISTED, ["search.py", "--batches-per-epoch", "-1"], "--batches-per-epoch must be in 1"),
    (LISTED, ["search.py", "--width", "0"], "--width must be in 1"),
    (LISTED, ["search.py", "--width", "-1"], "--width must be in 1"),
    (LISTED, ["search.py", "--threads", "-1"], "--threads must be in 1"),
    (LISTED, ["search.py", "--seed", str(2**64)], "out of range"),
    (LISTED, ["search.py", "--device", "foo"], "expected cpu, cuda or cuda:N"),
    (LISTED, ["retrain.py", "--method", "random-search", "--candidates", "0"], "--candidates must be in 1..20"),
    (EXTRA, ["search.py", "--threads", "0"], "--threads must be in 1"),
    (EXTRA, ["search.py", "--seed", str(2**63 - 1)], "out of range"),  # fits 64 bits; its data streams do not
    (EXTRA, ["search.py", "--seed", "9" * 5000], "expected a seed"),
    (EXTRA, ["search.py", "--sigma-n", "nan"], "sigma-n must be a finite number"),
    (EXTRA, ["search.py", "--batch-size", "100000000"], "--batch-size must be in 2"),
    (EXTRA, ["retrain.py", "--method", "random-search", "--candidates", "-3"], "--candidates must be in 1..20"),
    (EXTRA, ["search.py", "--epochs", "x"], "invalid int value"),
]


@pytest.mark.parametrize("listed,args,match", BAD_FLAGS, ids=[" ".join(a[1:])[:40] for _, a, _ in BAD_FLAGS])
def test_bad_flags_are_one_line_errors(tmp_path, monkeypatch, listed, args, match):
    p = run_case(listed, monkeypatch, *args, "--out", tmp_path / "out", *tiny_except(args))
    one_line_error(p, match)
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_one_line(tmp_path):
    one_line_error(cli("search.py", "--device", "cuda", "--out", tmp_path / "out", "--quiet"),
                   "no usable CUDA device")


def test_device_checks_without_a_gpu(monkeypatch):
    from das.utils import device_of
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_of("cuda") == "cuda" and device_of("cuda:0") == "cuda:0"
    assert device_of(None) == "cpu"  # the default stays the CPU where a GPU is present
    for name, match in (("cuda:1", "has 1 CUDA device"), ("cuda:" + "9" * 30, "expected cpu, cuda or cuda:N"),
                        ("cuda:-1", "expected cpu"), ("CPU", "expected cpu"), ("", "expected cpu")):
        with pytest.raises(UserError, match=match):
            device_of(name)


def test_zero_batches_per_epoch_is_refused_and_blocks_nothing(tmp_path):
    out = tmp_path / "out"
    one_line_error(cli("search.py", "--out", out, "--epochs", "1", "--batches-per-epoch", "0", "--device", "cpu"),
                   "--batches-per-epoch must be in 1")
    assert not list(tmp_path.rglob("result.json"))  # nothing left `running`
    p = cli("search.py", "--out", out, *TINY)
    assert p.returncode == 0, p.stderr


def genotype_file(tmp_path, obj):
    f = tmp_path / "g.json"
    f.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return f


BAD_GENOTYPES = [
    (LISTED, "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (LISTED, {**SEQ, "width": True}, "width is True, expected an integer in 1..4096"),
    (LISTED, {**SEQ, "width": 10_000_000}, "width is 10000000, expected an integer"),
    (EXTRA, {**SEQ, "width": 16.0}, "width is 16.0"),
    (LISTED, {**SEQ, "ops": ["all"]}, r"ops is \['all'\]"),
    (EXTRA, {**SEQ, "space": {"seq": 1}}, "space is"),
    (LISTED, {**SEQ, "layers": "grad" * 10}, "needs 'layers', a list of 10"),
    (EXTRA, {**SEQ, "layers": [1] * 10}, "layer 0 has op 1"),
    (EXTRA, {**SEQ, "layers": [["grad"]] * 10}, "layer 0 has op"),
    (EXTRA, {**SEQ, "alphas": [["a", "b", "c", "d"]] * 10}, "alphas must be 10 rows of 4 finite numbers"),
    (EXTRA, {**CELL, "edges": [[0.0, 1, "grad"]]}, "is not .from, to, op"),
    (EXTRA, {**CELL, "edges": [[False, True, "grad"]]}, "is not .from, to, op"),
    (EXTRA, {**CELL, "edges": "0-1 grad"}, "needs 'edges'"),
    (EXTRA, {**CELL, "edges": [[0, 1, "grad"]] * 100}, "at most 15"),
    (EXTRA, [SEQ], "must hold a JSON object"),
    (EXTRA, json.dumps(SEQ).replace("16", "NaN"), "not valid JSON .NaN is not a JSON number"),
    (EXTRA, json.dumps(SEQ).replace("16", "1e400"), "not valid JSON .1e400 is too large"),
    (EXTRA, json.dumps(SEQ)[:-5], "not valid JSON"),
    (EXTRA, b"\xff\xfe{", "not valid JSON"),
]


@pytest.mark.parametrize("listed,obj,match", BAD_GENOTYPES, ids=[str(i) for i in range(len(BAD_GENOTYPES))])
def test_bad_genotype_files_are_one_line_errors(tmp_path, monkeypatch, listed, obj, match):
    if isinstance(obj, bytes):
        f = tmp_path / "g.json"
        f.write_bytes(obj)
    else:
        f = genotype_file(tmp_path, obj)
    p = run_case(listed, monkeypatch, "retrain.py", "--genotype", f, "--out", tmp_path / "out", *TINY)
    one_line_error(p, match)
    assert not (tmp_path / "out").exists()


BAD_HPARAMS = [
    (LISTED, json.dumps({**H1, "param_lr": 1}).replace(": 1,", ": NaN,", 1), "NaN is not a JSON number"),
    (LISTED, json.dumps({**H1, "alpha_lr": 7}).replace(": 7,", ": Infinity,", 1), "Infinity is not a JSON number"),
    (EXTRA, {**H1, "param_lr": "0.1"}, "param_lr must be a finite number >= 0, got '0.1'"),
    (EXTRA, {**H1, "param_lr": -1}, "param_lr must be a finite number >= 0"),
    (EXTRA, {**H1, "param_lr": True}, "param_lr must be a finite number"),
    (EXTRA, json.dumps({**H1, "alpha_lr": 7}).replace(": 7,", ": 1e999,", 1), "1e999 is too large"),
    (EXTRA, json.dumps({**H1, "alpha_lr": 7}).replace(": 7,", ": " + "9" * 400 + ",", 1),
     "alpha_lr must be a finite number"),
    (EXTRA, {**H1, "alpha_warmup": "yes"}, "alpha_warmup must be true or false"),
    (EXTRA, {**H1, "alpha_optimizer": ["Adam"]}, "alpha_optimizer must be one of"),
    (EXTRA, {**H1, "surprise": 1}, "unknown hyperparameters"),
    (EXTRA, [H1], "must hold a JSON object"),
]


@pytest.mark.parametrize("listed,obj,match", BAD_HPARAMS, ids=[str(i) for i in range(len(BAD_HPARAMS))])
def test_bad_hparams_files_are_one_line_errors(tmp_path, monkeypatch, listed, obj, match):
    f = tmp_path / "h.json"
    f.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    p = run_case(listed, monkeypatch, "search.py", "--preset", f, "--out", tmp_path / "out", *TINY)
    one_line_error(p, match)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--preset", "--genotype"])
@pytest.mark.parametrize("path", ["/dev/zero", "{tmp}", "{tmp}/fifo.json", "{tmp}/broken.json"])
def test_input_files_that_are_not_files_are_one_line_errors(tmp_path, monkeypatch, flag, path):
    """Never read forever (a device or a FIFO), never a traceback (a folder, a broken link)."""
    if not (tmp_path / "fifo.json").exists():
        os.mkfifo(tmp_path / "fifo.json")
        (tmp_path / "broken.json").symlink_to(tmp_path / "nowhere.json")
    script = "search.py" if flag == "--preset" else "retrain.py"
    p = in_process(monkeypatch, script, flag, path.format(tmp=tmp_path), "--out", tmp_path / "out", *TINY)
    # retrain.py --genotype takes a folder of searches too: one without genotypes is named as such
    one_line_error(p, "is not a file|is a broken link|no genotype.json of a finished search under this folder")


def test_out_that_is_a_file_or_cannot_be_written_is_one_line(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("")
    one_line_error(cli("search.py", "--out", f, *TINY), "cannot create the trial folder")
    one_line_error(cli("retrain.py", "--method", "random", "--out", f / "below", *TINY),
                   "cannot create the trial folder")
    # running as root, permissions do not stop a write; /proc does (nothing can be created there)
    one_line_error(cli("search.py", "--out", "/proc/das-results", *TINY), "cannot create the trial folder")


def test_retrain_resume_of_an_already_retrained_search(tmp_path):
    out = tmp_path / "results"
    d = Path(run_search(tmp_path, "--seed", "2", "--ops", "good")["dir"])
    run_retrain(tmp_path, "--genotype", str(d / "genotype.json"))
    before = (d / "retrain-seed2" / "result.json").read_text()
    for g in (d / "genotype.json", d / "retrain-seed2" / "genotype.json"):
        p = cli("retrain.py", "--genotype", g, "--resume", "--device", "cpu")
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        assert str(d / "retrain-seed2") in p.stderr  # the search's retrain, kept as it was
    assert (d / "retrain-seed2" / "result.json").read_text() == before
    assert [p.name for p in (out / "seq/blur/good").iterdir()] == ["das"]  # no genotype/ trial of its own


def test_relative_out_is_relative_to_the_callers_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = cli("retrain.py", "--method", "random", "--out", "rel", *TINY, cwd=elsewhere)
    assert p.returncode == 0, p.stderr
    assert (elsewhere / "rel/seq/blur/all/random/H1/seed0-e1-b1/result.json").is_file()
    assert not Path(ROOT, "rel").exists()


# ============================================================================ result trees
def hostile_tree(root):
    """A valid DAS trial and baseline, beside result files with a wrong type in every place."""
    write_trial(root, "seq", "blur", "all", "das", 0, 20.0, 18.0)
    base = write_trial(root, "seq", "blur", "all", "random", 1, 15.0)
    good = json.loads((base / "result.json").read_text())

    def variant(name, **change):
        d = root / "hostile" / name
        d.mkdir(parents=True)
        r = json.loads(json.dumps(good))
        for k, v in change.items():
            if k.startswith("spec_"):
                r["spec"][k[5:]] = v
            else:
                r[k] = v
        (d / "result.json").write_text(json.dumps(r))
        return d

    variant("psnr-string", architecture_psnr="20.1")
    variant("psnr-list", architecture_psnr=[20.1])
    variant("psnr-dict", architecture_psnr={"v": 20.1})
    variant("seconds-string", wall_seconds={"train": "20"})
    variant("genotype-odd", genotype={"space": "seq", "layers": 5})
    variant("history-ragged", history={"train_loss": [1.0, "x"]})
    variant("candidates-odd", candidates=[{"architecture_psnr": "x"}])
    variant("status-list", status=["complete"])
    variant("seed-string", spec_seed="3")
    variant("preset-slash", spec_preset="a/b")
    variant("space-dict", spec_space={"seq": 1})
    variant("failed", status="failed", error="RuntimeError: boom", architecture_psnr=None)
    (root / "hostile" / "nan").mkdir()
    (root / "hostile" / "nan" / "result.json").write_text(json.dumps(good).replace('"architecture_psnr": 15.0',
                                                                                    '"architecture_psnr": NaN'))
    (root / "hostile" / "folder" / "result.json").mkdir(parents=True)
    (root / "hostile" / "link").mkdir()
    (root / "hostile" / "link" / "result.json").symlink_to(root / "nowhere.json")


def test_analyze_reports_hostile_result_files_and_never_fails(tmp_path):
    root = tmp_path / "results"
    hostile_tree(root)
    records, skipped = load_trials(root)
    assert sorted(r["method"] for r in records) == ["das", "random"]
    kinds = {}
    for kind, path in skipped:
        kinds.setdefault(kind, []).append(path)
    assert len(kinds["invalid"]) == 11 and all(re.search(r"\(.+\)$", p) for p in kinds["invalid"])
    assert kinds["corrupt"] == [str(root / "hostile/nan/result.json")]
    assert kinds["failed"] == [f"{root}/hostile/failed/result.json ('RuntimeError: boom')"]
    assert sorted(kinds["unreadable"]) == [f"{root}/hostile/folder/result.json (not a file)",
                                           f"{root}/hostile/link/result.json (a broken link)"]
    p = cli("analyze.py", root, "--out", tmp_path / "a", "--no-plots")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    line = next(s for s in p.stdout.splitlines() if s.startswith("skipped 2 result files that cannot be read"))
    assert not re.search(r"overwrite|delete|remove", line)  # an unreadable file may be fine: never suggest deleting it


def test_a_branching_symlink_loop_finishes_quickly(tmp_path):
    root = tmp_path / "results"
    write_trial(root, "seq", "blur", "all", "random", 1, 15.0)
    level = root
    for depth in range(6):  # every level links back to the root and to itself, several times
        level = level / f"d{depth}"
        level.mkdir()
        for k in range(4):
            (level / f"up{k}").symlink_to(root, target_is_directory=True)
            (level / f"self{k}").symlink_to(level, target_is_directory=True)
    (root / "loop").symlink_to(root / "loop")  # ELOOP
    (root / "everything").symlink_to("/", target_is_directory=True)  # above the tree: never walked
    (level / "parent").symlink_to(tmp_path, target_is_directory=True)
    t0 = time.perf_counter()
    records, skipped = load_trials(root)
    assert time.perf_counter() - t0 < 10
    assert len(records) == 1 and {k for k, _ in skipped} == {"linked"}
    p = cli("analyze.py", root, "--out", tmp_path / "a", "--no-plots", timeout=60)
    assert p.returncode == 0, p.stderr


# ============================================================================ properties
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
HOSTILE_TEXT = st.sampled_from(["", "..", "../x", "/abs", "a/b", "seq", "cell", "all", "good", "grad", "zero",
                                "H1", "NaN", "Linear", "None", "\n", "das", "train", "search"])
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from([0, 1, 2, 4096, 4097, -1])
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6) | HOSTILE_TEXT)
JSON = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6) | HOSTILE_TEXT,
                                                                                      c, max_size=4), max_leaves=12)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw, base, only=()):
    """base with up to three edits: a value replaced by random JSON, a key removed or added; most
    edits land under the top-level keys in `only` when it is given."""
    obj = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(obj))
        if only and isinstance(obj, dict) and draw(st.integers(0, 3)):
            paths = [p for p in paths if p and p[0] in only] or paths
        path = draw(st.sampled_from(paths))
        if not path:
            obj = draw(JSON)
            continue
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6) | HOSTILE_TEXT)] = draw(JSON)
        else:
            parent.append(draw(JSON))
    return obj


def valid_or_user_error(fn, *args):
    try:
        return fn(*args)
    except UserError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and len(msg) < 1000, msg
        return None


def _spec(**kw):
    base = dict(space="seq", data="blur", ops="all", method="das", seed=3)
    return TrialSpec.make(hp=load_hparams("H1"), **{**base, **kw})


SPECS = [_spec().to_dict(), _spec(method="random-search", candidates=3).replace(stage="train").to_dict(),
         retrain_spec(_spec(space="cell", ops="good"), Genotype.from_dict(CELL), 4).to_dict(),
         _spec(method="genotype", stage="train", genotype=SEQ, retrain_seed=0).to_dict()]


@SETTINGS
@given(st.one_of(JSON, mutated(SEQ), mutated(CELL), mutated({**SEQ, "alphas": [[0.25] * 4] * 10})))
def test_property_genotype_from_dict(d):
    g = valid_or_user_error(Genotype.from_dict, d)
    if g is not None:
        assert Genotype.from_dict(json.loads(json.dumps(g.to_dict()))) == g


@SETTINGS
@given(st.one_of(JSON, mutated(H1)))
def test_property_hparams_from_dict(d):
    h = valid_or_user_error(HParams.from_dict, d, "H1")
    if h is not None:
        assert all(math.isfinite(v) and v >= 0 for v in (h.param_lr, h.param_wd, h.alpha_lr, h.alpha_wd))


@SETTINGS
@given(st.one_of(JSON, *[mutated(s) for s in SPECS], *[mutated(s, only=("hparams", "genotype")) for s in SPECS]))
def test_property_trial_spec_from_dict(d):
    s = valid_or_user_error(TrialSpec.from_dict, d)
    if s is not None:
        if s.genotype is not None:
            Genotype.from_dict(s.genotype)
        folder = s.folder("root")
        assert folder.parts[0] == "root" and ".." not in folder.parts and len(folder.parts) >= 7
        assert TrialSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


RESULT_FIELDS = ("status", "one_shot_psnr", "architecture_psnr", "genotype", "alphas", "history", "wall_seconds",
                 "candidates", "error", "role")


@pytest.fixture(scope="module")
def valid_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("valid") / "results"
    write_trial(root, "seq", "blur", "all", "das", 0, 20.0, 18.0)
    write_trial(root, "seq", "blur", "all", "random-search", 1, 15.0, candidates=[{"architecture_psnr": 15.0}])
    write_trial(root, "seq", "blur", "good", "das", 2, 21.0, 19.0)
    return root


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.data())
def test_property_load_trials_and_analyze_on_a_mutated_tree(valid_tree, tmp_path_factory, data):
    root = tmp_path_factory.mktemp("mutated") / "results"
    shutil.copytree(valid_tree, root)
    files = sorted(root.rglob("result.json"))
    for f in data.draw(st.lists(st.sampled_from(files), min_size=1, max_size=3, unique=True)):
        text = f.read_text()
        if data.draw(st.booleans()):
            f.write_text(json.dumps(data.draw(mutated(json.loads(text), only=RESULT_FIELDS))))
        else:  # raw edits: a cut, a NaN token, a byte flipped
            i = data.draw(st.integers(0, len(text) - 1))
            f.write_bytes(data.draw(st.sampled_from([text[:i].encode(), (text[:i] + "NaN" + text[i + 1:]).encode(),
                                                     text[:i].encode() + b"\xff" + text[i + 1:].encode()])))
    before = files_under(root)
    records, skipped = load_trials(root)
    for r in records:
        for k in ("one_shot_psnr", "architecture_psnr"):
            assert r[k] is None or math.isfinite(r[k])
    assert all(len(line.splitlines()) == 1 for line in summarize_skipped(skipped))
    out = root.parent / "analysis"
    analyze.main(analyze.get_parser().parse_args([str(root), "--out", str(out), "--no-plots"]))
    assert files_under(root) == before  # nothing written into the tree read


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.one_of(mutated(SEQ), mutated(CELL)))
def test_property_retrain_command_line_on_mutated_genotypes(tmp_path_factory, d):
    work = tmp_path_factory.mktemp("cli")
    f = work / "g.json"
    f.write_text(json.dumps(d))
    p = cli("retrain.py", "--genotype", f, "--out", work / "out", *TINY, "--batch-size", "2", cwd=work)
    if p.returncode != 0:
        one_line_error(p)
    assert all(x == "g.json" or x.startswith("out") for x in files_under(work))


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(mutated({**H1, "name": "mine"}))
def test_property_search_command_line_on_mutated_hparams(tmp_path_factory, d):
    work = tmp_path_factory.mktemp("cli")
    f = work / "h.json"
    f.write_text(json.dumps(d))
    p = cli("search.py", "--preset", f, "--out", work / "out", *TINY, "--batch-size", "2", "--no-plot", cwd=work)
    if p.returncode != 0:
        one_line_error(p)
    else:
        [r] = [strict_load(x) for x in work.rglob("result.json")]
        assert r["status"] in ("searched", "diverged")
    assert all(x == "h.json" or x.startswith("out") for x in files_under(work))


# =========================================================================== second audit (issue 24)
def _tiny_search(root, seed=0, *extra):
    p = cli("search.py", "--seed", seed, "--out", root, *TINY, "--no-plot", *extra)
    assert p.returncode == 0, p.stderr[-2000:]


def test_retrain_of_a_copied_search_writes_under_out_only(tmp_path):
    """Item 2: a search folder copied out of its tree is retrained under --out (or results/ of the
    working folder), never beside a folder whose tree is unknown, never above it."""
    _tiny_search(tmp_path / "results", 3)
    found = next((tmp_path / "results").rglob("seed3*"))
    copy = tmp_path / "a" / "b" / "copy" / found.name
    shutil.copytree(found, copy)
    work = tmp_path / "work"
    work.mkdir()
    before = set(files_under(tmp_path))
    p = cli("retrain.py", "--genotype", copy / "genotype.json", "--out", tmp_path / "X", *TINY, cwd=work)
    assert p.returncode == 0, p.stderr
    new = set(files_under(tmp_path)) - before
    assert new and all(f == "X" or f.startswith("X/") for f in new), sorted(new)[:5]
    assert any("/genotype/H1/" in f for f in new)  # a genotype file with the search's settings
    p = cli("retrain.py", "--genotype", copy / "genotype.json", *TINY, cwd=work)  # no --out: ./results
    assert p.returncode == 0, p.stderr
    new = set(files_under(tmp_path)) - before
    assert all(f in ("X", "work/results") or f.startswith(("X/", "work/results/")) for f in new), sorted(new)[:5]
    # the search in its own tree: the retrain lands beside it
    p = cli("retrain.py", "--genotype", found / "genotype.json", *TINY, cwd=work)
    assert p.returncode == 0 and (found / "retrain-seed3" / "result.json").is_file(), p.stderr


def test_overwrite_never_deletes_through_a_link(tmp_path):
    """Item 3: a trial folder that is a link to an outside folder holding a result.json."""
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "result.json").write_text("{}")
    (outside / "thesis.tex").write_text("years of work")
    spec = TrialSpec.make(hp=load_hparams("H1"), space="seq", data="blur", ops="all", method="das", seed=5,
                          epochs=1, batches_per_epoch=1)
    link = spec.folder(tmp_path / "results")
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    p = cli("search.py", "--seed", 5, "--out", tmp_path / "results", *TINY, "--overwrite")
    one_line_error(p, "never deletes through a link")
    assert (outside / "thesis.tex").read_text() == "years of work" and (outside / "result.json").exists()


def test_bohb_without_a_finite_evaluation_writes_no_incumbent(tmp_path, monkeypatch):
    """Item 4: every evaluation failed: no incumbent.json, one line, exit 2."""
    import bohb

    monkeypatch.setattr(bohb, "evaluate_config", lambda *a, **k: {"loss": float("inf"), "info": {"status": "diverged"}})
    args = bohb.get_parser().parse_args(["--out", str(tmp_path / "b"), "--iterations", "1", "--workers", "1",
                                         "--worker-threads", "--min-budget", "1", "--max-budget", "3",
                                         "--batches-per-epoch", "1"])
    with pytest.raises(UserError, match="no evaluation finished with a finite PSNR"):
        bohb.main(args)
    assert not (tmp_path / "b" / "incumbent.json").exists()


def test_bohb_overwrite_drops_the_old_pretrained_networks(tmp_path):
    import bohb

    out = tmp_path / "b"
    (out / "pretrained").mkdir(parents=True)
    (out / "pretrained" / "grad-only.pt").write_text("old seed, old budget")
    for name in bohb.LOGS:
        (out / name).write_text("")
    a = bohb.get_parser().parse_args(["--out", str(out), "--overwrite"])
    bohb._prepare_out(a, out)
    assert not (out / "pretrained").exists()


def _interrupted_searches(root, seeds, monkeypatch):
    """Searches of `seeds` (one batch) killed after their first epoch checkpoints."""
    from das import stages

    real = stages.save_checkpoints

    def killed(trainer, paths, extra):
        real(trainer, paths, extra)
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "save_checkpoints", killed)
    specs = [TrialSpec.make(hp=load_hparams("H1"), space="seq", data="blur", ops="all", method="das", seed=s,
                            epochs=2, batches_per_epoch=1, batch_size=8) for s in seeds]
    with pytest.raises(KeyboardInterrupt):
        stages.run_searches(specs, root, quiet=True)
    monkeypatch.undo()
    from das.locks import unlock_all
    unlock_all()
    return specs


def test_one_bad_checkpoint_fails_its_trial_and_the_batch_goes_on(tmp_path, monkeypatch):
    """Item 5: a truncated checkpoint.pt of one seed: the three healthy trials resume and finish, the
    bad one is FAILED with the fix, and sweep.py --overwrite for that seed repairs it."""
    root = tmp_path / "results"
    specs = _interrupted_searches(root, range(4), monkeypatch)
    bad = specs[2].folder(root) / "checkpoint.pt"
    bad.write_bytes(bad.read_bytes()[:100])
    sweep = ["scripts/sweep.py", "--study", "table1", "--data", "blur", "--ops", "all", "--method", "das",
             "--epochs", "2", "--batches-per-epoch", "1", "--batch-size", "8", "--inline", "--out", root]
    p = cli(*sweep, "--seed", "0-3")
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stdout.count("FAILED ") == 1 and "seed2" in p.stdout.split("FAILED ")[1] and "--overwrite" in p.stdout
    for s in (0, 1, 3):
        assert json.loads((specs[s].folder(root) / "result.json").read_text())["status"] == "searched"
    p = cli(*sweep, "--seed", "2", "--overwrite")
    assert p.returncode == 0 and "emptied 1 trial folders" in p.stdout, p.stdout + p.stderr
    assert json.loads((specs[2].folder(root) / "result.json").read_text())["status"] == "searched"


def test_das_single_names_the_fix_for_a_bad_pretrained_network_and_it_works(tmp_path):
    """Item 5: the advice printed after a bad pretrained network is a command that repairs it."""
    out = tmp_path / "results"
    args = ["--method", "das-single", "--preset", "BOHB-DAS-single", "--ops", "all", "--no-plot"]
    p = cli("search.py", *args, "--out", out, *TINY)
    assert p.returncode == 0, p.stderr
    net = next(out.rglob("grad-only/**/network.pt"))
    net.write_bytes(b"not a checkpoint")
    p = cli("search.py", *args, "--out", out, *TINY, "--seed", "1")  # seed 1 pretrains its own
    assert p.returncode == 0, p.stderr
    p = cli("search.py", *args, "--out", out, *TINY, "--overwrite")
    line = one_line_error(p, "retrain.py --method grad-only")
    fix = line.split("train it again: python ")[1].split(" (with")[0].split()
    p = cli(*fix, "--out", out, *TINY, "--preset", "BOHB-DAS-single")
    assert p.returncode == 0, p.stderr
    p = cli("search.py", *args, "--out", out, *TINY, "--overwrite")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("case", ["diverged with a PSNR", "search marked complete", "PSNR 1e308", "PSNR -5000"])
def test_records_that_contradict_themselves_are_not_believed(tmp_path, case):
    """Item 6: each is skipped with its reason (and a complete-marked search is not done)."""
    from das.folder import trial_done

    root = tmp_path / "results"
    if case == "search marked complete":
        d = write_trial(root, "seq", "blur", "all", "das", 0, 20.0, one_shot=15.0).parent  # the search
        r = json.loads((d / "result.json").read_text())
        r["status"] = "complete"
        (d / "result.json").write_text(json.dumps(r))
        spec = TrialSpec.from_dict(r["spec"])
        assert not trial_done(spec, root)
    else:
        status, psnr = {"diverged with a PSNR": ("diverged", 20.0), "PSNR 1e308": ("complete", 1e308),
                        "PSNR -5000": ("complete", -5000.0)}[case]
        write_trial(root, "seq", "blur", "all", "random", 0, psnr, status=status)
    records, skipped = load_trials(root)
    assert records == [] and {k for k, _ in skipped} == {"invalid"}, skipped
    p = cli("analyze.py", root, "--no-plots")
    assert p.returncode == 0 and "seq/blur/all/" in p.stdout and "not read" in p.stdout


def test_unreadable_folders_and_huge_files_are_named_and_counted(tmp_path, monkeypatch):
    """Item 7: a folder that cannot be listed and a 100 MB result.json are reported with their
    reasons, and the analysis says how many trials of which cell it could not read."""
    root = tmp_path / "results"
    for s in range(3):
        write_trial(root, "seq", "blur", "all", "random", s, 10.0 + s)
    big = write_trial(root, "seq", "blur", "all", "random", 7, 12.0) / "result.json"
    with open(big, "r+b") as f:
        f.truncate(100 * 2**20)
    hidden = TrialSpec.make(hp=load_hparams("H1"), space="seq", data="blur", ops="all", method="random",
                            seed=1).folder(root)
    real = os.scandir

    def scandir(path="."):
        if os.path.realpath(path) == os.path.realpath(hidden):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    records, skipped = load_trials(root)
    kinds = sorted(k for k, _ in skipped)
    assert kinds == ["too large", "unreadable"] and len(records) == 2, skipped
    assert "100 MiB" in next(t for k, t in skipped if k == "too large")
    res = analyze.main(analyze.get_parser().parse_args([str(root), "--no-plots", "--resamples", "100"]))
    assert "- seq/blur/all/random/H1: 2 trials not read" in res["report"]
    assert "larger than 64 MiB" in res["report"]


@pytest.mark.parametrize("case", ["not a number", "duplicated row", "cut at a row", "edited number"])
def test_trials_csv_is_validated_like_a_results_tree(tmp_path, case):
    """Item 8: one line naming the row and the fix, exit 2."""
    root = tmp_path / "results"
    for s in range(3):
        write_trial(root, "seq", "blur", "all", "random", s, 10.0 + s)
    assert cli("analyze.py", root, "--no-plots").returncode == 0
    csv = root / "analysis" / "trials.csv"
    lines = csv.read_text().splitlines(keepends=True)
    if case == "not a number":
        import csv as csv_mod
        import io

        rows = list(csv_mod.reader(io.StringIO("".join(lines))))
        rows[2][rows[0].index("architecture_psnr")] = "abc"
        text = io.StringIO()
        csv_mod.writer(text, lineterminator="\n").writerows(rows)
        lines = [text.getvalue()]
        (root / "analysis" / "trials.manifest.json").unlink()
        match = r"line 3: architecture_psnr is 'abc', not a number"
    elif case == "duplicated row":
        lines.append(lines[1])
        (root / "analysis" / "trials.manifest.json").unlink()
        match = "lines 2 and 5 are the same trial"
    elif case == "cut at a row":
        lines = lines[:-1]
        match = "does not match trials.manifest.json"
    else:
        lines[1] = lines[1].replace("10.0", "99.0", 1)
        match = "does not match trials.manifest.json"
    csv.write_text("".join(lines))
    p = cli("analyze.py", csv, "--no-plots", "--out", tmp_path / "again")
    one_line_error(p, match)


def test_trials_csv_gz_reads_back_the_same_records_and_a_cut_one_is_one_line(tmp_path):
    """analyze.py --gzip writes trials.csv.gz (the committed form of a large study): it reads back
    to the records of the plain trials.csv, the same table is the same bytes, and a file cut short
    (with or without its manifest) is one line, exit 2."""
    import gzip

    from das.collect import read_trials_csv

    root = tmp_path / "results"
    for s in range(3):
        write_trial(root, "seq", "blur", "all", "random", s, 10.0 + s)
    assert cli("analyze.py", root, "--no-plots").returncode == 0
    assert cli("analyze.py", root, "--no-plots", "--gzip", "--out", tmp_path / "gz").returncode == 0
    plain, packed = root / "analysis" / "trials.csv", tmp_path / "gz" / "trials.csv.gz"
    assert not (tmp_path / "gz" / "trials.csv").exists()
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert read_trials_csv(packed) == read_trials_csv(plain)
    first = packed.read_bytes()
    assert cli("analyze.py", root, "--no-plots", "--gzip", "--out", tmp_path / "gz2").returncode == 0
    assert (tmp_path / "gz2" / "trials.csv.gz").read_bytes() == first  # no time stamp inside
    # read in its own folder, the table is not written again (nor a plain trials.csv beside it)
    assert cli("analyze.py", packed, "--no-plots").returncode == 0
    assert packed.read_bytes() == first and not (tmp_path / "gz" / "trials.csv").exists()
    # the manifest holds the table's own SHA-256: another gzip of the same table still matches it
    packed.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    assert read_trials_csv(packed) == read_trials_csv(plain)
    edited = plain.read_text().splitlines(keepends=True)
    edited[1] = edited[1].replace("10.0", "99.0", 1)
    packed.write_bytes(gzip.compress("".join(edited).encode()))
    one_line_error(cli("analyze.py", packed, "--no-plots", "--out", tmp_path / "again"),
                   "does not match trials.manifest.json")
    packed.write_bytes(first[: len(first) // 2])
    one_line_error(cli("analyze.py", packed, "--no-plots", "--out", tmp_path / "again"),
                   "gzip file that cannot be decompressed")
    # one table per folder: --gzip where a plain trials.csv was replaces it (the manifest names one file)
    assert cli("analyze.py", root, "--no-plots", "--gzip").returncode == 0
    assert (root / "analysis" / "trials.csv.gz").is_file() and not plain.exists()
    assert cli("analyze.py", root, "--no-plots").returncode == 0
    assert plain.is_file() and not (root / "analysis" / "trials.csv.gz").exists()
    one_line_error(cli("analyze.py", plain, "--no-plots", "--gzip"), "--gzip writes no trials.csv.gz here")


def test_analysis_files_are_written_atomically(tmp_path, monkeypatch):
    """Item 8: a full disk while trials.csv is written leaves the earlier file whole and is one line."""
    import errno

    root = tmp_path / "results"
    for s in range(3):
        write_trial(root, "seq", "blur", "all", "random", s, 10.0 + s)
    analyze.main(analyze.get_parser().parse_args([str(root), "--no-plots", "--resamples", "100"]))
    csv = root / "analysis" / "trials.csv"
    before = csv.read_bytes()
    write_trial(root, "seq", "blur", "all", "random", 3, 13.0)
    real = os.replace

    def full(src, dst):
        if str(dst).endswith("trials.csv"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", full)
    p = in_process(monkeypatch, "analyze.py", root, "--no-plots", "--resamples", "100")
    one_line_error(p, "No space left on device")
    assert csv.read_bytes() == before and not list(csv.parent.glob(".trials.csv.*"))


def test_a_dangling_link_as_lock_goes_stale_at_once(tmp_path):
    """Item 9: a .lock that is a dangling link never blocks --resume."""
    _tiny_search(tmp_path / "results", 0)
    folder = next((tmp_path / "results").rglob("seed0*"))
    (folder / ".lock").symlink_to(tmp_path / "nowhere")
    p = cli("search.py", "--seed", 0, "--out", tmp_path / "results", *TINY, "--resume", "--no-plot", timeout=120)
    assert p.returncode == 0, p.stderr
    assert not (folder / ".lock").is_symlink()


@pytest.mark.parametrize("env,match", [({"DAS_LOCK_STALE": "abc"}, "DAS_LOCK_STALE='abc'"),
                                       ({"DAS_LOCK_HEARTBEAT": "-1"}, "DAS_LOCK_HEARTBEAT='-1'"),
                                       ({"DAS_LOCK_HEARTBEAT": "100"}, "at most half of DAS_LOCK_STALE")])
def test_lock_timings_from_the_environment_are_checked(tmp_path, env, match):
    p = subprocess.run([sys.executable, "search.py", "--out", str(tmp_path / "r"), *TINY], capture_output=True,
                       text=True, cwd=ROOT, timeout=120, env={**os.environ, **env})
    one_line_error(p, match)


@pytest.mark.parametrize("where", ["file", "devnull", "unwritable"])
@pytest.mark.parametrize("runner", [["--inline"], ["--workers", "1"]])
def test_sweep_out_must_be_a_writable_folder(tmp_path, where, runner):
    """Item 10: one line, exit 2, for --out naming a file, /dev/null or a folder nobody can create."""
    out = {"file": tmp_path / "a-file", "devnull": Path("/dev/null"), "unwritable": Path("/proc/das-results")}[where]
    if where == "file":
        out.write_text("keep me")
    p = cli("scripts/sweep.py", "--study", "table1", "--data", "blur", "--ops", "good", "--method", "grad-only",
            "--seed", "0", "--epochs", "1", *runner, "--out", out, timeout=120)
    one_line_error(p, "--out")
    if where == "file":
        assert out.read_text() == "keep me"


def test_result_files_stay_below_the_read_cap_at_the_epoch_bound():
    """Item 11: the largest result.json a trial can write (a cell search with all ops at MAX_EPOCHS,
    and random search's candidates at MAX_EPOCHS) is far below MAX_FILE_BYTES, in the history
    format the trainer writes (every float at full precision)."""
    from das.spec import MAX_CANDIDATES, MAX_EPOCHS
    from das.train import new_history
    from das.utils import MAX_FILE_BYTES, strict_json

    x = 0.12345678901234567
    rows = [[x] * 5] * 15  # 15 edges x (4 ops + zero)
    search = new_history(True)
    search["alphas_init"] = rows
    for e in range(MAX_EPOCHS):
        for k in ("train_loss", "train_psnr", "val_loss", "seconds"):
            search[k].append(x)
        search["epoch"].append(e + 1)
        search["alphas"].append(rows)
    size = len(json.dumps(strict_json({"history": search, "alphas": rows}), indent=2))
    train = new_history(False)
    for e in range(MAX_EPOCHS):
        for k in ("train_loss", "train_psnr", "seconds"):
            train[k].append(x)
        train["epoch"].append(e + 1)
    size_rs = len(json.dumps(strict_json({"candidates": [{"history": train}] * MAX_CANDIDATES}), indent=2))
    assert size < MAX_FILE_BYTES / 2, size
    assert size_rs < MAX_FILE_BYTES / 2, size_rs


def test_a_fresh_lock_is_never_taken_over_for_a_stale_one_of_no_token(tmp_path):
    """A corrupt stale lock (no token) and, by the time of the take-over, another process's fresh lock
    caught before it wrote its token: the fresh one is another file, and is put back."""
    from das import locks

    stale = {"_mtime": 0.0, "_ino": -1}  # what was judged stale: another file than the one there now
    lock = tmp_path / locks.LOCK
    lock.write_text("")  # a fresh lock, its owner not yet written
    locks._take_over(lock, stale)
    assert lock.exists()
    judged = locks._read_owner(lock)
    locks._take_over(lock, judged)  # the very file judged stale goes
    assert not lock.exists()


def test_tensorboard_without_the_package_or_with_huge_batches_is_one_line_before_any_folder(tmp_path, monkeypatch):
    """--tensorboard is checked before a folder is written: without the tensorboard package (its
    import blocked here), or with more networks per batch than open event files allow."""
    out = tmp_path / "out"
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    for script in ("search.py", "retrain.py"):
        extra = ("--method", "random") if script == "retrain.py" else ()
        one_line_error(in_process(monkeypatch, script, *extra, "--tensorboard", "--out", out, "--quiet"),
                       "--tensorboard needs the tensorboard package")
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard")
    one_line_error(in_process(monkeypatch, "search.py", "--tensorboard", "--max-batch", "300", "--out", out),
                   "--max-batch must be at most 256")
    assert not out.exists()
