"""Data formation (docs/spec.md §1) and PSNR (docs/spec.md §2)."""
import math
import subprocess
import sys

import pytest
import torch

from das import data as D
from das.metrics import mean_psnr, psnr
from tests.conftest import ROOT


def test_grid_and_shapes():
    w = D.grid()
    assert w.shape == (50,) and w[0] == -math.pi / 2 and w[-1] == math.pi / 2
    assert torch.allclose(w[1:] - w[:-1], torch.full((49,), math.pi / 49, dtype=torch.float64))
    for data, lo in (("blur", 50), ("downsample", 13)):
        x, y = D.DataSource(data, seed=1).batch(128)
        assert x.shape == (128, 1, 50) and y.shape == (128, 1, lo) and x.dtype == torch.float32


def test_signals_are_shifted_cosines():
    g = torch.Generator().manual_seed(0)
    x = D.sample_signals(4000, g)
    centred = x - x.mean(dim=-1, keepdim=True)
    # cos(.) + Oy: every sample spans at most 2 around its offset, and the offsets are N(0, 1)
    assert (x.amax(-1) - x.amin(-1)).max() <= 2 + 1e-9
    oy = x.amax(-1) - 1  # an upper bound of Oy per sample (cos reaches 1 only for some f)
    assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.mean(-1).std()) < 1.3
    assert centred.abs().max() <= 2 and oy.shape == (4000, 1)


def test_noise_level_is_sigma_n():
    g = torch.Generator().manual_seed(3)
    x = D.sample_signals(2000, g)
    from das.operators import Operator, blur_ref
    A = Operator("blur", dtype=torch.float64)
    assert D.SIGMA_NOISE == 0.1  # the calibrated default (README); the paper's text says 0.01
    for sigma in (D.SIGMA_NOISE, 0.01):
        y = D.measure(x, "blur", g, sigma)
        n = y - blur_ref(x, A.kernel, 1)
        assert abs(float(n.std()) / sigma - 1) < 0.05


def test_determinism_per_seed():
    a = D.DataSource("blur", seed=7).batch()
    b = D.DataSource("blur", seed=7).batch()
    c = D.DataSource("blur", seed=8).batch()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_evaluation_set_is_fixed_across_calls_and_processes():
    x1, y1 = D.evaluation_set("downsample")
    D._evaluation_set_cpu.cache_clear()
    x2, y2 = D.evaluation_set("downsample")
    assert x1.shape == (2432, 1, 50) and torch.equal(x1, x2) and torch.equal(y1, y2)
    code = ("import sys; sys.path.insert(0, %r); from das.data import evaluation_set; "
            "x, y = evaluation_set('downsample'); print(repr(float(x.double().sum())), repr(float(y.double().sum())))" % ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) == float(x1.double().sum()) and float(out[1]) == float(y1.double().sum())


def test_evaluation_set_independent_of_training_streams():
    x_eval, _ = D.evaluation_set("blur")
    for seed in range(5):
        x, _ = D.DataSource("blur", seed).batch(128)
        assert not torch.equal(x, x_eval[:128])


def test_psnr_hand_computed():
    x = torch.zeros(2, 1, 4)
    x_hat = torch.tensor([[[0.1, 0.1, 0.1, 0.1]], [[0.0, 0.0, 0.0, 0.2]]])
    # sample 1: mse 0.01 -> 20 dB; sample 2: mse 0.04 / 4 = 0.01 -> 20 dB
    torch.testing.assert_close(psnr(x_hat, x), torch.tensor([20.0, 20.0]))
    x_hat2 = torch.tensor([[[1.0, 1.0, 1.0, 1.0]], [[0.01, 0.01, 0.01, 0.01]]])
    # mse 1 -> 0 dB; mse 1e-4 -> 40 dB; the reported figure is the mean over samples
    assert mean_psnr(x_hat2, x) == pytest.approx(20.0)
    assert psnr(x_hat2, x, peak=2.0)[0].item() == pytest.approx(10 * math.log10(4))
