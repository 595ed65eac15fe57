"""The measurement operator A (blur, blur + subsampling), its adjoint, and for T trials at once the
fused gradient step of the paper's Eq. 6 and the CNN bank n(u; theta), each with a pure-PyTorch
``*_ref`` twin.

The fast path runs the C++/CUDA kernels of ``das._C`` (registered as ``torch.ops.das.*``);
without the extension a one-time warning names the fix and every call takes the ``_ref`` path.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import torch
import torch.nn.functional as F

from das.vocab import FORMATIONS

try:
    from das import _C  # noqa: F401  (loading the library registers torch.ops.das)

    HAS_EXTENSION = True
except ImportError as exc:  # pragma: no cover - exercised only on a machine without the build
    HAS_EXTENSION = False
    warnings.warn(
        f"das: the C++ extension das._C is not built ({exc}); falling back to the slower pure-PyTorch "
        "path. Build it with `make build` (or `python setup.py build_ext --inplace`).",
        stacklevel=2,
    )

_use_extension = HAS_EXTENSION

LENGTH = 50
TAPS = 7
SIGMA_BLUR = 0.2
STRIDES = {name: f.stride for name, f in FORMATIONS.items()}  # every data formation's subsampling


def extension_enabled() -> bool:
    """True when calls go to the C++/CUDA kernels."""
    return _use_extension


@contextlib.contextmanager
def use_extension(enabled: bool):
    """Route every operator in this block to the extension (True) or the ``_ref`` twins (False)."""
    global _use_extension
    old = _use_extension
    _use_extension = bool(enabled) and HAS_EXTENSION
    try:
        yield
    finally:
        _use_extension = old


def blurred_length(length: int, stride: int) -> int:
    """Length of A x for x of ``length`` samples: every stride-th sample from index 0."""
    return (length - 1) // stride + 1


def gaussian_kernel(taps: int = TAPS, sigma: float = SIGMA_BLUR, spacing: float = math.pi / (LENGTH - 1),
                    dtype=torch.float32, device=None) -> torch.Tensor:
    """(taps,) Gaussian weights exp(-(t h)^2 / (2 sigma^2)) at offsets t = -taps//2..taps//2, sum 1."""
    t = torch.arange(taps, dtype=torch.float64) - taps // 2
    w = torch.exp(-((t * spacing) ** 2) / (2 * sigma**2))
    return (w / w.sum()).to(dtype=dtype, device=device)


# --------------------------------------------------------------------------- reference twins
def blur_ref(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """A x with zero padding: x (B,1,L) -> (B,1,(L-1)//stride+1)."""
    return F.conv1d(x, kernel.view(1, 1, -1), stride=stride, padding=kernel.numel() // 2)


def blur_adjoint_ref(v: torch.Tensor, kernel: torch.Tensor, stride: int, length: int) -> torch.Tensor:
    """A^T v (zero-filled upsampling, then the blur's adjoint): v (B,1,Lo) -> (B,1,length)."""
    k = kernel.numel()
    pad = k // 2
    extra = length - ((v.shape[-1] - 1) * stride - 2 * pad + k)
    return F.conv_transpose1d(v, kernel.view(1, 1, -1), stride=stride, padding=pad, output_padding=extra)


# Batched twins: T independent trials, trials first. Nothing in them mixes trials.
def blur_batched_ref(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """A x per trial: x (T,B,1,L) -> (T,B,1,(L-1)//stride+1)."""
    T, B = x.shape[:2]
    Lo = blurred_length(x.shape[-1], stride)
    return blur_ref(x.reshape(T * B, 1, x.shape[-1]), kernel, stride).reshape(T, B, 1, Lo)


def blur_adjoint_batched_ref(v: torch.Tensor, kernel: torch.Tensor, stride: int, length: int) -> torch.Tensor:
    """A^T v per trial: v (T,B,1,Lo) -> (T,B,1,length)."""
    T, B = v.shape[:2]
    return blur_adjoint_ref(v.reshape(T * B, 1, v.shape[-1]), kernel, stride, length).reshape(T, B, 1, length)


def grad_step_batched_ref(u, y, tau, r, kernel, stride):
    """u - tau_t (A^T (A u - y) + r) per trial t: u, r (T,B,1,L), y (T,B,1,Lo), tau (T,)."""
    residual = blur_batched_ref(u, kernel, stride) - y
    return u - tau.reshape(-1, 1, 1, 1) * (blur_adjoint_batched_ref(residual, kernel, stride, u.shape[-1]) + r)


def cnn_bank_batched_ref(u, w1, b1, gamma, beta, w2, b2, running_mean, running_var, training, momentum=0.1,
                         eps=1e-5):
    """T banks of K CNNs, trial t on its own input: u (T,B,1,L) -> (T,K,B,1,L).

    w1 (T,K,C,k1); b1, gamma, beta, running_* (T,K,C); w2 (T,K,C,k2); b2 (T,K). Trials become
    channel groups, so BatchNorm's statistics of a channel are over its own trial's batch only.
    In training the running statistics are updated in place, as nn.BatchNorm1d does.
    """
    T, K, C, k1 = w1.shape
    k2 = w2.shape[-1]
    B, L = u.shape[1], u.shape[-1]
    x = u.reshape(T, B, L).transpose(0, 1)  # (B, T, L): trial t is input channel t
    h = F.conv1d(x, w1.reshape(T * K * C, 1, k1), b1.reshape(-1), padding=k1 // 2, groups=T)
    h = F.batch_norm(h, running_mean.view(-1), running_var.view(-1), gamma.reshape(-1), beta.reshape(-1),
                     training, momentum, eps)
    out = F.conv1d(F.relu(h), w2.reshape(T * K, C, k2), b2.reshape(-1), padding=k2 // 2, groups=T * K)
    return out.transpose(0, 1).reshape(T, K, B, 1, L)


# --------------------------------------------------------------------------- extension wrappers
def blur(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """A x: x (B,1,L) -> (B,1,(L-1)//stride+1)."""
    if _use_extension:
        return torch.ops.das.blur(x, kernel, stride)
    return blur_ref(x, kernel, stride)


def blur_adjoint(v: torch.Tensor, kernel: torch.Tensor, stride: int, length: int) -> torch.Tensor:
    """A^T v: v (B,1,Lo) -> (B,1,length)."""
    if _use_extension:
        return torch.ops.das.blur_adjoint(v, kernel, stride, length)
    return blur_adjoint_ref(v, kernel, stride, length)


def blur_batched(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """A x per trial: x (T,B,1,L) -> (T,B,1,Lo); the rows of all trials go through one blur call."""
    T, B = x.shape[:2]
    Lo = blurred_length(x.shape[-1], stride)
    return blur(x.reshape(T * B, 1, x.shape[-1]), kernel, stride).reshape(T, B, 1, Lo)


def blur_adjoint_batched(v: torch.Tensor, kernel: torch.Tensor, stride: int, length: int) -> torch.Tensor:
    """A^T v per trial: v (T,B,1,Lo) -> (T,B,1,length)."""
    T, B = v.shape[:2]
    return blur_adjoint(v.reshape(T * B, 1, v.shape[-1]), kernel, stride, length).reshape(T, B, 1, length)


def grad_step_batched(u, y, tau, r, kernel, stride):
    """Eq. 6 for T trials at once, tau (T,) one step size per trial: u, r (T,B,1,L), y (T,B,1,Lo)."""
    if _use_extension:
        return torch.ops.das.grad_step_batched(u, y, tau, r, kernel, stride)
    return grad_step_batched_ref(u, y, tau, r, kernel, stride)


def cnn_bank_batched(u, w1, b1, gamma, beta, w2, b2, running_mean, running_var, training, momentum=0.1,
                     eps=1e-5):
    """T banks of K CNNs, one per trial: u (T,B,1,L) -> (T,K,B,1,L); see ``cnn_bank_batched_ref``.

    Trial t's numbers are the same bits as a call on trial t alone, T = 1 (CPU extension).
    On the GPU this runs the ``_ref`` composition (cuDNN), which has no custom kernel.
    """
    if not _use_extension or u.is_cuda:
        return cnn_bank_batched_ref(u, w1, b1, gamma, beta, w2, b2, running_mean, running_var, training, momentum,
                                    eps)
    out, mean, var, _ = torch.ops.das.cnn_forward_batched(u, w1, b1, gamma, beta, w2, b2, running_mean,
                                                          running_var, training, eps)
    if training:
        # elementwise, so each trial's running statistics are updated as they would be for it alone
        with torch.no_grad():
            n = u.shape[1] * u.shape[-1]
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var * (n / max(n - 1, 1)), momentum)
    return out


# --------------------------------------------------------------------------- autograd and fake kernels
if HAS_EXTENSION:

    @torch.library.register_fake("das::blur")
    def _blur_fake(x, kernel, stride):
        return x.new_empty(x.shape[0], 1, blurred_length(x.shape[-1], stride))

    @torch.library.register_fake("das::blur_adjoint")
    def _blur_adjoint_fake(v, kernel, stride, length):
        return v.new_empty(v.shape[0], 1, length)

    # The blur's backward is its adjoint and vice versa.
    def _blur_setup(ctx, inputs, output):
        x, kernel, stride = inputs
        ctx.save_for_backward(kernel)
        ctx.stride, ctx.length = stride, x.shape[-1]

    def _blur_backward(ctx, grad):
        (kernel,) = ctx.saved_tensors
        return torch.ops.das.blur_adjoint(grad.contiguous(), kernel, ctx.stride, ctx.length), None, None

    torch.library.register_autograd("das::blur", _blur_backward, setup_context=_blur_setup)

    def _adjoint_setup(ctx, inputs, output):
        _, kernel, stride, _ = inputs
        ctx.save_for_backward(kernel)
        ctx.stride = stride

    def _adjoint_backward(ctx, grad):
        (kernel,) = ctx.saved_tensors
        return torch.ops.das.blur(grad.contiguous(), kernel, ctx.stride), None, None, None

    torch.library.register_autograd("das::blur_adjoint", _adjoint_backward, setup_context=_adjoint_setup)

    # The gradient step and the CNN bank: every tensor with a leading trial dimension T.
    def _grad_step_setup(ctx, inputs, output):
        u, y, tau, r, kernel, stride = inputs
        ctx.save_for_backward(u, y, tau, r, kernel)
        ctx.stride = stride

    def _cnn_setup(ctx, inputs, output):
        u, w1, b1, gamma, beta, w2, b2, _, _, training, _ = inputs
        _, mean, var, rstd = output
        ctx.save_for_backward(u, mean, rstd, w1, b1, gamma, beta, w2)
        # only `out` carries a gradient; not materialising zeros for the rest saves work per call
        ctx.mark_non_differentiable(mean, var, rstd)
        ctx.set_materialize_grads(False)
        ctx.training = training

    def _params_wanted(ctx):
        """Whether this backward pass wants any CNN parameter's gradient. DAS's alpha step differentiates the
        loss with respect to the alphas only (torch.autograd.grad(loss, alphas)): the parameters require grad,
        but the engine will not run their part of the graph, and the kernel then skips their sums. ctx is
        this op's backward node; its next_functions lead to (u, w1, b1, gamma, beta, w2, b2, running_mean,
        running_var), None where an input needs no gradient."""
        try:
            nodes = [node for node, _ in ctx.next_functions[1:7] if node is not None]
        except Exception:
            return True
        for node in nodes:
            try:
                if torch._C._will_engine_execute_node(node):
                    return True
            except Exception:  # a leaf that is an input of autograd.grad: its gradient is wanted
                return True
        return False

    @torch.library.register_fake("das::grad_step_batched")
    def _grad_step_batched_fake(u, y, tau, r, kernel, stride):
        return torch.empty_like(u)

    @torch.library.register_fake("das::grad_step_batched_backward")
    def _grad_step_batched_backward_fake(grad_out, u, y, tau, r, kernel, stride):
        return torch.empty_like(u), torch.empty_like(y), torch.empty_like(tau), torch.empty_like(r)

    @torch.library.register_fake("das::cnn_forward_batched")
    def _cnn_forward_batched_fake(u, w1, b1, gamma, beta, w2, b2, running_mean, running_var, training, eps):
        T, K, C, _ = w1.shape
        _, B, _, L = u.shape
        stat = u.new_empty(T, K, C)
        return u.new_empty(T, K, B, 1, L), stat, torch.empty_like(stat), torch.empty_like(stat)

    @torch.library.register_fake("das::cnn_backward_batched")
    def _cnn_backward_batched_fake(grad_out, u, mean, rstd, w1, b1, gamma, beta, w2, training, weight_grads=True):
        T, K, C, _ = w1.shape
        return (torch.empty_like(u), torch.empty_like(w1), u.new_empty(T, K, C), u.new_empty(T, K, C),
                u.new_empty(T, K, C), torch.empty_like(w2), u.new_empty(T, K))

    def _grad_step_batched_backward(ctx, grad):
        u, y, tau, r, kernel = ctx.saved_tensors
        gu, gy, gtau, gr = torch.ops.das.grad_step_batched_backward(grad.contiguous(), u, y, tau, r, kernel,
                                                                    ctx.stride)
        return gu, gy, gtau, gr, None, None

    torch.library.register_autograd("das::grad_step_batched", _grad_step_batched_backward,
                                    setup_context=_grad_step_setup)

    def _cnn_batched_backward(ctx, grad_out, *unused_grads):
        u, mean, rstd, w1, b1, gamma, beta, w2 = ctx.saved_tensors
        if grad_out is None:
            return (None,) * 11
        wanted = _params_wanted(ctx)
        grads = torch.ops.das.cnn_backward_batched(grad_out.contiguous(), u, mean, rstd, w1, b1, gamma, beta, w2,
                                                   ctx.training, wanted)
        return (*(grads if wanted else grads[:1] + (None,) * 6), None, None, None, None)

    torch.library.register_autograd("das::cnn_forward_batched", _cnn_batched_backward, setup_context=_cnn_setup)


class Operator:
    """The forward operator A of one data formation ('blur' or 'downsample') on signals of LENGTH."""

    def __init__(self, data: str, dtype=torch.float32, device=None, length: int = LENGTH):
        if data not in STRIDES:
            raise ValueError(f"unknown data formation {data!r}; choose one of {sorted(STRIDES)}")
        self.data = data
        self.stride = STRIDES[data]
        self.length = length
        self.kernel = gaussian_kernel(dtype=dtype, device=device)

    @property
    def measured_length(self) -> int:
        return blurred_length(self.length, self.stride)

    def to(self, dtype=None, device=None) -> "Operator":
        self.kernel = self.kernel.to(dtype=dtype or self.kernel.dtype, device=device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A x: (B,1,L) -> (B,1,Lo)."""
        return blur(x, self.kernel, self.stride)

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """A^T v: (B,1,Lo) -> (B,1,L)."""
        return blur_adjoint(v, self.kernel, self.stride, self.length)
