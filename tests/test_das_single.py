"""DAS-single (paper 5.4): alpha searched over frozen, pretrained grad and net operations."""
import json
from pathlib import Path

import pytest
import torch

from das import model as M
from das.utils import UserError
from tests.helpers import run_retrain, run_search


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pre")
    paths = {}
    for arch in ("grad-only", "net-only"):
        r = run_retrain(tmp, "--arch", arch, "--ops", "all", "--seed", "4")
        paths[arch] = Path(r["dir"]) / "network.pt"
    return paths


def single(tmp_path, pretrained, *extra):
    return run_search(tmp_path, "--method", "das-single", "--pretrained-grad", str(pretrained["grad-only"]),
                      "--pretrained-net", str(pretrained["net-only"]), "--hparams", "BOHB-DAS-single", *extra)


def test_theta_frozen_alpha_searched(tmp_path, pretrained, monkeypatch):
    import das.trial as trial
    captured = {}
    real = trial.pretrained_supernet

    def spy(net, *a):
        real(net, *a)
        captured["net"] = net
        captured["theta"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        captured["alphas"] = net.alphas.detach().clone()

    monkeypatch.setattr(trial, "pretrained_supernet", spy)
    r = single(tmp_path, pretrained, "--ops", "all", "--epochs", "3")
    net = captured["net"]
    after = net.state_dict()
    for k, v in captured["theta"].items():
        if k != "alphas":
            assert torch.equal(v, after[k]), k  # weights and BN statistics, bit for bit
    assert not torch.equal(captured["alphas"], net.alphas.detach())
    assert r["status"] == "searched" and r["method"] == "das-single"
    assert Path(r["dir"]).parts[-6:] == ("seq", "blur", "all", "das-single", "BOHB-DAS-single", "seed0")


def test_pretrained_weights_are_copied_layer_by_layer(pretrained):
    net = M.SeqSupernet("blur", "all")
    from das.trial import pretrained_supernet
    pretrained_supernet(net, str(pretrained["grad-only"]), str(pretrained["net-only"]), "seq", "blur", 16)
    g = torch.load(pretrained["grad-only"], weights_only=False)["model"]
    n = torch.load(pretrained["net-only"], weights_only=False)["model"]
    for j, layer in enumerate(net.layers):
        assert torch.equal(layer.bank.w1[layer.cnn_slot["grad"]], g[f"layers.{j}.bank.w1"][0])
        assert torch.equal(layer.bank.running_var[layer.cnn_slot["net"]], n[f"layers.{j}.bank.running_var"][0])
        assert torch.equal(layer.tau.detach(), g[f"layers.{j}.tau"])


def test_rejects_wrong_checkpoints(tmp_path, pretrained):
    with pytest.raises(UserError, match="expected a grad-only network"):
        run_search(tmp_path, "--method", "das-single", "--pretrained-grad", str(pretrained["net-only"]),
                   "--pretrained-net", str(pretrained["net-only"]))
    with pytest.raises(UserError, match="pretrained on data 'blur', but this search uses 'downsample'"):
        single(tmp_path, pretrained, "--data", "downsample")
    with pytest.raises(UserError, match="pretrained with width 16, but this search uses 8"):
        single(tmp_path, pretrained, "--width", "8")
    with pytest.raises(UserError, match="das-single is defined for the sequential space"):
        single(tmp_path, pretrained, "--space", "cell")
    cell = run_retrain(tmp_path, "--arch", "grad-only", "--space", "cell")
    with pytest.raises(UserError, match="not a sequential network checkpoint"):
        run_search(tmp_path, "--method", "das-single", "--pretrained-grad", str(Path(cell["dir"]) / "network.pt"),
                   "--pretrained-net", str(pretrained["net-only"]))


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    with pytest.raises(UserError, match=r"needs --pretrained-grad PATH .* retrain.py --arch grad-only .* --pretrain"):
        run_search(tmp_path, "--method", "das-single")
    with pytest.raises(UserError, match="pretrained checkpoint not found"):
        run_search(tmp_path, "--method", "das-single", "--pretrained-grad", str(tmp_path / "x.pt"),
                   "--pretrained-net", str(tmp_path / "y.pt"))


def test_pretrain_flag_then_retrain_end_to_end(tmp_path):
    r = run_search(tmp_path, "--method", "das-single", "--pretrain", "--ops", "good", "--hparams", "BOHB-DAS-single")
    root = tmp_path / "results" / "seq" / "blur" / "good"
    assert (root / "grad-only" / "BOHB-DAS-single" / "seed0" / "network.pt").is_file()
    assert (root / "net-only" / "BOHB-DAS-single" / "seed0" / "network.pt").is_file()
    r2 = run_retrain(tmp_path, "--genotype", str(Path(r["dir"]) / "genotype.json"))
    res = json.loads((Path(r["dir"]) / "result.json").read_text())
    assert res["method"] == "das-single" and res["status"] == "complete"
    assert res["architecture_psnr"] == r2["architecture_psnr"] and res["one_shot_psnr"] is not None


def test_das_single_preset_ships():
    from das.hparams import load_hparams
    hp = load_hparams("BOHB-DAS-single")
    assert hp.alpha_lr == pytest.approx(0.025012337102395577) and hp.alpha_scheduler is None
    assert hp.alpha_optimizer == "Adam" and not hp.alpha_warmup
