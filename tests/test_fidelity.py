"""Scientific fidelity: derived network == one-hot supernet (docs/spec.md §4), the second-order alpha step
against the exact hypergradient, the BatchNorm rule of the alpha step, thread-count invariance,
initial alphas and their diagnostics, one-shot ranking by one-hot PSNR.

Every random number a test needs comes from a local torch.Generator; the noise op draws from the
network's own per-trial streams (model.noise), which a test sets to a state it chooses.
"""
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from das import model as M
from das import operators as O
from das.data import DataSource
from das.diagnostics import alpha_diagnostics
from das.genotype import Genotype
from das.hparams import HParams, load_hparams
from das import ops as ops_lib
from das.ops import CNNBank
from das.train import Architect, Trainer, evaluate, one_hot_psnr, save_checkpoints

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- helpers
def reinit(net, generator: torch.Generator):
    """Redraw every weight and BN statistic of net from generator, with the constructors' scales
    (U(+-1/sqrt(fan_in)) for convolutions, tau and gamma near 1), so no test depends on the global RNG."""
    def u(t, bound):
        return (torch.rand(t.shape, generator=generator, dtype=t.dtype) * 2 - 1) * bound

    with torch.no_grad():
        for name, t in list(net.named_parameters()) + list(net.named_buffers()):
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("w1", "b1"):
                t.copy_(u(t, 1 / math.sqrt(3)))
            elif leaf in ("w2", "b2"):
                t.copy_(u(t, 1 / math.sqrt(3 * net.width if hasattr(net, "width") else 48)))
            elif leaf in ("out_w", "out_b"):
                t.copy_(u(t, 1 / math.sqrt(2)))
            elif leaf == "tau":
                t.copy_(1 + u(t, 0.2))
            elif leaf == "gamma":
                t.copy_(1 + u(t, 0.2))
            elif leaf in ("beta", "running_mean"):
                t.copy_(u(t, 0.2))
            elif leaf == "running_var":
                t.copy_(1 + u(t, 0.5))
            elif leaf == "alphas":
                t.copy_(u(t, 1.0))
    return net


def rng_state(seed: int) -> torch.Tensor:
    """A generator state, made by a local generator."""
    return torch.Generator().manual_seed(seed).get_state()


def with_draws(net, state):
    """Set every noise stream of net to `state`; returns net."""
    net.noise.set_state([state] * net.trials)
    return net


def one(batch):
    """A (x, y) batch as the batch of one trial: a leading trial dimension of 1."""
    return tuple(t[None] for t in batch)


def emptied_edges(g: Genotype) -> Genotype:
    """What the old derived cell computed: it skipped every edge leaving a state whose inputs were
    all zero (and so on downstream); here those edges are set to zero explicitly."""
    live = {0}
    edges = []
    for i, j, op in g.edges:
        if op != "zero" and i not in live:
            op = "zero"
        if op != "zero":
            live.add(j)
        edges.append((i, j, op))
    return Genotype(space="cell", ops=g.ops, data=g.data, width=g.width, edges=edges)


def zero_state_genotype(ops: str) -> Genotype:
    """Edge (0,1) is zero, so s1 = 0; grad leaves s1 (1->2) and feeds s4 and s5 (2->4, 4->5)."""
    chosen = {(1, 2): "grad", (2, 4): "grad", (0, 5): "net", (4, 5): "grad"}
    return Genotype(space="cell", ops=ops, edges=[(i, j, chosen.get((i, j), "zero")) for i, j in M.cell_edges()])


def genotypes(space, ops, generator, count=4):
    gs = [M.random_genotype(space, "blur", ops, generator) for _ in range(count)]
    if space == "cell":
        gs.append(zero_state_genotype(ops))
    return gs


# --------------------------------------------------------------------------- task 1: derived == supernet
@pytest.mark.parametrize("space", ["seq", "cell"])
@pytest.mark.parametrize("ops", ["good", "all"])
def test_derived_network_equals_one_hot_supernet(space, ops):
    """The supernet with one-hot alpha is the reference. noise_sigma = 0 makes the noise op
    deterministic, so the full mixture (the training code path, alpha logits 0 and -inf) compares
    exactly; `one_hot` computes each trial's chosen op alone, so with sigma > 0 its noise ops draw
    what the derived network draws. A batch of trials, each with its own genotype, is checked too."""
    g = torch.Generator().manual_seed(1234)
    y = DataSource("blur", 5).batch(16)[1][None]
    candidates = genotypes(space, ops, g)
    for genotype in candidates:
        for sigma in (0.0, 0.1):
            sup = reinit(M.build_supernet(space, "blur", ops, [0], noise_sigma=sigma), torch.Generator().manual_seed(7))
            alphas = sup.alphas.detach().clone()
            for train in (False, True):  # BN running statistics, then batch statistics
                sup.train(train)
                with_draws(sup, rng_state(11))
                derived = M.derived_from_supernet(sup, genotype)
                assert derived.training == train
                out = derived(y)
                with sup.one_hot(genotype):
                    ref = sup(y)
                torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
                if sigma == 0:  # the full mixture with a one-hot softmax
                    idx = torch.tensor([sup.op_names.index(op) for op in sup.choices_of(genotype)])
                    with torch.no_grad():
                        sup.alphas.fill_(float("-inf"))
                        sup.alphas[0, torch.arange(len(idx)), idx] = 0.0
                    torch.testing.assert_close(sup(y), ref, rtol=1e-5, atol=1e-5)
                    with torch.no_grad():
                        sup.alphas.copy_(alphas)
            assert torch.equal(sup.alphas, alphas)
            assert not any(m.choices for m in sup.layers_with_ops())  # restored
    # three trials, each one-hot on its own genotype: trial t equals its derived network
    sup = reinit(M.build_supernet(space, "blur", ops, [0, 1, 2]), torch.Generator().manual_seed(8))
    with_draws(sup, rng_state(12))
    three = candidates[:3]
    derived = [M.derived_from_supernet(sup, three[t], t) for t in range(3)]
    with sup.one_hot(three):
        ref = sup(y.expand(3, *y.shape[1:]))
    for t in range(3):
        torch.testing.assert_close(derived[t](y), ref[t:t + 1], rtol=1e-5, atol=1e-5)


def test_edge_from_a_zero_state_contributes():
    """The genotype of the old bug: s1 = 0 (edge (0,1) zero) and grad(0) = tau A^T y - tau n(0)
    leaves it. Its contribution to the output must be clearly non-zero, or the equality test above
    could not tell the old cell (which dropped it) from the new one."""
    genotype = zero_state_genotype("all")
    sup = reinit(M.build_supernet("cell", "blur", "all", [0]), torch.Generator().manual_seed(7)).eval()
    y = DataSource("blur", 5).batch(16)[1][None]
    with_draws(sup, rng_state(11))
    derived = M.derived_from_supernet(sup, genotype)
    old = M.derived_from_supernet(sup, emptied_edges(genotype))  # what the old code computed
    with sup.one_hot(genotype):
        ref = sup(y)
    assert sum(len(c.ops) for c in old.cells) == 2  # only 0->5 net was left in each cell
    out, out_old = derived(y), old(y)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    relative = ((ref - out_old).norm() / ref.norm()).item()
    assert relative > 1e-2, relative
    # the state itself: grad(0) is far from zero
    cell = derived.cells[0]
    derived._bind()
    s2 = cell.ops["1_2"](torch.zeros(1, 16, 1, 50), y)
    assert s2.abs().mean() > 0.1


def test_one_hot_rejects_a_foreign_genotype():
    sup = M.build_supernet("seq", "blur", "good", [0])
    with pytest.raises(ValueError, match="not candidates"):
        with sup.one_hot(Genotype(space="seq", ops="all", layers=["noise"] * 10)):
            pass
    with pytest.raises(ValueError, match="does not fit"):
        M.derived_from_supernet(sup, zero_state_genotype("good"))


# --------------------------------------------------------------------------- task 6: one-hot PSNR
@pytest.mark.parametrize("space", ["seq", "cell"])
def test_one_hot_psnr_equals_derived_network(space):
    g = torch.Generator().manual_seed(99)
    sup = reinit(M.build_supernet(space, "blur", "all", [0]), torch.Generator().manual_seed(3))
    alphas = sup.alphas.detach().clone()
    candidates = genotypes(space, "all", g, count=2) + [sup.genotype()]
    values = []
    for genotype in candidates:
        (v,) = one_hot_psnr(sup, genotype, "blur", size=256)
        # bit for bit on the CPU; the tolerance leaves room for other kernels (GPU, _ref path)
        (d,) = evaluate(M.derived_from_supernet(sup, genotype), "blur", size=256)
        assert v == pytest.approx(d, abs=1e-6)
        assert torch.equal(sup.alphas, alphas) and sup.training
        values.append(v)
    assert len(set(values)) == len(values)  # distinct candidates, distinct scores


# --------------------------------------------------------------------------- task 4: thread count
THREAD_PROBE = r"""
import hashlib, json, sys
import torch
torch.set_num_threads(int(sys.argv[1]))
from das import model as M
from das.data import DataSource
from das.hparams import load_hparams
from das.train import Trainer, per_trial_mse

def digest(tensors):
    return hashlib.sha256(b"".join(t.detach().contiguous().numpy().tobytes() for t in tensors)).hexdigest()

out = {}
for space in ("seq", "cell"):
    for order in (1, 2):
        net = M.build_supernet(space, "blur", "all", [0, 1, 2], width=8)
        x, y = DataSource("blur", 1).batch(128)
        grads = torch.autograd.grad(per_trial_mse(net(y.expand(3, *y.shape)), x.expand(3, *x.shape)).sum(),
                                    list(net.parameters()))
        hp = load_hparams("BOHB-Non-Seq-Blur")  # alpha steps from the first step on
        trainer = Trainer(net, hp, "blur", [0, 1, 2], 1, search=True, order=order, batches_per_epoch=2)
        h = trainer.run()
        out[f"{space} order {order}"] = {"grads": digest(grads), "state": digest(net.state_dict().values()),
                                         "loss": [x["train_loss"] + x["val_loss"] for x in h]}
out["threads"] = torch.get_num_threads()
print(json.dumps(out))
"""


def test_search_is_bitwise_thread_invariant():
    """Gradients of one batch and two search steps (order 1 and 2) of both spaces, three trials at
    once, in two processes with 1 and 2 torch threads: every parameter, alpha, BN statistic and loss
    equal bit for bit. (The cell's nn.Conv1d(2->1, k=1) output conv had thread-dependent weight
    gradients.)"""
    procs = [subprocess.Popen([sys.executable, "-c", THREAD_PROBE, str(n)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    one, two = results
    assert (one.pop("threads"), two.pop("threads")) == (1, 2)
    assert set(one) == {"seq order 1", "seq order 2", "cell order 1", "cell order 2"}
    for key in one:
        assert one[key] == two[key], key


# --------------------------------------------------------------------------- tasks 2 and 3: the alpha step
def smooth_supernet(seed: int = 21, width: int = 4, layers: int = 3):
    """A small float64 sequential supernet (one trial) over all four ops whose CNNs never leave the
    linear part of ReLU (gamma 0.1, beta 1 after BatchNorm; checked by `preactivation_margin`), so the
    loss is smooth in (w, alpha) and the finite-difference error is the O(r^2) of a smooth function."""
    net = reinit(M.SeqSupernet("blur", "all", [0], width=width, layers=layers), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for m in net.layers:
            m.bank.gamma.fill_(0.1)
            m.bank.beta.fill_(1.0)
    return net.double()


def preactivation_margin(net):
    """Record the smallest BatchNorm output (the ReLU input) of every CNN call while the context runs."""
    seen = []

    def hook(bank, args):
        u = args[0][0]  # trial 0: (B,1,L)
        _, K, C, k = bank.w1.shape
        h = F.conv1d(u, bank.w1[0].reshape(K * C, 1, k), bank.b1[0].reshape(-1), padding=k // 2)
        z = F.batch_norm(h, None, None, bank.gamma[0].reshape(-1), bank.beta[0].reshape(-1), True, 0.0, bank.eps)
        seen.append(z.min().item())

    handles = [m.register_forward_pre_hook(hook) for m in net.modules() if isinstance(m, CNNBank)]
    return seen, handles


def batches(n=8):
    return (one(DataSource("blur", 31, dtype=torch.float64).batch(n)),
            one(DataSource("blur", 32, dtype=torch.float64).batch(n)))


def exact_hypergradient(net, train_batch, val_batch, xi, wd, draws):
    """d/dalpha L_val(w - xi (grad_w L_train(w, alpha) + wd w), alpha) by double backward, and the
    direct term grad_alpha L_val(w', alpha) with w' held fixed; the train pass draws from `draws`,
    the validation pass from where it left the streams (as the Architect does)."""
    names = [n for n, _ in net.named_parameters() if n != "alphas"]
    weights = net.weights()
    (x_t, y_t), (x_v, y_v) = train_batch, val_batch
    saved = net.noise.state()
    with_draws(net, draws)
    g = torch.autograd.grad(F.mse_loss(net(y_t), x_t), weights, create_graph=True, allow_unused=True)
    after = net.noise.state()
    unrolled = {n: w - xi * ((0 if gi is None else gi) + wd * w) for n, w, gi in zip(names, weights, g)}
    total = torch.autograd.grad(F.mse_loss(torch.func.functional_call(net, unrolled, (y_v,)), x_v), net.alphas)[0]
    net.noise.set_state(after)
    fixed = {n: w.detach() for n, w in unrolled.items()}
    direct = torch.autograd.grad(F.mse_loss(torch.func.functional_call(net, fixed, (y_v,)), x_v), net.alphas)[0]
    net.noise.set_state(saved)
    return total, direct


def test_second_order_matches_exact_hypergradient(monkeypatch):
    """The FD Hessian-vector term of the Architect against double backward, noise op on (sigma 0.1):
    relative error < 5e-3 at DARTS' radius and > 20x smaller at a 10x smaller radius (O(r^2)).
    With independent noise draws per pass the error is of order 1 or more."""
    net = smooth_supernet()
    hp = HParams(param_wd=1e-3)
    xi = 0.05
    train_batch, val_batch = batches()
    draws = rng_state(5)
    with O.use_extension(False):  # the _ref ops have double backward
        exact, direct = exact_hypergradient(net, train_batch, val_batch, xi, hp.param_wd, draws)
        errors = {}
        for radius in (0.01, 0.001):
            monkeypatch.setattr(Architect, "FD_RADIUS", radius)
            arch = Architect(net, hp, order=2)
            seen, handles = preactivation_margin(net)
            with_draws(net, draws)
            _, (fd,) = arch._unrolled_grads(train_batch, val_batch, xi)
            for h in handles:
                h.remove()
            assert min(seen) > 0.2  # ReLU stayed linear in every pass
            errors[radius] = ((fd - exact).norm() / (exact - direct).norm()).item()
    hessian_share = ((exact - direct).norm() / exact.norm()).item()
    assert hessian_share > 0.05, hessian_share  # the Hessian term is a sizeable part of the gradient
    assert errors[0.01] < 5e-3, errors
    assert errors[0.001] < errors[0.01] / 20, errors


def test_second_order_passes_replay_the_same_draws(monkeypatch):
    """Every noise-op call on the training batch (unrolled step, w + r dw, w - r dw) starts from the
    same stream state, pass by pass; the validation pass draws afresh."""
    calls = []
    import dataclasses

    real = ops_lib.OPS["noise"]

    def spy(layer, u, y, r, idx=None):
        calls.append((y, hashlib.sha256(layer.noise.gens[0].get_state().numpy().tobytes()).hexdigest()))
        return real.fn(layer, u, y, r, idx)

    monkeypatch.setitem(ops_lib.OPS, "noise", dataclasses.replace(real, fn=spy))
    net = smooth_supernet().float()
    (x_t, y_t), (x_v, y_v) = [(x.float(), y.float()) for x, y in batches()]
    arch = Architect(net, HParams(), order=2)
    with_draws(net, rng_state(5))
    arch.step((x_t, y_t), (x_v, y_v), 1e-2)
    train = [h for y, h in calls if y is y_t]
    val = [h for y, h in calls if y is y_v]
    layers = len(net.layers)
    assert len(train) == 3 * layers and len(val) == layers
    assert train[:layers] == train[layers:2 * layers] == train[2 * layers:]
    assert len(set(train[:layers])) == layers  # each layer draws anew within a pass
    assert not set(val) & set(train)


@pytest.mark.parametrize("order", [1, 2])
def test_alpha_step_leaves_bn_statistics_theta_step_moves_them(order):
    net = smooth_supernet().float()
    (x_t, y_t), (x_v, y_v) = [(x.float(), y.float()) for x, y in batches()]
    stats = {n: b.clone() for n, b in net.named_buffers() if n.endswith(("running_mean", "running_var"))}
    weights = [w.detach().clone() for w in net.weights()]
    alphas = net.alphas.detach().clone()
    arch = Architect(net, HParams(alpha_lr=1e-2), order=order)
    with_draws(net, rng_state(5))
    arch.step((x_t, y_t), (x_v, y_v), 1e-2)
    assert not torch.equal(net.alphas, alphas)
    assert all(torch.equal(w, w0) for w, w0 in zip(net.weights(), weights))
    after = dict(net.named_buffers())
    assert len(stats) == 2 * len(net.layers)
    for n, b in stats.items():
        assert torch.equal(after[n], b), n
    # a theta step in training mode does update them
    opt = torch.optim.SGD(net.weights(), lr=1e-2)
    F.mse_loss(net(y_t), x_t).backward()
    opt.step()
    for n, b in stats.items():
        assert not torch.equal(after[n], b), n


# --------------------------------------------------------------------------- task 5: initial alphas
def test_search_records_initial_alphas_through_resume(tmp_path):
    net = reinit(M.SeqSupernet("blur", "all", [0], width=4, layers=3), torch.Generator().manual_seed(8))
    init = net.softmax_alphas(0)
    hp = load_hparams("BOHB-Non-Seq-Blur")  # alpha moves from the first step
    trainer = Trainer(net, hp, "blur", [0], 1, search=True, batch=16, batches_per_epoch=2)
    assert trainer.history[0]["alphas_init"] == init  # recorded before the first step
    ckpt = tmp_path / "checkpoint.pt"
    trainer.run(lambda tr: save_checkpoints(tr, [ckpt], [{}]))
    assert trainer.history[0]["alphas"][-1] != init
    # resume into a differently initialised supernet: the initial alphas come from the checkpoint
    other = reinit(M.SeqSupernet("blur", "all", [0], width=4, layers=3), torch.Generator().manual_seed(9))
    resumed = Trainer(other, hp, "blur", [0], 2, search=True, batch=16, batches_per_epoch=2)
    assert resumed.history[0]["alphas_init"] != init
    resumed.load_state_dicts([torch.load(ckpt, weights_only=True)])
    resumed.run()
    h = resumed.history[0]
    assert h["alphas_init"] == init and len(h["alphas"]) == 2
    d = alpha_diagnostics(h["alphas_init"], h["alphas"][-1])
    assert 0 < d["moved_max"] < 1 and len(d["rows"]) == 3
    retrain = Trainer(M.build_network(M.uniform_genotype("seq", "blur", "all", "grad")), hp, "blur", [0], 1)
    assert "alphas_init" not in retrain.history[0]


def test_alpha_diagnostics_by_hand():
    init = [[0.25, 0.25, 0.25, 0.25], [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]]
    final = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.0, 0.0, 0.5, 0.5]]
    d = alpha_diagnostics(init, final)
    ln = math.log
    entropy = [-(0.7 * ln(0.7) + 3 * 0.1 * ln(0.1)), -(2 * 0.1 * ln(0.1) + 0.6 * ln(0.6) + 0.2 * ln(0.2)), ln(2)]
    deviation = [0.45, 0.35, 0.25]
    moved = [0.45, 0.3, 0.2]
    kept = [True, False, False]  # row 3: a tie resolves to the first op, 2, while the initial argmax is 3
    assert [r["entropy"] for r in d["rows"]] == pytest.approx(entropy, abs=1e-12)
    assert [r["deviation"] for r in d["rows"]] == pytest.approx(deviation, abs=1e-12)
    assert [r["moved"] for r in d["rows"]] == pytest.approx(moved, abs=1e-12)
    assert [r["argmax_kept"] for r in d["rows"]] == kept
    assert d["entropy_max"] == pytest.approx(max(entropy)) and d["entropy_mean"] == pytest.approx(np.mean(entropy))
    assert d["deviation_max"] == pytest.approx(0.45) and d["deviation_mean"] == pytest.approx(np.mean(deviation))
    assert d["moved_max"] == pytest.approx(0.45) and d["moved_mean"] == pytest.approx(np.mean(moved))
    assert d["argmax_kept_share"] == pytest.approx(1 / 3) and d["uniform_entropy"] == pytest.approx(ln(4))
    json.dumps(d)  # plain floats and bools, ready for result files
    with pytest.raises(ValueError, match="one shape"):
        alpha_diagnostics(init, final[:2])
