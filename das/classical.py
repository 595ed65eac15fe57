"""Classical reconstructions as references beside every table: what the networks buy.

    A^T y       the networks' own input u0 (no learning at all)
    Tikhonov    x = (A^T A + lam I)^{-1} A^T y, lam chosen on the training stream (a grid)
    Wiener      the best affine reconstruction x = mu_x + C_xy C_yy^{-1} (y - mu_y), its moments
                estimated on the training stream (the linear minimum-mean-squared-error estimator)

Each is scored on the fixed evaluation set like any trial (das.train.evaluation_set), under every
PSNR averaging. The training stream is a seeded DataSource of its own (REFERENCE_SEED), so the
numbers are a function of the data formation and sigma_n alone.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from das.data import EVAL_SIZE, DataSource, evaluation_set
from das.metrics import AVERAGINGS, average_psnr
from das.operators import LENGTH, Operator, blur_ref

REFERENCE_SEED = 2_000_003   # the training stream of the references, apart from every trial's streams
TRAIN_SAMPLES = 32_768
LAMBDAS = np.logspace(-6, 2, 41)
NAMES = {"adjoint": "A^T y (the input)", "tikhonov": "Tikhonov (lambda on the training stream)",
         "wiener": "Wiener (best affine, fitted on the training stream)"}


def matrix(data: str) -> np.ndarray:
    """A as a dense (Lo, L) float64 matrix: the blur (and subsampling) applied to the unit vectors."""
    A = Operator(data, dtype=torch.float64)
    eye = torch.eye(LENGTH, dtype=torch.float64).reshape(LENGTH, 1, LENGTH)
    return blur_ref(eye, A.kernel, A.stride).reshape(LENGTH, -1).T.numpy()


def _training_stream(data: str, sigma_n: float, n: int = TRAIN_SAMPLES):
    source = DataSource(data, REFERENCE_SEED, sigma=sigma_n, dtype=torch.float64)
    xs, ys = zip(*(source.batch(4096) for _ in range(-(-n // 4096))))
    x, y = torch.cat(xs)[:n], torch.cat(ys)[:n]
    return x.reshape(n, -1).numpy(), y.reshape(n, -1).numpy()


@lru_cache(maxsize=16)
def references(data: str, sigma_n: float) -> dict[str, dict]:
    """{name: {"psnr": {averaging: dB}, "detail": str}} for adjoint, tikhonov and wiener."""
    A = matrix(data)
    x_tr, y_tr = _training_stream(data, sigma_n)
    # Tikhonov: lam by the training stream's mean squared error, in A^T A's eigenbasis (V orthogonal,
    # so the error of (A^T A + lam)^-1 A^T y is that of its coordinates Z / (s + lam) against x V)
    AtA, Aty = A.T @ A, y_tr @ A
    s, V = np.linalg.eigh(AtA)
    Z, P = Aty @ V, x_tr @ V
    errors = [np.mean((Z / (s + lam) - P) ** 2) for lam in LAMBDAS]
    lam = float(LAMBDAS[int(np.argmin(errors))])
    # Wiener: the affine LMMSE estimator from the training stream's moments
    mx, my = x_tr.mean(0), y_tr.mean(0)
    xc, yc = x_tr - mx, y_tr - my
    cxy, cyy = xc.T @ yc / len(xc), yc.T @ yc / len(yc)
    W = np.linalg.solve(cyy.T, cxy.T).T  # C_xy C_yy^{-1}
    x_ev, y_ev = evaluation_set(data, "cpu", EVAL_SIZE, sigma_n)
    x64, y64 = x_ev.double().reshape(len(x_ev), -1).numpy(), y_ev.double().reshape(len(y_ev), -1).numpy()
    recon = {"adjoint": y64 @ A,
             "tikhonov": np.linalg.solve(AtA + lam * np.eye(LENGTH), (y64 @ A).T).T,
             "wiener": mx + (y64 - my) @ W.T}
    target = torch.from_numpy(x64).reshape(-1, 1, LENGTH)
    out = {}
    for name, x_hat in recon.items():
        xh = torch.from_numpy(np.ascontiguousarray(x_hat)).reshape(-1, 1, LENGTH)
        out[name] = {"psnr": {a: average_psnr(xh, target, a) for a in AVERAGINGS},
                     "detail": f"lambda = {lam:.3g}" if name == "tikhonov" else ""}
    return out
