"""DAS-single (paper 5.4): alpha searched over frozen, pretrained grad and net operations."""
import json
from pathlib import Path

import pytest
import torch

from das import model as M
from das.utils import UserError
from tests.helpers import run_retrain, run_search


def single(tmp_path, *extra):
    return run_search(tmp_path, "--method", "das-single", "--preset", "BOHB-DAS-single", *extra)


def test_theta_frozen_alpha_searched(tmp_path, monkeypatch):
    import das.stages as trial
    captured = {}
    real = trial.load_pretrained_ops

    def spy(net, t, *a, spec):
        real(net, t, *a, spec=spec)
        captured["net"] = net
        captured["theta"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        captured["alphas"] = net.alphas.detach().clone()

    monkeypatch.setattr(trial, "load_pretrained_ops", spy)
    r = single(tmp_path, "--ops", "all", "--epochs", "3")
    net = captured["net"]
    after = net.state_dict()
    for k, v in captured["theta"].items():
        if k != "alphas":
            assert torch.equal(v, after[k]), k  # weights and BN statistics, bit for bit
    assert not torch.equal(captured["alphas"], net.alphas.detach())
    assert r["status"] == "searched" and r["method"] == "das-single"
    assert Path(r["dir"]).parts[-6:] == ("seq", "blur", "all", "das-single", "BOHB-DAS-single", "seed0-e3-b2")
    # the pretrained networks are ordinary baseline trials of the same settings
    base = tmp_path / "results" / "seq" / "blur" / "all"
    for method in ("grad-only", "net-only"):
        res = json.loads((base / method / "BOHB-DAS-single" / "seed0-e3-b2" / "result.json").read_text())
        assert res["status"] == "complete" and res["spec"]["epochs"] == 3


def test_pretrained_weights_are_copied_layer_by_layer(tmp_path):
    from das.hparams import load_hparams
    from das.spec import TrialSpec
    from das.stages import load_pretrained_ops, pretrain_das_single
    from das.locks import unlock_all
    spec = TrialSpec.make(hp=load_hparams("BOHB-DAS-single"), space="seq", data="blur", ops="all",
                          method="das-single", seed=4, epochs=2, batches_per_epoch=2)
    (paths,) = pretrain_das_single([spec], tmp_path, quiet=True)
    unlock_all()
    net = M.SeqSupernet("blur", "all", [3, 4])
    load_pretrained_ops(net, 1, *paths, spec=spec)  # into trial 1 of 2
    g = torch.load(paths[0], weights_only=True)["model"]
    n = torch.load(paths[1], weights_only=True)["model"]
    for j, layer in enumerate(net.layers):
        assert torch.equal(layer.bank.w1[1, layer.cnn_slot["grad"]], g[f"layers.{j}.bank.w1"][0, 0])
        assert torch.equal(layer.bank.running_var[1, layer.cnn_slot["net"]], n[f"layers.{j}.bank.running_var"][0, 0])
        assert torch.equal(layer.tau.detach()[1], g[f"layers.{j}.tau"][0])
        assert not torch.equal(layer.bank.w1[0, layer.cnn_slot["grad"]], g[f"layers.{j}.bank.w1"][0, 0])
    # a checkpoint of the wrong op, data or width is refused with the reason
    with pytest.raises(UserError, match="not a sequential grad-only network checkpoint"):
        load_pretrained_ops(net, 0, paths[1], paths[1], spec=spec)
    with pytest.raises(UserError, match="pretrained for data 'blur' width 16, but the search uses 'downsample'"):
        load_pretrained_ops(net, 0, *paths, spec=spec.replace(data="downsample"))
    with pytest.raises(UserError, match="pretrained checkpoint not found"):
        load_pretrained_ops(net, 0, tmp_path / "x.pt", paths[1], spec=spec)


def test_rejects_bad_settings(tmp_path):
    with pytest.raises(UserError, match="das-single is defined for the sequential space"):
        single(tmp_path, "--space", "cell")
    with pytest.raises(UserError, match="--pretrained-grad/--pretrained-net were removed"):
        run_search(tmp_path, "--method", "das-single", "--pretrained-grad", "g.pt")
    with pytest.raises(UserError, match="no unrolled step"):
        single(tmp_path, "--order", "2")


def test_pretrain_then_retrain_end_to_end(tmp_path):
    r = single(tmp_path, "--pretrain", "--ops", "good")
    root = tmp_path / "results" / "seq" / "blur" / "good"
    assert (root / "grad-only" / "BOHB-DAS-single" / "seed0-e2-b2" / "network.pt").is_file()
    assert (root / "net-only" / "BOHB-DAS-single" / "seed0-e2-b2" / "network.pt").is_file()
    r2 = run_retrain(tmp_path, "--genotype", str(Path(r["dir"]) / "genotype.json"))
    res = json.loads((Path(r2["dir"]) / "result.json").read_text())
    assert res["method"] == "das-single" and res["status"] == "complete"
    assert res["architecture_psnr"] == r2["architecture_psnr"] and res["one_shot_psnr"] == r["one_shot_psnr"]


def test_das_single_preset_ships():
    from das.hparams import load_hparams
    hp = load_hparams("BOHB-DAS-single")
    assert hp.alpha_lr == pytest.approx(0.025012337102395577) and hp.alpha_scheduler is None
    assert hp.alpha_optimizer == "Adam" and not hp.alpha_warmup
