"""PSNR (SPEC 2): 10 log10(peak^2 / MSE) per sample, averaged over the evaluation set."""
from __future__ import annotations

import torch

PEAK = 1.0


def psnr(x_hat: torch.Tensor, x: torch.Tensor, peak: float = PEAK) -> torch.Tensor:
    """Per-sample PSNR in dB: x_hat, x (B,1,L) -> (B,)."""
    mse = ((x_hat - x) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(peak**2 / mse)


def mean_psnr(x_hat: torch.Tensor, x: torch.Tensor, peak: float = PEAK) -> float:
    """Mean of per-sample PSNRs in dB."""
    return float(psnr(x_hat.double(), x.double(), peak).mean())
