"""PSNR (docs/spec.md §2): 10 log10(peak^2 / MSE) per sample, averaged over the evaluation set; and the
other averagings a reader of the paper may assume (das.spec's `psnr` setting):

    sample   the mean over samples of each sample's PSNR (docs/spec.md §2, the default)
    pooled   the PSNR of the mean squared error over all samples
    batch    the mean over batches of BATCH samples of each batch's PSNR
"""
from __future__ import annotations

import torch

PEAK = 1.0
AVERAGINGS = ("sample", "pooled", "batch")
BATCH = 128  # the training batch size of the paper, the batch of the "batch" averaging


def psnr(x_hat: torch.Tensor, x: torch.Tensor, peak: float = PEAK) -> torch.Tensor:
    """Per-sample PSNR in dB: x_hat, x (B,1,L) -> (B,)."""
    mse = ((x_hat - x) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(peak**2 / mse)


def mean_psnr(x_hat: torch.Tensor, x: torch.Tensor, peak: float = PEAK) -> float:
    """Mean of per-sample PSNRs in dB."""
    return float(psnr(x_hat.double(), x.double(), peak).mean())


def average_psnr(x_hat: torch.Tensor, x: torch.Tensor, averaging: str = "sample", peak: float = PEAK) -> float:
    """PSNR in dB of x_hat (B,1,L) against x under one averaging of AVERAGINGS (float64 sums)."""
    mse = ((x_hat.double() - x.double()) ** 2).flatten(1).mean(dim=1)
    if averaging == "sample":
        return float((10.0 * torch.log10(peak**2 / mse)).mean())
    if averaging == "pooled":
        return float(10.0 * torch.log10(peak**2 / mse.mean()))
    if averaging == "batch":
        return float(torch.stack([10.0 * torch.log10(peak**2 / b.mean()) for b in mse.split(BATCH)]).mean())
    raise ValueError(f"unknown PSNR averaging {averaging!r}; choose one of {list(AVERAGINGS)}")
