"""The training loop: DAS search (bilevel, first or second order), retraining, evaluation, for T
trials at once.

One loop serves both: a search alternates a theta step on a fresh training batch with an alpha
step on a fresh validation batch (docs/spec.md §5); a retrain makes theta steps only. The bilevel alpha
step lives in `Architect`, as in DARTS.

The trial dimension: every parameter, BatchNorm statistic, alpha, optimiser state and data batch
carries a leading index t over T trials that share space, data, op set, method and
hyperparameters and differ in seed (and, for retrains, in architecture). No computation crosses
trials: each trial's data, initial weights and noise come from its own seeded streams, losses
are reduced per trial, the optimisers are written out elementwise with single-rounding
operations, and the kernels compute a trial the same way for any T. So a trial's numbers are the
same bits alone (T = 1) or in any batch, on any thread count.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from das.data import (BATCH, BATCHES_PER_EPOCH, EVAL_SEED, EVAL_SIZE, SIGMA_NOISE, DataSource, evaluation_set,
                      stream_seed)
from das.hparams import WARMUP_EPOCHS, HParams
from das.metrics import AVERAGINGS, average_psnr, psnr
from das.utils import progress, save_torch


def per_trial_mse(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(T,) mean squared errors, each reduced over its own trial's (B,1,L) block alone."""
    return torch.stack([F.mse_loss(out[t], x[t]) for t in range(out.shape[0])])


@torch.no_grad()
def evaluate_averagings(model, data: str, device="cpu", size: int | None = None,
                        sigma_n: float = SIGMA_NOISE) -> list[dict]:
    """PSNR (dB) per trial on the fixed evaluation set under every averaging of das.metrics
    ({"sample": ..., "pooled": ..., "batch": ...}; NaN where the output is not finite), BN in eval
    mode; every trial's noise ops draw from a stream seeded by EVAL_SEED, so every trial and method
    sees the same draws."""
    was_training = model.training
    model.eval()
    x, y = evaluation_set(data, device, size or EVAL_SIZE, sigma_n)
    T = model.trials
    old = model.noise.fork(EVAL_SEED)
    try:
        out = model(y.unsqueeze(0).expand(T, *y.shape).contiguous())
    finally:
        model.noise.set_state(old)
        model.train(was_training)
    result = []
    for t in range(T):
        o = out[t]
        if torch.isfinite(o).all():
            result.append({a: average_psnr(o.double(), x.double(), a) for a in AVERAGINGS})
        else:
            result.append({a: float("nan") for a in AVERAGINGS})
    return result


def evaluate(model, data: str, device="cpu", size: int | None = None, sigma_n: float = SIGMA_NOISE,
             averaging: str = "sample") -> list[float]:
    """Mean PSNR (dB) per trial on the fixed evaluation set (see evaluate_averagings)."""
    return [r[averaging] for r in evaluate_averagings(model, data, device, size, sigma_n)]


def one_hot_psnr(supernet, genotypes, data: str, device="cpu", size: int | None = None,
                 sigma_n: float = SIGMA_NOISE, averaging: str = "sample") -> list[float]:
    """One-shot PSNR (dB) of candidate architectures, one per trial (or one for all): the trained
    supernet with alpha one-hot on the candidate's choices and the weights it inherits, not trained
    further (`evaluate`, BN in eval mode). Equals evaluate() of model.derived_from_supernet."""
    with supernet.one_hot(genotypes):
        return evaluate(supernet, data, device, size, sigma_n, averaging)


# ------------------------------------------------------------------------------- optimisers
class Adam:
    """Adam (Kingma & Ba) with L2 weight decay as torch.optim.Adam adds it, written out elementwise
    with single-rounding operations (no fused multiply-add), so each element's update is the same
    bits wherever it sits in a tensor of any size."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        if not self.params:
            return
        self.steps += 1
        b1, b2 = self.betas
        g = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        if self.weight_decay:
            g = torch._foreach_add(g, torch._foreach_mul(self.params, self.weight_decay))
        torch._foreach_mul_(self.m, b1)
        torch._foreach_add_(self.m, torch._foreach_mul(g, 1 - b1))
        torch._foreach_mul_(self.v, b2)
        torch._foreach_add_(self.v, torch._foreach_mul(torch._foreach_mul(g, g), 1 - b2))
        denom = torch._foreach_add(torch._foreach_sqrt(torch._foreach_div(self.v, 1 - b2 ** self.steps)), self.eps)
        torch._foreach_sub_(self.params, torch._foreach_div(torch._foreach_mul(self.m, self.lr / (1 - b1 ** self.steps)),
                                                            denom))

    def state_dict(self, t: int) -> dict:
        return {"m": [m[t].clone() for m in self.m], "v": [v[t].clone() for v in self.v], "steps": self.steps}

    def load_state_dicts(self, states: list[dict]) -> None:
        self.m = [torch.stack([s["m"][k] for s in states]).to(p.device) for k, p in enumerate(self.params)]
        self.v = [torch.stack([s["v"][k] for s in states]).to(p.device) for k, p in enumerate(self.params)]
        self.steps = states[0]["steps"]


class SGD:
    """Gradient descent with L2 weight decay and optional momentum as torch.optim.SGD computes it
    (dampening 0, no Nesterov: buf = momentum buf + g, p -= lr buf), elementwise (see Adam)."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.0):
        self.params, self.lr, self.weight_decay, self.momentum = list(params), lr, weight_decay, momentum
        self.buf = [torch.zeros_like(p) for p in self.params] if momentum else None

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        if not self.params:
            return
        g = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        if self.weight_decay:
            g = torch._foreach_add(g, torch._foreach_mul(self.params, self.weight_decay))
        if self.momentum:  # buf starts at 0, so the first step's buf is g exactly, as torch's clone of g
            torch._foreach_mul_(self.buf, self.momentum)
            torch._foreach_add_(self.buf, g)
            g = self.buf
        torch._foreach_sub_(self.params, torch._foreach_mul(g, self.lr))

    def state_dict(self, t: int) -> dict:
        return {"buf": [b[t].clone() for b in self.buf]} if self.buf is not None else {}

    def load_state_dicts(self, states) -> None:
        if self.buf is not None:
            self.buf = [torch.stack([s["buf"][k] for s in states]).to(p.device) for k, p in enumerate(self.params)]


MOMENTUM = 0.9  # theta_optimizer "momentum": the usual SGD momentum (the paper names no optimizer)


def make_alpha_optimizer(params, hp: HParams):
    if hp.alpha_optimizer == "Adam":
        return Adam(params, lr=hp.alpha_lr, betas=(0.5, 0.999), weight_decay=hp.alpha_wd)
    return SGD(params, lr=hp.alpha_lr, weight_decay=hp.alpha_wd)


def make_theta_optimizer(params, hp: HParams, kind: str = "adam"):
    """The optimizer of theta (das.spec's theta_optimizer): adam (torch's default betas), sgd, or
    SGD with momentum MOMENTUM; all at param_lr with L2 weight decay param_wd."""
    if kind == "adam":
        return Adam(params, lr=hp.param_lr, weight_decay=hp.param_wd)
    if kind == "sgd":
        return SGD(params, lr=hp.param_lr, weight_decay=hp.param_wd)
    if kind == "momentum":
        return SGD(params, lr=hp.param_lr, weight_decay=hp.param_wd, momentum=MOMENTUM)
    raise ValueError(f"unknown theta optimizer {kind!r}")


# ------------------------------------------------------------------------------- the alpha step
class Architect:
    """The alpha step of DAS: first order, or second order with one unrolled theta step and a
    finite-difference Hessian-vector product (DARTS, Liu et al. 2019, Eq. 7-8).

    Second order: grad_alpha L_val(w', alpha) - xi * H dw with w' = w - xi (grad_w L_train(w, alpha)
    + wd w), dw = grad_w' L_val(w', alpha) and H dw ~ (grad_alpha L_train(w + r dw) -
    grad_alpha L_train(w - r dw)) / (2 r), r = FD_RADIUS / ||dw|| per trial (DARTS' 0.01). The error
    of that central difference is O(r^2) only if the three passes on the training batch evaluate one
    and the same function of (w, alpha): they see the same batch and replay the same noise-op draws,
    from the streams' state at the start of the step. Otherwise the difference of two noise draws,
    divided by 2r, swamps the Hessian term. The validation pass draws afresh.

    BatchNorm rule, both orders: the alpha step's passes run BN in training mode (batch
    statistics, as the theta step does) but leave the running statistics as they were: they
    belong to theta and are updated by theta steps only. (A model in eval mode, as in DAS-single
    with frozen theta, keeps using its running statistics.)
    """

    FD_RADIUS = 0.01  # DARTS' epsilon: r = FD_RADIUS / ||dw|| per trial

    def __init__(self, model, hp: HParams, order: int = 1):
        if order not in (1, 2):
            raise ValueError("order must be 1 or 2")
        self.model, self.hp, self.order = model, hp, order
        self.optimizer = make_alpha_optimizer(model.arch_parameters(), hp)

    def set_lr(self, progress_fraction: float) -> float:
        lr = self.hp.alpha_lr
        if self.hp.alpha_scheduler == "Linear":
            lr *= max(0.0, 1.0 - progress_fraction)
        self.optimizer.lr = lr
        return lr

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return per_trial_mse(self.model(y), x)

    def step(self, train_batch, val_batch, xi: float) -> torch.Tensor:
        """One alpha update of every trial; returns the validation losses (T,)."""
        alphas = self.model.arch_parameters()
        buffers = [b.detach().clone() for b in self.model.buffers()]
        if self.order == 1:
            loss = self._loss(val_batch)
            grads = torch.autograd.grad(loss.sum(), alphas)
        else:
            loss, grads = self._unrolled_grads(train_batch, val_batch, xi)
        with torch.no_grad():
            for b, b0 in zip(self.model.buffers(), buffers):
                b.copy_(b0)
        for a, g in zip(alphas, grads):
            a.grad = g
        self.optimizer.step()
        for a in alphas:
            a.grad = None
        return loss.detach()

    def _unrolled_grads(self, train_batch, val_batch, xi):
        model = self.model
        alphas, weights = model.arch_parameters(), model.weights()
        T = model.trials
        noise = model.noise.state()
        theta = [w.detach().clone() for w in weights]
        # w' = w - xi * (grad_w L_train(w, alpha) + wd * w)
        g_train = torch.autograd.grad(self._loss(train_batch).sum(), weights, allow_unused=True)
        with torch.no_grad():
            for w, g in zip(weights, g_train):
                if g is not None:
                    w.sub_((g + w * self.hp.param_wd) * xi)
        loss = self._loss(val_batch)  # the validation pass draws afresh
        after = model.noise.state()
        grads = torch.autograd.grad(loss.sum(), alphas + weights, allow_unused=True)
        d_alpha = grads[: len(alphas)]
        d_w = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads[len(alphas):])]
        # per trial: the norm of its own weight gradient, reduced alone (the same bits in any batch)
        norms = torch.stack([torch.cat([d[t].flatten() for d in d_w]).norm() for t in range(T)])
        r = self.FD_RADIUS / norms.clamp_min(1e-12)

        def alpha_grad_at(sign):
            with torch.no_grad():
                for w, w0, d in zip(weights, theta, d_w):
                    w.copy_(w0 + d * (sign * r).reshape(-1, *[1] * (d.dim() - 1)))
            model.noise.set_state(noise)
            return torch.autograd.grad(self._loss(train_batch).sum(), alphas)

        g_pos, g_neg = alpha_grad_at(1.0), alpha_grad_at(-1.0)
        with torch.no_grad():
            for w, w0 in zip(weights, theta):
                w.copy_(w0)
        model.noise.set_state(after)  # the streams leave as if one training and one validation pass had run
        out = []
        for d, p, n in zip(d_alpha, g_pos, g_neg):
            rr = r.reshape(-1, *[1] * (d.dim() - 1))
            out.append(d - (p - n) / (rr * 2) * xi)
        return loss, out


# ------------------------------------------------------------------------------- the loop
def new_history(search: bool) -> dict:
    h = {"epoch": [], "train_loss": [], "train_psnr": [], "seconds": []}
    if search:
        h.update(val_loss=[], alphas=[], alphas_init=None)
    return h


class Trainer:
    """Runs T searches (alphas present and `search=True`) or T retrains, epoch by epoch, resumable.

    A trial whose loss becomes NaN or infinite is marked diverged (epoch and reason in
    `diverged[t]`); the others go on, unaffected, since nothing crosses trials. The state of
    trial t alone is `state_dict(t)`, so each trial's folder holds its own checkpoint.
    """

    def __init__(self, model, hp: HParams, data: str, seeds, epochs: int, device="cpu", *,
                 search: bool = False, order: int = 1, train_theta: bool = True, batch: int = BATCH,
                 batches_per_epoch: int = BATCHES_PER_EPOCH, sigma_n: float = SIGMA_NOISE,
                 theta_optimizer: str = "adam", log=None, desc: str = ""):
        self.model = model.to(device)
        self.seeds = [int(s) for s in seeds]
        self.T = len(self.seeds)
        self.hp, self.data, self.epochs, self.device = hp, data, epochs, device
        self.search, self.train_theta, self.batch, self.steps = search, train_theta, batch, batches_per_epoch
        self.log = log or (lambda msg: None)
        self.desc = desc
        self.train_data = [DataSource(data, stream_seed(s, 0), device, sigma_n) for s in self.seeds]
        self.val_data = [DataSource(data, stream_seed(s, 1), device, sigma_n) for s in self.seeds] if search else None
        self.theta_optimizer = make_theta_optimizer(model.weights(), hp, theta_optimizer) if train_theta else None
        self.architect = Architect(model, hp, order) if search else None
        self.epoch = 0
        self.elapsed = 0.0
        self.history = [new_history(search) for _ in range(self.T)]
        self.diverged: list[str | None] = [None] * self.T
        if search:
            for t, h in enumerate(self.history):
                h["alphas_init"] = model.softmax_alphas(t)
        if not train_theta:
            # frozen, pretrained operations (DAS-single): BN keeps its running statistics
            self.model.eval()
            for p in model.weights():
                p.requires_grad_(False)

    # ---- state of one trial
    def state_dict(self, t: int) -> dict:
        return {
            "model": {k: v[t].clone() for k, v in self.model.state_dict().items()},
            "theta_optimizer": self.theta_optimizer.state_dict(t) if self.theta_optimizer else None,
            "alpha_optimizer": self.architect.optimizer.state_dict(t) if self.architect else None,
            "train_data": self.train_data[t].state_dict(),
            "val_data": self.val_data[t].state_dict() if self.val_data else None,
            "noise": self.model.noise.gens[t].get_state(),
            "epoch": self.epoch,
            "elapsed": self.elapsed,
            "history": self.history[t],
            "diverged": self.diverged[t],
        }

    def load_state_dicts(self, states: list[dict]) -> None:
        """Continue from one state per trial (all at the same epoch)."""
        epochs = {s["epoch"] for s in states}
        if len(epochs) != 1:
            raise ValueError(f"the trials of one batch must resume from one epoch, got {sorted(epochs)}")
        own = self.model.state_dict()
        self.model.load_state_dict({k: torch.stack([s["model"][k] for s in states]).to(own[k].device) for k in own})
        if self.theta_optimizer:
            self.theta_optimizer.load_state_dicts([s["theta_optimizer"] for s in states])
        if self.architect:
            self.architect.optimizer.load_state_dicts([s["alpha_optimizer"] for s in states])
        for t, s in enumerate(states):
            self.train_data[t].load_state_dict(s["train_data"])
            if self.val_data:
                self.val_data[t].load_state_dict(s["val_data"])
            self.model.noise.gens[t].set_state(s["noise"])
        self.epoch = states[0]["epoch"]
        self.elapsed = max(s["elapsed"] for s in states)
        self.history = [s["history"] for s in states]
        self.diverged = [s.get("diverged") for s in states]

    # ---- loop
    def _batch(self, sources):
        xs, ys = zip(*(s.batch(self.batch) for s in sources))
        return torch.stack(xs), torch.stack(ys)

    def _theta_lr(self, step: int) -> float:
        lr = self.hp.param_lr
        if self.hp.param_warmup:
            lr *= min(1.0, (step + 1) / (WARMUP_EPOCHS * self.steps))
        self.theta_optimizer.lr = lr
        return lr

    def run(self, checkpoint=None) -> list[dict]:
        """Train to self.epochs; after every epoch call checkpoint(trainer) (it saves each trial's state)."""
        total = self.epochs * self.steps
        bar = progress(range(self.epoch, self.epochs), desc=self.desc)
        for epoch in bar:
            t0 = time.perf_counter()
            losses = torch.zeros(self.T, device=self.device, dtype=torch.float64)
            psnrs = torch.zeros(self.T, device=self.device, dtype=torch.float64)
            val_losses = torch.zeros(self.T, device=self.device, dtype=torch.float64)
            alpha_frozen = self.search and self.hp.alpha_warmup and epoch < WARMUP_EPOCHS
            for k in range(self.steps):
                step = epoch * self.steps + k
                xi = self.hp.param_lr
                if self.train_theta:
                    xi = self._theta_lr(step)
                    x, y = self._batch(self.train_data)
                    self.theta_optimizer.zero_grad()
                    out = self.model(y)
                    loss = per_trial_mse(out, x)
                    if any(p.requires_grad for p in self.model.weights()) and loss.requires_grad:
                        loss.sum().backward()  # d(sum)/d(loss_t) = 1: each trial gets its own gradient
                        self.theta_optimizer.step()
                    losses += loss.detach().double()
                    with torch.no_grad():
                        psnrs += torch.stack([psnr(out[t].double(), x[t].double()).mean() for t in range(self.T)])
                if self.search and not alpha_frozen:
                    self.architect.set_lr(step / total)
                    train_batch = self._batch(self.train_data) if self.architect.order == 2 else None
                    val_losses += self.architect.step(train_batch, self._batch(self.val_data), xi).double()
            self.epoch = epoch + 1
            seconds = time.perf_counter() - t0
            self.elapsed += seconds
            mean_loss = (losses / self.steps).tolist()
            mean_val = (val_losses / self.steps).tolist()
            for t, h in enumerate(self.history):
                if self.diverged[t] is None:
                    bad = not math.isfinite(mean_loss[t]) or (self.search and not alpha_frozen
                                                              and not math.isfinite(mean_val[t]))
                    if bad:
                        self.diverged[t] = f"loss became {mean_loss[t]} in epoch {self.epoch}"
                h["epoch"].append(self.epoch)
                h["train_loss"].append(mean_loss[t] if self.train_theta else None)
                h["train_psnr"].append(float(psnrs[t]) / self.steps if self.train_theta else None)
                h["seconds"].append(seconds / self.T)
                if self.search:
                    h["val_loss"].append(None if alpha_frozen else mean_val[t])
                    h["alphas"].append(self.model.softmax_alphas(t))
            live = [t for t in range(self.T) if self.diverged[t] is None] or list(range(self.T))

            def mean_of(values):
                return sum(values[t] for t in live) / len(live)

            words = []
            if self.train_theta:
                train_psnr = mean_of([float(p) / self.steps for p in psnrs])
                words.append(f"train loss {mean_of(mean_loss):.5f}, PSNR {train_psnr:.2f} dB")
            if self.search and not alpha_frozen:
                words.append(f"validation loss {mean_of(mean_val):.5f}")
            elif self.search:
                words.append("alpha frozen (warm-up)")
            eta = seconds * (self.epochs - self.epoch)
            self.log(f"{self.desc} epoch {self.epoch}/{self.epochs}: {', '.join(words)}"
                     + (f" (mean of {len(live)} trials)" if self.T > 1 else "")
                     + f", {seconds:.1f}s/epoch, ETA {int(eta) // 60}:{int(eta) % 60:02d}")
            if checkpoint is not None:
                checkpoint(self)
        return self.history


def save_checkpoints(trainer: Trainer, paths, extra: list[dict]) -> None:
    """One file per trial: its own state and its specification."""
    for t, path in enumerate(paths):
        save_torch(path, {**trainer.state_dict(t), **extra[t]})
