"""The paper's open readings as trial settings (das.spec: theta_optimizer, residual, psnr, roll,
kernel_size, cell_output, cell_sum), each against an independent computation: numpy, a hand-written
update, torch.nn layers, and the derived network against the one-hot supernet."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from das import model as M
from das import operators as O
from das.data import DataSource
from das.hparams import HParams
from das.metrics import average_psnr
from das.ops import OPS
from das.train import MOMENTUM, Trainer
from tests.test_fidelity import genotypes, reinit, rng_state, with_draws


def _y(n=16, data="blur"):
    return DataSource(data, 5).batch(n)[1][None]


@pytest.mark.parametrize("space", ["seq", "cell"])
def test_residual_off_is_the_body_alone(space):
    """Output with the residual = A^T y (computed by the _ref adjoint) + output without it, for the
    same weights; and off differs from on by exactly that."""
    y = _y()
    on = reinit(M.build_supernet(space, "blur", "good", [0]), torch.Generator().manual_seed(3)).eval()
    off = M.build_supernet(space, "blur", "good", [0], residual="off").eval()
    off.load_state_dict(on.state_dict())
    A = O.Operator("blur")
    u0 = O.blur_adjoint_ref(y[0], A.kernel, A.stride, A.length)[None]
    torch.testing.assert_close(on(y), u0 + off(y), rtol=1e-5, atol=1e-5)
    assert (on(y) - off(y)).abs().max() > 0.1


@pytest.mark.parametrize("averaging", ["sample", "pooled", "batch"])
def test_psnr_averagings_equal_numpy(averaging):
    g = np.random.default_rng(0)
    x = g.normal(size=(300, 1, 50))
    x_hat = x + g.normal(scale=g.uniform(0.01, 0.5, size=(300, 1, 1)), size=x.shape)
    mse = ((x_hat - x) ** 2).reshape(300, -1).mean(axis=1)
    want = {"sample": np.mean(10 * np.log10(1 / mse)), "pooled": 10 * np.log10(1 / mse.mean()),
            "batch": np.mean([10 * np.log10(1 / mse[k:k + 128].mean()) for k in range(0, 300, 128)])}[averaging]
    got = average_psnr(torch.tensor(x_hat, dtype=torch.float32), torch.tensor(x, dtype=torch.float32), averaging)
    assert got == pytest.approx(want, abs=1e-4)
    assert average_psnr(torch.tensor(x_hat), torch.tensor(x), averaging) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("mode", ["all", "flat", "signal"])
def test_roll_modes_equal_numpy(mode):
    layer = type("L", (), {"roll": mode})()
    u = torch.arange(3 * 4 * 1 * 5, dtype=torch.float32).reshape(3, 4, 1, 5)
    got = OPS["roll"].fn(layer, u, None, {}).numpy()
    a = u.numpy()
    want = {"all": np.stack([np.roll(t, (1, 1, 1), axis=(0, 1, 2)) for t in a]),
            "flat": np.stack([np.roll(t.ravel(), 1).reshape(t.shape) for t in a]),
            "signal": np.roll(a, 1, axis=3)}[mode]
    np.testing.assert_array_equal(got, want)


def _one_step(kind, steps=2):
    """A net-only network trained `steps` steps with theta_optimizer `kind`, and its weights before."""
    g = M.uniform_genotype("seq", "blur", "good", "net")
    hp = HParams(param_lr=0.05, param_wd=0.01)
    tr = Trainer(M.build_network(g, seeds=[4]), hp, "blur", [4], 1, batch=16, batches_per_epoch=steps,
                 theta_optimizer=kind)
    before = [p.detach().clone() for p in tr.model.weights()]
    grads = []
    real = tr.theta_optimizer.step

    def spy():
        grads.append([p.grad.detach().clone() for p in tr.theta_optimizer.params])
        real()
    tr.theta_optimizer.step = spy
    tr.run()
    return before, grads, [p.detach() for p in tr.model.weights()], hp


@pytest.mark.parametrize("kind", ["sgd", "momentum"])
def test_theta_optimizers_equal_a_hand_written_update(kind):
    """p <- p - lr (g + wd p) for sgd; buf <- m buf + (g + wd p), p <- p - lr buf for momentum
    (torch.optim.SGD, dampening 0), step by step from the recorded gradients."""
    before, grads, after, hp = _one_step(kind)
    assert len(grads) == 2
    p = [b.clone() for b in before]
    buf = [torch.zeros_like(b) for b in before]
    for gs in grads:
        for k, gk in enumerate(gs):
            d = gk + hp.param_wd * p[k]
            if kind == "momentum":
                buf[k] = MOMENTUM * buf[k] + d
                d = buf[k]
            p[k] = p[k] - hp.param_lr * d
    for a, b in zip(after, p):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_theta_optimizer_torch_sgd_agrees():
    """The elementwise momentum SGD takes the steps torch.optim.SGD takes on the same gradients."""
    before, grads, after, hp = _one_step("momentum", steps=3)
    params = [torch.nn.Parameter(b.clone()) for b in before]
    opt = torch.optim.SGD(params, lr=hp.param_lr, momentum=MOMENTUM, weight_decay=hp.param_wd)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
    for a, b in zip(after, params):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


def test_kernel_size_reaches_the_cnn_and_equals_torch_layers():
    """kernel_size 5: both convolutions have 5 taps, and a net-only layer computes Conv1d ->
    BatchNorm1d -> ReLU -> Conv1d of torch.nn with the same weights."""
    g = M.uniform_genotype("seq", "blur", "good", "net")
    net = reinit(M.build_network(g, seeds=[1], kernel_size=5), torch.Generator().manual_seed(2)).eval()
    bank = net.layers[0].bank
    assert bank.w1.shape[-1] == 5 and bank.w2.shape[-1] == 5
    u = torch.randn(8, 1, 50, generator=torch.Generator().manual_seed(3))
    c1, bn, c2 = torch.nn.Conv1d(1, 16, 5, padding=2), torch.nn.BatchNorm1d(16), torch.nn.Conv1d(16, 1, 5, padding=2)
    with torch.no_grad():
        c1.weight.copy_(bank.w1[0, 0].unsqueeze(1)), c1.bias.copy_(bank.b1[0, 0])
        bn.weight.copy_(bank.gamma[0, 0]), bn.bias.copy_(bank.beta[0, 0])
        bn.running_mean.copy_(bank.running_mean[0, 0]), bn.running_var.copy_(bank.running_var[0, 0])
        c2.weight.copy_(bank.w2[0, 0].unsqueeze(0)), c2.bias.copy_(bank.b2[0, 0:1])
    bn.eval()
    want = c2(F.relu(bn(c1(u))))
    got = bank(u[None])[0, 0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _cell_by_hand(cell, s0, y, weights):
    """The cell's states and output written out with torch.nn.functional (a second computation)."""
    s = [s0]
    k = 0
    for j in range(1, cell.states + 1):
        acc = torch.zeros_like(s0)
        for i in range(j):
            key = f"{i}_{j}"
            if key in cell.ops:
                acc = acc + cell.ops[key](s[i], y, weights[:, k])
            k += 1
        s.append(acc / j if cell.cfg.cell_sum == "mean" else acc)
    inputs = [s[i] for i in cell.inputs]
    x = torch.cat(inputs, dim=2)  # (T,B,C,L): the states as channels
    T, B, C, L = x.shape
    w = cell.out_w if cell.out_w.dim() == 3 else cell.out_w.unsqueeze(-1)
    out = torch.stack([F.conv1d(x[t], w[t].unsqueeze(0), cell.out_b[t:t + 1], padding=w.shape[-1] // 2)
                       for t in range(T)])
    return out


@pytest.mark.parametrize("cell_output,cell_sum", [("last2", "mean"), ("last2-k3", "sum"), ("all", "sum"),
                                                  ("all", "mean")])
def test_cell_output_and_state_sum_equal_conv1d(cell_output, cell_sum):
    sup = M.build_supernet("cell", "blur", "good", [0, 1], cell_output=cell_output, cell_sum=cell_sum).eval()
    y = _y().expand(2, -1, -1, -1)
    sup._bind()  # the network binds the operator A to its ops in forward(); here the cell runs alone
    cell = sup.cells[0]
    u0 = torch.randn(2, 16, 1, 50, generator=torch.Generator().manual_seed(9))
    weights = sup.op_weights()
    torch.testing.assert_close(cell(u0, y, weights), _cell_by_hand(cell, u0, y, weights), rtol=1e-5, atol=1e-5)
    assert cell.out_w.shape[1] == (5 if cell_output == "all" else 2)


@pytest.mark.parametrize("settings", [dict(residual="off"), dict(cell_output="last2-k3", cell_sum="mean"),
                                      dict(cell_output="all", kernel_size=5), dict(roll="signal"),
                                      dict(roll="flat")])
def test_derived_network_equals_one_hot_supernet_under_every_reading(settings):
    """docs/spec.md §4's reference holds under the readings too: the derived network of a genotype computes
    what the supernet computes with one-hot alpha, for the supernet's weights."""
    space = "seq" if "roll" in settings else "cell"
    y = _y()
    for genotype in genotypes(space, "all", torch.Generator().manual_seed(1234), count=3):
        sup = M.build_supernet(space, "blur", "all", [0], **settings).eval()
        with_draws(sup, rng_state(11))
        derived = M.derived_from_supernet(sup, genotype)
        assert derived.cfg == sup.cfg
        out = derived(y)
        with sup.one_hot(genotype):
            ref = sup(y)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_readings_reach_the_trial_and_change_its_numbers(tmp_path):
    """Each reading changes a tiny trial's architecture PSNR (it is wired to the computation) and
    names its folder; the evaluation-only one changes the number reported, not the training."""
    from das.hparams import load_hparams
    from das.spec import TrialSpec, setting
    from das.stages import run_trains

    base = dict(space="cell", data="blur", ops="all", method="random", seed=3, epochs=1, batches_per_epoch=2,
                batch_size=16)
    hp = load_hparams("H1")
    readings = [{}, {"theta_optimizer": "sgd"}, {"residual": "off"}, {"roll": "signal"}, {"kernel_size": 5},
                {"cell_output": "all"}, {"cell_sum": "mean"}, {"noise_sigma": 1.0}, {"psnr": "pooled"}]
    psnrs = []
    for r in readings:
        spec = TrialSpec.make(hp=hp, **base, **r)
        out = run_trains([spec], tmp_path, quiet=True)[0]
        assert out["status"] == "complete", out
        psnrs.append(out["architecture_psnr"])
        assert all("-" + setting(k).token(v) in out["dir"] for k, v in r.items())
        av = out["psnr_averagings"]["architecture"]
        assert av[spec.psnr] == out["architecture_psnr"]
    assert len(set(psnrs)) == len(psnrs), psnrs
    # the pooled reading trains the same network as the default: its sample PSNR is the default's
    assert run_trains([TrialSpec.make(hp=hp, **base, psnr="pooled")], tmp_path, quiet=True, resume=True)[0][
        "psnr_averagings"]["architecture"]["sample"] == psnrs[0]
