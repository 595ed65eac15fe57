"""The fast path (extension) and the _ref path give the same numbers for one full step."""
import copy

import pytest
import torch

from das import model as M
from das import operators as O
from das.data import DataSource
from das.hparams import load_hparams
from das.train import Architect, per_trial_mse

pytestmark = pytest.mark.skipif(not O.HAS_EXTENSION, reason="extension not built")


@pytest.mark.parametrize("space,data", [("seq", "blur"), ("seq", "downsample"), ("cell", "blur")])
def test_one_search_step_equal_on_both_paths(space, data):
    net0 = M.build_supernet(space, data, "all", [0, 1])
    src = [DataSource(data, 3), DataSource(data, 4)]
    (x, y), (xv, yv) = [tuple(torch.stack(t) for t in zip(*(s.batch(64) for s in src))) for _ in range(2)]
    results = []
    for ext in (True, False):
        net = copy.deepcopy(net0)
        net.noise.set_state(net0.noise.state())  # the same noise-op draws on both paths
        # plain gradient steps: Adam's first step is lr * sign(g), which turns rounding-level
        # differences of near-zero gradients into +-lr and would hide what this test compares
        opt = torch.optim.SGD(net.weights(), lr=1e-2)
        arch = Architect(net, load_hparams("H1"))
        with O.use_extension(ext):
            out = net(y)
            loss = per_trial_mse(out, x).sum()
            grads = torch.autograd.grad(loss, net.weights() + net.arch_parameters(), retain_graph=True)
            loss.backward()
            opt.step()
            arch.step(None, (xv, yv), 1e-3)
        results.append((out.detach(), loss.detach(), grads, [p.detach().clone() for p in net.parameters()],
                        [b.clone() for b in net.buffers()]))
    (o1, l1, g1, p1, b1), (o2, l2, g2, p2, b2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(l1, l2, rtol=1e-4, atol=1e-5)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    for a, b in zip(p1, p2):  # weights after the theta step, alphas after the alpha step
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    for a, b in zip(b1, b2):  # BatchNorm running statistics
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
