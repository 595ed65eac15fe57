"""The classical references beside every table (das/classical.py), against independent computations:
the adjoint by the _ref operator, Tikhonov by scipy's solver, the best affine map by least squares."""
import numpy as np
import pytest
import scipy.linalg
import torch

from das import classical
from das import operators as O
from das.data import EVAL_SIZE, evaluation_set
from das.metrics import average_psnr


def _psnr(x_hat, x):
    return average_psnr(torch.from_numpy(np.ascontiguousarray(x_hat)).reshape(-1, 1, 50),
                        torch.from_numpy(x).reshape(-1, 1, 50))


@pytest.mark.parametrize("data", ["blur", "downsample"])
def test_references_equal_independent_computations(data):
    sigma_n = 0.1
    refs = classical.references(data, sigma_n)
    A = O.Operator(data, dtype=torch.float64)
    x, y = evaluation_set(data, "cpu", EVAL_SIZE, sigma_n)
    x64, y64 = x.double(), y.double()
    # A^T y with the _ref adjoint, and the dense matrix against the _ref blur
    u0 = O.blur_adjoint_ref(y64, A.kernel, A.stride, 50)
    assert refs["adjoint"]["psnr"]["sample"] == pytest.approx(average_psnr(u0, x64), abs=1e-9)
    M = classical.matrix(data)
    probe = torch.randn(3, 1, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(probe.reshape(3, 50).numpy() @ M.T, O.blur_ref(probe, A.kernel, A.stride).reshape(3, -1),
                               atol=1e-12)
    # Tikhonov at the chosen lambda, by scipy; and lambda is the grid's best on the training stream
    lam = float(refs["tikhonov"]["detail"].split("= ")[1])
    xt, yt = classical._training_stream(data, sigma_n)
    solve = lambda lam_, yy: scipy.linalg.solve(M.T @ M + lam_ * np.eye(50), (yy @ M).T, assume_a="pos").T
    assert refs["tikhonov"]["psnr"]["sample"] == pytest.approx(_psnr(solve(lam, y64.reshape(len(y64), -1).numpy()),
                                                                     x64.reshape(len(x64), -1).numpy()), abs=1e-3)
    errs = {l: np.mean((solve(l, yt[:4096]) - xt[:4096]) ** 2) for l in (lam / 10, lam, lam * 10)}
    assert errs[lam] <= min(errs.values()) + 1e-12
    # Wiener: the least-squares affine map of the training stream (the same estimator, another route)
    design = np.hstack([yt, np.ones((len(yt), 1))])
    coef, *_ = np.linalg.lstsq(design, xt, rcond=None)
    yev = y64.reshape(len(y64), -1).numpy()
    pred = np.hstack([yev, np.ones((len(yev), 1))]) @ coef
    assert refs["wiener"]["psnr"]["sample"] == pytest.approx(_psnr(pred, x64.reshape(len(x64), -1).numpy()), abs=1e-3)
    # the best affine map is at least as good as the other two
    assert refs["wiener"]["psnr"]["pooled"] >= refs["tikhonov"]["psnr"]["pooled"] - 1e-6
    assert refs["wiener"]["psnr"]["pooled"] >= refs["adjoint"]["psnr"]["pooled"]
