"""The training loops: DAS search (bilevel, first or second order), retraining, evaluation.

One loop serves both: a search alternates a theta step on a fresh training batch with an alpha
step on a fresh validation batch (SPEC 5); a retrain makes theta steps only. The bilevel alpha
step lives in `Architect`, as in DARTS.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from das.data import BATCH, BATCHES_PER_EPOCH, EVAL_SEED, EVAL_SIZE, SIGMA_NOISE, DataSource, evaluation_set
from das.hparams import WARMUP_EPOCHS, HParams
from das.metrics import mean_psnr, psnr
from das.utils import Diverged, progress, save_torch


def stream_seed(seed: int, stream: int) -> int:
    """Seeds of a trial's data streams (0: training, 1: validation), apart from EVAL_SEED."""
    return 7_919 * int(seed) + 104_729 * (stream + 1)


@torch.no_grad()
def evaluate(model, data: str, device="cpu", size: int | None = None, sigma_n: float = SIGMA_NOISE) -> float:
    """Mean PSNR (dB) on the fixed evaluation set, BN in eval mode, noise ops seeded by EVAL_SEED."""
    was_training = model.training
    model.eval()
    x, y = evaluation_set(data, device, size or EVAL_SIZE, sigma_n)
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(EVAL_SEED)
        out = model(y)
    model.train(was_training)
    if not torch.isfinite(out).all():
        return float("nan")
    return mean_psnr(out, x)


def one_hot_psnr(supernet, genotype, data: str, device="cpu", size: int | None = None) -> float:
    """One-shot PSNR (dB) of a candidate architecture: the trained supernet with alpha one-hot on
    the genotype's choices and the weights it inherits, not trained further (`evaluate`, BN in eval
    mode). Equals evaluate() of `model.derived_from_supernet(supernet, genotype)`; the alphas are
    restored afterwards."""
    with supernet.one_hot(genotype):
        return evaluate(supernet, data, device, size)


def make_alpha_optimizer(params, hp: HParams):
    if hp.alpha_optimizer == "Adam":
        return torch.optim.Adam(params, lr=hp.alpha_lr, betas=(0.5, 0.999), weight_decay=hp.alpha_wd)
    return torch.optim.SGD(params, lr=hp.alpha_lr, weight_decay=hp.alpha_wd)


def _bn_statistics(model) -> list[torch.Tensor]:
    """The BatchNorm running statistics of every CNN: the running_mean and running_var buffers."""
    return [b for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))]


def _rng_state(device: torch.device):
    """The global RNG state(s) a forward pass draws from: the CPU one, and the device's on CUDA."""
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


class Architect:
    """The alpha step of DAS: first order, or second order with one unrolled theta step and a
    finite-difference Hessian-vector product (DARTS, Liu et al. 2019, Eq. 7-8).

    Second order: grad_alpha L_val(w', alpha) - xi * H dw with w' = w - xi (grad_w L_train(w, alpha)
    + wd w), dw = grad_w' L_val(w', alpha) and H dw ~ (grad_alpha L_train(w + r dw) -
    grad_alpha L_train(w - r dw)) / (2 r), r = FD_RADIUS / ||dw|| (DARTS' 0.01). The error of that
    central difference is O(r^2) only if the three passes on the training batch evaluate one and the
    same function of (w, alpha): they see the same batch and replay the same random draws (the
    noise op's eps), from the RNG state at the start of the step. Otherwise the difference of two
    noise draws, divided by 2r, swamps the Hessian term. The validation pass draws afresh, and the
    RNG leaves the step as if one training and one validation pass had run.

    BatchNorm, both orders: the alpha step runs BN in training mode (batch statistics, as the theta
    step sees them) and leaves running_mean / running_var as they were. The running statistics
    estimate theta's activations for evaluation and belong to theta: only theta steps update them.
    (A model in eval mode, as in DAS-single with frozen theta, keeps using its running statistics.)
    """

    FD_RADIUS = 0.01

    def __init__(self, model, hp: HParams, order: int = 1):
        if order not in (1, 2):
            raise ValueError("order must be 1 or 2")
        self.model, self.hp, self.order = model, hp, order
        self.optimizer = make_alpha_optimizer(model.arch_parameters(), hp)

    def set_lr(self, progress_fraction: float) -> float:
        lr = self.hp.alpha_lr
        if self.hp.alpha_scheduler == "Linear":
            lr *= max(0.0, 1.0 - progress_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self, train_batch, val_batch, xi: float) -> torch.Tensor:
        """One alpha update; returns the validation loss (a 0-dim tensor).

        train_batch (order 2 only) and val_batch: (x (B,1,L), y (B,1,Lo)); xi: the unrolled step's lr.
        """
        alphas = self.model.arch_parameters()
        x_v, y_v = val_batch
        statistics = [b.clone() for b in _bn_statistics(self.model)]
        try:
            if self.order == 1:
                loss = F.mse_loss(self.model(y_v), x_v)
                grads = torch.autograd.grad(loss, alphas)
            else:
                loss, grads = self._unrolled_grads(train_batch, val_batch, xi)
        finally:
            with torch.no_grad():
                for b, b0 in zip(_bn_statistics(self.model), statistics):
                    b.copy_(b0)
        for a, g in zip(alphas, grads):
            a.grad = g
        self.optimizer.step()
        return loss.detach()

    def _unrolled_grads(self, train_batch, val_batch, xi):
        """(L_val(w', alpha), the second-order gradient per arch parameter); weights restored."""
        model = self.model
        alphas, weights = model.arch_parameters(), model.weights()
        x_t, y_t = train_batch
        x_v, y_v = val_batch
        device = alphas[0].device
        draws = _rng_state(device)  # every pass on the training batch replays these draws

        def train_loss():
            _set_rng_state(draws, device)
            return F.mse_loss(model(y_t), x_t)

        theta = [w.detach().clone() for w in weights]
        try:
            # w' = w - xi * (grad_w L_train(w, alpha) + wd * w)
            g_train = torch.autograd.grad(train_loss(), weights, allow_unused=True)
            with torch.no_grad():
                for w, g in zip(weights, g_train):
                    if g is not None:
                        w.sub_(xi * (g + self.hp.param_wd * w))
            loss = F.mse_loss(model(y_v), x_v)
            after = _rng_state(device)
            grads = torch.autograd.grad(loss, alphas + weights, allow_unused=True)
            d_alpha = grads[: len(alphas)]
            d_w = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads[len(alphas):])]
            # ||dw|| as a sum of per-tensor sums in list order: no reduction long enough to be split
            # across threads, so r does not depend on the thread count
            norm = torch.stack([g.pow(2).sum() for g in d_w]).sum().sqrt()
            r = self.FD_RADIUS / norm.clamp_min(1e-12)

            def alpha_grad_at(sign):
                with torch.no_grad():
                    for w, w0, d in zip(weights, theta, d_w):
                        w.copy_(w0 + sign * r * d)
                return torch.autograd.grad(train_loss(), alphas)

            g_pos, g_neg = alpha_grad_at(1.0), alpha_grad_at(-1.0)
            _set_rng_state(after, device)
        finally:
            with torch.no_grad():
                for w, w0 in zip(weights, theta):
                    w.copy_(w0)
        hessian = [(p - n) / (2 * r) for p, n in zip(g_pos, g_neg)]
        return loss, [d - xi * h for d, h in zip(d_alpha, hessian)]


class Trainer:
    """Runs a search (alphas present and `search=True`) or a retrain, epoch by epoch, resumable.

    The whole state (model, optimisers, data streams, RNG, history) is one dict, saved after
    every epoch when a checkpoint path is given.
    """

    def __init__(self, model, hp: HParams, data: str, seed: int, epochs: int, device="cpu", *,
                 search: bool = False, order: int = 1, train_theta: bool = True, batch: int = BATCH,
                 batches_per_epoch: int = BATCHES_PER_EPOCH, sigma_n: float = SIGMA_NOISE, log=None,
                 desc: str = ""):
        self.model = model.to(device)
        self.hp, self.data, self.seed, self.epochs, self.device = hp, data, seed, epochs, device
        self.search, self.train_theta, self.batch, self.steps = search, train_theta, batch, batches_per_epoch
        self.log = log or (lambda msg: None)
        self.desc = desc
        self.train_data = DataSource(data, stream_seed(seed, 0), device, sigma_n)
        self.val_data = DataSource(data, stream_seed(seed, 1), device, sigma_n) if search else None
        # fused: one kernel for all ~80 parameter tensors instead of a Python loop over them
        self.theta_optimizer = torch.optim.Adam(model.weights(), lr=hp.param_lr, weight_decay=hp.param_wd,
                                                fused=True) if train_theta else None
        self.architect = Architect(model, hp, order) if search else None
        self.epoch = 0
        self.elapsed = 0.0
        self.history = {"epoch": [], "train_loss": [], "train_psnr": [], "seconds": []}
        if search:
            self.history.update(val_loss=[], alphas=[])
            # softmax(alpha) before the first step (rows of floats, like "alphas"): how far alpha
            # moved, and whether the derived choice is just the argmax of the initialisation
            self.history["alphas_init"] = self.model.softmax_alphas()
        if not train_theta:
            # frozen, pretrained operations (DAS-single): BN keeps its running statistics
            self.model.eval()
            for p in model.weights():
                p.requires_grad_(False)

    # ---- state
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "theta_optimizer": self.theta_optimizer.state_dict() if self.theta_optimizer else None,
            "alpha_optimizer": self.architect.optimizer.state_dict() if self.architect else None,
            "train_data": self.train_data.state_dict(),
            "val_data": self.val_data.state_dict() if self.val_data else None,
            "rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "elapsed": self.elapsed,
            "history": self.history,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.theta_optimizer:
            self.theta_optimizer.load_state_dict(state["theta_optimizer"])
        if self.architect:
            self.architect.optimizer.load_state_dict(state["alpha_optimizer"])
        self.train_data.load_state_dict(state["train_data"])
        if self.val_data:
            self.val_data.load_state_dict(state["val_data"])
        torch.set_rng_state(state["rng"])
        self.epoch, self.elapsed, self.history = state["epoch"], state["elapsed"], state["history"]

    # ---- loop
    def _theta_lr(self, step: int) -> float:
        lr = self.hp.param_lr
        if self.hp.param_warmup:
            lr *= min(1.0, (step + 1) / (WARMUP_EPOCHS * self.steps))
        for group in self.theta_optimizer.param_groups:
            group["lr"] = lr
        return lr

    def run(self, checkpoint_path=None, extra_state: dict | None = None) -> dict:
        """Train to self.epochs; after every epoch save the state (plus extra_state) to checkpoint_path."""
        total = self.epochs * self.steps
        bar = progress(range(self.epoch, self.epochs), desc=self.desc)
        for epoch in bar:
            t0 = time.perf_counter()
            losses = torch.zeros((), device=self.device)
            psnrs = torch.zeros((), device=self.device, dtype=torch.float64)
            val_losses = torch.zeros((), device=self.device)
            alpha_frozen = self.search and self.hp.alpha_warmup and epoch < WARMUP_EPOCHS
            for k in range(self.steps):
                step = epoch * self.steps + k
                xi = self.hp.param_lr
                if self.train_theta:
                    xi = self._theta_lr(step)
                    x, y = self.train_data.batch(self.batch)
                    self.theta_optimizer.zero_grad(set_to_none=True)
                    out = self.model(y)
                    loss = F.mse_loss(out, x)
                    loss.backward()
                    self.theta_optimizer.step()
                    losses += loss.detach()
                    psnrs += psnr(out.detach().double(), x.double()).mean()
                if self.search and not alpha_frozen:
                    self.architect.set_lr(step / total)
                    train_batch = self.train_data.batch(self.batch) if self.architect.order == 2 else None
                    val_loss = self.architect.step(train_batch, self.val_data.batch(self.batch), xi)
                    val_losses += val_loss
            mean_loss = float(losses) / self.steps
            if not math.isfinite(mean_loss) or (self.search and not math.isfinite(float(val_losses))):
                raise Diverged(f"loss became {mean_loss} in epoch {epoch + 1}")
            self.epoch = epoch + 1
            seconds = time.perf_counter() - t0
            self.elapsed += seconds
            h = self.history
            h["epoch"].append(self.epoch)
            h["train_loss"].append(mean_loss)
            h["train_psnr"].append(float(psnrs) / self.steps if self.train_theta else None)
            h["seconds"].append(seconds)
            if self.search:
                h["val_loss"].append(None if alpha_frozen else float(val_losses) / self.steps)
                h["alphas"].append(self.model.softmax_alphas())
            if self.epoch % 10 == 0 or self.epoch == self.epochs:
                self.log(f"{self.desc} epoch {self.epoch}/{self.epochs} train loss {mean_loss:.5f} "
                         f"({self.elapsed:.1f}s)")
            if checkpoint_path is not None:
                save_torch(checkpoint_path, {**self.state_dict(), **(extra_state or {})})
        return self.history
