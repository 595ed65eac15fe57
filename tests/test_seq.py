"""Sequential space end to end: models, genotypes, presets, the DAS loop, search.py and retrain.py."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from das import model as M
from das import operators as O
from das.genotype import Genotype, load_genotype
from das.hparams import load_hparams, presets
from das.train import SGD, Adam, Architect, Trainer
from das.utils import UserError
from tests.conftest import ROOT
from tests.helpers import run_retrain, run_search


def test_supernet_structure_and_derivation():
    net = M.SeqSupernet("blur", "all", [0, 1])
    assert len(net.layers) == 10 and net.alphas.shape == (2, 10, 4)  # two trials
    assert net.op_names == ["grad", "net", "roll", "noise"]
    with torch.no_grad():
        net.alphas.zero_()
        for j, k in enumerate([0, 1, 2, 3, 0, 1, 0, 1, 1, 0]):
            net.alphas[1, j, k] = 1.0
    assert net.genotype(0).layers == ["grad"] * 10  # ties go to the first op
    g = net.genotype(1)
    assert g.layers == ["grad", "net", "roll", "noise", "grad", "net", "grad", "net", "net", "grad"]
    assert len(g.alphas) == 10 and abs(sum(g.alphas[0]) - 1) < 1e-9
    # theta and alpha are disjoint
    ids = {id(p) for p in net.weights()}
    assert id(net.alphas) not in ids and len(ids) + 1 == len(list(net.parameters()))


def test_residual_output_and_mixing():
    net = M.SeqSupernet("downsample", "good", [0, 1]).eval()
    y = torch.randn(2, 3, 1, 13, generator=torch.Generator().manual_seed(0))
    u0 = O.blur_adjoint_ref(y.reshape(6, 1, 13), net.kernel, 4, 50).reshape(2, 3, 1, 50)
    # a one-hot alpha makes the supernet equal the discrete network with the same weights
    with torch.no_grad():
        net.alphas.fill_(-1e4)
        net.alphas[:, :, 1] = 0  # net everywhere
    out = net(y)
    u = u0
    for layer in net.layers:
        u = layer.bank(u)[:, layer.cnn_slot["net"]]
    torch.testing.assert_close(out, u0 + u)
    # each trial is its own network: trial 1 alone gives the same bits
    alone = M.SeqSupernet("downsample", "good", [1]).eval()
    with torch.no_grad():
        alone.alphas.copy_(net.alphas[1:])
    assert torch.equal(alone(y[1:]), out[1:])


def test_genotype_round_trip(tmp_path):
    g = Genotype(space="seq", ops="all", data="downsample", layers=["grad", "net", "roll", "noise"] * 2 + ["grad"] * 2,
                 alphas=[[0.25] * 4] * 10)
    g.to_json(tmp_path / "g.json")
    h = load_genotype(tmp_path / "g.json")
    assert h == g and json.loads((tmp_path / "g.json").read_text())["layers"][2] == "roll"


@pytest.mark.parametrize("change,match", [
    ({"space": "tree"}, "space is 'tree'"),
    ({"layers": ["grad"] * 9}, "list of 10 op names"),
    ({"layers": ["grad"] * 9 + ["conv"]}, "layer 9 has op 'conv'"),
    ({"ops": "good", "layers": ["roll"] * 10}, "not in the 'good' op set"),
    ({"alphas": [[1.0]]}, "alphas must be 10 rows"),
])
def test_malformed_genotype_rejected(tmp_path, change, match):
    d = {"space": "seq", "ops": "all", "data": "blur", "width": 16, "layers": ["grad"] * 10, **change}
    (tmp_path / "g.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match=match) as e:
        load_genotype(tmp_path / "g.json")
    assert str(tmp_path / "g.json") in str(e.value)


def test_genotype_not_json(tmp_path):
    (tmp_path / "g.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_genotype(tmp_path / "g.json")


@pytest.mark.parametrize("name", presets())
def test_presets_map_onto_optimisers(name):
    hp = load_hparams(name)
    net = M.SeqSupernet("blur", "all", [0])
    trainer = Trainer(net, hp, "blur", [0], 50, search=True)
    theta_opt = trainer.theta_optimizer
    assert isinstance(theta_opt, Adam) and theta_opt.betas == (0.9, 0.999)
    assert theta_opt.lr == hp.param_lr and theta_opt.weight_decay == hp.param_wd
    opt = trainer.architect.optimizer
    if hp.alpha_optimizer == "Adam":
        assert isinstance(opt, Adam) and opt.betas == (0.5, 0.999)
    else:
        assert type(opt) is SGD
    assert opt.lr == hp.alpha_lr and opt.weight_decay == hp.alpha_wd
    # the linear schedule decays alpha's lr to 0 over the run; None keeps it
    half = trainer.architect.set_lr(0.5)
    assert half == pytest.approx(hp.alpha_lr * (0.5 if hp.alpha_scheduler == "Linear" else 1))
    # warm-up ramps theta's lr over the first 5 epochs
    lr0 = trainer._theta_lr(0)
    assert lr0 == pytest.approx(hp.param_lr / (5 * 19) if hp.param_warmup else hp.param_lr)
    assert trainer._theta_lr(5 * 19) == pytest.approx(hp.param_lr)


def test_table6_values():
    h1, h2 = load_hparams("H1"), load_hparams("H2")
    assert (h1.alpha_lr, h1.alpha_wd, h2.alpha_lr, h2.alpha_wd) == (1e-3, 1e-3, 1e-4, 1e-4)
    assert h1.alpha_optimizer == "GradientDescent" and h1.alpha_scheduler == "Linear" and h1.alpha_warmup


def test_alpha_warmup_freezes_alpha(tmp_path):
    net = M.SeqSupernet("blur", "all", [0])
    before = net.alphas.detach().clone()
    Trainer(net, load_hparams("H1"), "blur", [0], 1, search=True, batches_per_epoch=2).run()
    assert torch.equal(before, net.alphas.detach())  # epoch 1 of 5 warm-up epochs


@pytest.mark.parametrize("order", [1, 2])
def test_alpha_step_changes_alpha(order):
    net = M.SeqSupernet("blur", "all", [0])
    arch = Architect(net, load_hparams("BOHB-one-shot-Blur"), order=order)
    from das.data import DataSource
    src = DataSource("blur", 1)
    theta = [w.detach().clone() for w in net.weights()]
    before = net.alphas.detach().clone()
    batch = lambda: tuple(t[None] for t in src.batch(16))  # noqa: E731  (one trial)
    loss = arch.step(batch(), batch(), xi=1e-3)
    assert loss.shape == (1,) and torch.isfinite(loss).all()
    assert not torch.equal(before, net.alphas.detach())
    # the alpha step leaves theta where it was, also after the unrolled step
    assert all(torch.equal(a, b.detach()) for a, b in zip(theta, net.weights()))


def test_second_order_gradient_differs_from_first():
    from das.data import DataSource
    hp = load_hparams("H1")
    grads = []
    for order in (1, 2):
        net = M.SeqSupernet("blur", "good", [0])
        src = DataSource("blur", 1)
        arch = Architect(net, hp, order)
        before = net.alphas.detach().clone()
        arch.step(tuple(t[None] for t in src.batch(16)), tuple(t[None] for t in src.batch(16)), xi=0.1)
        grads.append(before - net.alphas.detach())  # plain SGD: lr times (gradient + wd alpha)
    assert not torch.allclose(grads[0], grads[1])


def test_search_then_retrain_end_to_end(tmp_path):
    r = run_search(tmp_path, "--ops", "good", "--seed", "3")
    d = Path(r["dir"])
    assert d == tmp_path / "results" / "seq" / "blur" / "good" / "das" / "H1" / "seed3-e2-b2"  # non-default settings named
    for f in ("args.json", "log.txt", "result.json", "genotype.json", "supernet.pt"):
        assert (d / f).is_file(), f
    assert not (d / "checkpoint.pt").exists()
    res = json.loads((d / "result.json").read_text())
    assert res["status"] == "searched" and res["architecture_psnr"] is None
    assert 0 < res["one_shot_psnr"] < 60 and len(res["history"]["train_loss"]) == 2
    assert res["spec"]["hparams"]["alpha_lr"] == 1e-3 and res["seed"] == 3 and res["wall_seconds"]["search"] > 0
    assert res["spec"]["epochs"] == 2 and res["spec"]["batches_per_epoch"] == 2 and res["provenance"]["schema"] == 2
    g = load_genotype(d / "genotype.json")
    assert res["genotype"] == g.to_dict() and set(g.layers) <= {"grad", "net"}
    # the genotype round-trips into retrain.py, which writes a record of its own per retrain seed
    r2 = run_retrain(tmp_path, "--genotype", str(d / "genotype.json"))
    assert Path(r2["dir"]) == d / "retrain-seed3"
    res2 = json.loads((d / "retrain-seed3" / "result.json").read_text())
    assert res2["status"] == "complete" and res2["architecture_psnr"] == r2["architecture_psnr"]
    assert res2["one_shot_psnr"] == res["one_shot_psnr"] and res2["spec"]["retrain_seed"] == 3
    assert json.loads((d / "result.json").read_text()) == res  # the search's record is left as it was
    ck = torch.load(d / "retrain-seed3" / "network.pt", weights_only=True)
    net = M.build_network(Genotype.from_dict(ck["genotype"]))
    net.load_state_dict(ck["model"])
    from das.train import evaluate
    assert evaluate(net, "blur") == [res2["architecture_psnr"]]  # the checkpoint rebuilds its network


@pytest.mark.parametrize("arch", ["grad-only", "net-only", "random"])
def test_baselines(tmp_path, arch):
    r = run_retrain(tmp_path, "--arch", arch, "--ops", "all", "--data", "downsample", "--seed", "1")
    d = Path(r["dir"])
    assert d.parts[-6:] == ("seq", "downsample", "all", arch, "H1", "seed1-e2-b2")
    res = json.loads((d / "result.json").read_text())
    assert res["status"] == "complete" and res["method"] == arch and len(res["history"]["train_loss"]) == 2
    layers = res["genotype"]["layers"]
    if arch != "random":
        assert layers == [arch.split("-")[0]] * 10
    from das.train import evaluate
    ck = torch.load(d / "network.pt", weights_only=True)
    net = M.build_network(Genotype.from_dict(ck["genotype"]))
    net.load_state_dict(ck["model"])
    assert [res["architecture_psnr"]] == evaluate(net, "downsample")


def test_random_search_records_all_candidates(tmp_path):
    r = run_retrain(tmp_path, "--arch", "random-search", "--ops", "all", "--candidates", "3")
    res = json.loads((Path(r["dir"]) / "result.json").read_text())
    scores = [c["architecture_psnr"] for c in res["candidates"]]
    assert len(scores) == 3 and res["architecture_psnr"] == max(scores)
    assert len({tuple(c["genotype"]["layers"]) for c in res["candidates"]}) > 1


def test_determinism_same_seed_same_numbers(tmp_path):
    a = run_search(tmp_path / "a", "--seed", "5", "--hparams", "BOHB-one-shot-Blur")
    b = run_search(tmp_path / "b", "--seed", "5", "--hparams", "BOHB-one-shot-Blur")
    c = run_search(tmp_path / "c", "--seed", "6", "--hparams", "BOHB-one-shot-Blur")
    assert a["one_shot_psnr"] == b["one_shot_psnr"] and a["alphas"] == b["alphas"]
    assert a["history"]["train_loss"] == b["history"]["train_loss"]
    assert a["one_shot_psnr"] != c["one_shot_psnr"]


def test_resume_gives_the_same_numbers(tmp_path, monkeypatch):
    args = ("--seed", "2", "--hparams", "BOHB-one-shot-Blur", "--epochs", "3")
    full = run_search(tmp_path / "full", *args)
    import das.train as train_mod
    real_save, saves = train_mod.save_torch, []

    def killed_after_two_epochs(path, obj):
        real_save(path, obj)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt  # the process dies right after writing epoch 2's checkpoint

    monkeypatch.setattr(train_mod, "save_torch", killed_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        run_search(tmp_path / "cut", *args)
    monkeypatch.setattr(train_mod, "save_torch", real_save)
    d = Path(full["dir"].replace(str(tmp_path / "full"), str(tmp_path / "cut")))
    assert json.loads((d / "result.json").read_text())["status"] == "running"
    with pytest.raises(UserError, match="--resume"):
        run_search(tmp_path / "cut", *args)
    resumed = run_search(tmp_path / "cut", *args, "--resume")
    assert resumed["one_shot_psnr"] == full["one_shot_psnr"]
    assert resumed["alphas"] == full["alphas"]
    assert resumed["history"]["train_loss"] == full["history"]["train_loss"]


def test_diverging_run_is_recorded_not_raised(tmp_path):
    hp = {"param_lr": 1e6, "param_wd": 0, "param_warmup": False, "alpha_lr": 0.1, "alpha_wd": 0,
          "alpha_warmup": False, "alpha_scheduler": None, "alpha_optimizer": "Adam"}
    (tmp_path / "wild.json").write_text(json.dumps(hp))
    r = run_search(tmp_path, "--hparams", str(tmp_path / "wild.json"), "--epochs", "3")
    res = json.loads((Path(r["dir"]) / "result.json").read_text())
    assert res["status"] == "diverged" and "loss became" in res["error"]
    assert not (Path(r["dir"]) / "genotype.json").exists()


# ---------------------------------------------------------------- bad input
def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_unknown_preset_exits_2(tmp_path):
    p = cli("search.py", "--hparams", "H9", "--out", str(tmp_path), "--epochs", "1")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: unknown hyperparameter preset 'H9'")


def test_missing_genotype_exits_2(tmp_path):
    p = cli("retrain.py", "--genotype", str(tmp_path / "nope.json"))
    assert p.returncode == 2 and "genotype file not found" in p.stderr and "nope.json" in p.stderr


def test_finished_trials_are_kept_and_an_unfinished_one_needs_resume_or_overwrite(tmp_path):
    """The README's order (one seed, then a range holding it) runs the rest of the range; a folder of
    an unfinished run refuses the whole batch before anything of it is written."""
    import json

    first = run_search(tmp_path, "--seed", "1")
    again = run_search(tmp_path, "--seed", "1")  # finished, same specification: kept as it is
    assert again["status"] == "searched" and again["one_shot_psnr"] == first["one_shot_psnr"]
    batch = run_search(tmp_path, "--seed", "0-2")
    assert [r["status"] for r in batch["results"]] == ["searched"] * 3
    assert batch["results"][1]["one_shot_psnr"] == first["one_shot_psnr"]
    f = Path(batch["results"][2]["dir"]) / "result.json"
    killed = json.loads(f.read_text())
    killed["status"] = "running"
    f.write_text(json.dumps(killed))
    with pytest.raises(UserError, match="already holds result.json.*; pass --resume .* or --overwrite"):
        run_search(tmp_path, "--seed", "0-3")
    assert not any(p.name.startswith("seed3") for p in Path(batch["results"][0]["dir"]).parent.iterdir())
    assert run_search(tmp_path, "--seed", "2", "--resume")["status"] == "searched"
    assert run_search(tmp_path, "--seed", "1", "--overwrite")["one_shot_psnr"] == first["one_shot_psnr"]


def test_mismatched_genotype_rejected(tmp_path):
    r = run_search(tmp_path, "--seed", "0")
    g = str(Path(r["dir"]) / "genotype.json")
    with pytest.raises(UserError, match="mismatched genotype: a retrain of this search takes its data .data='blur'"):
        run_retrain(tmp_path, "--genotype", g, "--data", "downsample")
    with pytest.raises(UserError, match="takes its space .space='seq'"):
        run_retrain(tmp_path, "--genotype", g, "--space", "cell")
    # a copy of the genotype elsewhere is a genotype of its own, checked against its own fields
    (tmp_path / "g.json").write_text(Path(g).read_text())
    with pytest.raises(UserError, match="mismatched genotype: it is for data 'blur'"):
        run_retrain(tmp_path, "--genotype", str(tmp_path / "g.json"), "--data", "downsample")


def test_unknown_space_and_ops(tmp_path):
    for flag, value in (("--ops", "some"), ("--data", "deblur"), ("--space", "tree")):
        p = cli("search.py", flag, value, "--out", str(tmp_path))
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and f"invalid choice: '{value}'" in p.stderr


def test_malformed_hparams_file(tmp_path):
    (tmp_path / "h.json").write_text(json.dumps({"param_lr": 0.1}))
    with pytest.raises(UserError, match="missing hyperparameters"):
        run_search(tmp_path, "--hparams", str(tmp_path / "h.json"))


def test_retrain_uses_the_searchs_own_hparams_file(tmp_path):
    hp = {"name": "mine", "param_lr": 0.002, "param_wd": 0.0, "param_warmup": True, "alpha_lr": 0.01,
          "alpha_wd": 0.0, "alpha_warmup": False, "alpha_scheduler": None, "alpha_optimizer": "Adam"}
    (tmp_path / "mine.json").write_text(json.dumps(hp))
    r = run_search(tmp_path, "--hparams", str(tmp_path / "mine.json"))
    assert Path(r["dir"]).parts[-2] == "mine"
    r2 = run_retrain(tmp_path, "--genotype", str(Path(r["dir"]) / "genotype.json"))
    res = json.loads((Path(r2["dir"]) / "result.json").read_text())
    assert res["status"] == "complete" and res["spec"]["hparams"]["param_lr"] == 0.002


def test_a_trial_runs_in_one_process_at_a_time(tmp_path):
    import os
    import socket
    d = tmp_path / "results" / "seq" / "blur" / "all" / "das" / "H1" / "seed0-e2-b2"
    d.mkdir(parents=True)
    # another sweep (a live process on this host: this one) holds this trial
    (d / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "other"}))
    try:
        with pytest.raises(UserError, match="another process is running this trial"):
            run_search(tmp_path, "--seed", "0", "--resume")
    finally:
        (d / ".lock").unlink()
    assert run_search(tmp_path, "--seed", "0", "--resume")["status"] == "searched"
