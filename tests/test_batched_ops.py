"""The trial-batched ops (leading trial dimension T) against their _ref twins, gradcheck, opcheck, the
adjoint tests, bad input, and batch invariance: trial t gives the same bits alone (T = 1), inside batches
of other trials, and with 1 or 2 threads. The gradient step and the CNN bank have only these batched ops;
T = 1 is how a single trial runs."""
import pytest
import torch
import torch.nn.functional as F

from das import operators as O

pytestmark = pytest.mark.skipif(not O.HAS_EXTENSION, reason="extension not built")
DATA = ["blur", "downsample"]
DTYPES = [torch.float32, torch.float64]
L = 50


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


def weights_like(out):
    """A fixed, non-constant upstream gradient, so every output element matters."""
    return torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)


def assert_same(a, b, what):
    """Bit for bit: torch.equal, and the same dtype and shape."""
    assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
    if not torch.equal(a, b):
        diff = (a.double() - b.double()).abs().max().item()
        raise AssertionError(f"{what} differs (max abs difference {diff:.3g})")


# ---------------------------------------------------------------- inputs, one trial per seed
def step_trial(seed, data="blur", B=6, dtype=torch.float32, device="cpu"):
    """One trial of the gradient step, a function of its seed only: u, y, tau (0-d), r, grad_out."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=dtype).to(device)
    Lo = O.blurred_length(L, O.STRIDES[data])
    return rnd(B, 1, L), rnd(B, 1, Lo), rnd(()).abs() + 0.2, rnd(B, 1, L), rnd(B, 1, L)


def cnn_trial(seed, K=2, C=16, B=128, dtype=torch.float32):
    """One trial of the CNN bank: u, [w1, b1, gamma, beta, w2, b2], [running_mean, running_var], grad_out."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    u = rnd(B, 1, L)
    params = [rnd(K, C, 3), rnd(K, C), rnd(K, C).abs() + 0.5, rnd(K, C), rnd(K, C, 3), rnd(K)]
    stats = [rnd(K, C) * 0.1, rnd(K, C).abs() + 0.5]
    return u, params, stats, rnd(K, B, 1, L)


def stack(trials):
    """Stack per-trial tuples of tensors (or lists of tensors) along a new leading dimension."""
    return [torch.stack(x) if isinstance(x[0], torch.Tensor) else [torch.stack(y) for y in zip(*x)]
            for x in zip(*trials)]


def run_step_batched(trials, data):
    """grad_step_batched forward + backward on the stacked trials; per trial (out, gu, gy, gtau, gr)."""
    u, y, tau, r, go = [t.requires_grad_(i < 4) for i, t in enumerate(stack(trials))]
    A = O.Operator(data, dtype=u.dtype, device=u.device)
    out = O.grad_step_batched(u, y, tau, r, A.kernel, A.stride)
    grads = torch.autograd.grad(out, [u, y, tau, r], go)
    return [(out[t].detach(), *(gr[t] for gr in grads)) for t in range(len(trials))]


def run_cnn_batched(trials, training, ref=False):
    """cnn_bank_batched forward + backward; per trial (out, 7 gradients, running_mean, running_var)."""
    u, params, stats, go = stack(trials)
    xs = [u.requires_grad_()] + [p.requires_grad_() for p in params]
    bank = O.cnn_bank_batched_ref if ref else O.cnn_bank_batched
    out = bank(*xs, *stats, training)
    grads = torch.autograd.grad(out, xs, go)
    return [(out[t].detach(), *(g[t] for g in grads), stats[0][t], stats[1][t]) for t in range(len(trials))]


CNN_NAMES = ["out", "du", "dw1", "db1", "dgamma", "dbeta", "dw2", "db2", "running_mean", "running_var"]
STEP_NAMES = ["out", "du", "dy", "dtau", "dr"]


# ---------------------------------------------------------------- against the _ref twins
@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_step_batched_matches_ref(T, data, dtype, device):
    trials = [step_trial(s, data, B=5, dtype=dtype, device=device) for s in range(T)]
    results = []
    for ext in (True, False):
        with O.use_extension(ext):
            results.append(run_step_batched(trials, data))
    for t, (a, b) in enumerate(zip(*results)):
        for name, x, y in zip(STEP_NAMES, a, b):
            torch.testing.assert_close(x, y, **tol(dtype), msg=lambda m: f"trial {t} {name}: {m}")
    assert results[0][0][3].shape == ()  # one tau gradient per trial


@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cnn_bank_batched_matches_ref(T, training, dtype):
    trials = [cnn_trial(s, K=2, C=5, B=4, dtype=dtype) for s in range(T)]
    ext = run_cnn_batched(trials, training)
    ref = run_cnn_batched([(u, [p.clone() for p in ps], [s.clone() for s in st], go) for u, ps, st, go in trials],
                          training, ref=True)
    for t, (a, b) in enumerate(zip(ext, ref)):
        for name, x, y in zip(CNN_NAMES, a, b):
            torch.testing.assert_close(x, y, **tol(dtype), msg=lambda m: f"trial {t} {name}: {m}")
    for t, (u, params, stats, go) in enumerate(trials):  # running stats moved in training only
        assert torch.equal(ext[t][-2], stats[0]) != training
        assert torch.equal(ext[t][-1], stats[1]) != training


def one_bank_ref(u, w1, b1, gamma, beta, w2, b2, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """One trial's K CNNs conv(k1) -> BatchNorm -> ReLU -> conv(k2) on u (B,1,L) -> (K,B,1,L), composed
    without the trial grouping of cnn_bank_batched_ref: w1 (K,C,k1); b1, gamma, beta, running_* (K,C);
    w2 (K,C,k2); b2 (K,). Updates the running statistics in place in training, as nn.BatchNorm1d does."""
    K, C, k1 = w1.shape
    k2 = w2.shape[-1]
    h = F.conv1d(u, w1.reshape(K * C, 1, k1), b1.reshape(K * C), padding=k1 // 2)
    h = F.batch_norm(h, running_mean.view(-1), running_var.view(-1), gamma.reshape(-1), beta.reshape(-1),
                     training, momentum, eps)
    out = F.conv1d(F.relu(h), w2.reshape(K, C, k2), b2, padding=k2 // 2, groups=K)
    return out.transpose(0, 1).unsqueeze(2)


def test_cnn_bank_batched_ref_is_per_trial_bank_ref():
    """The grouped-convolution twin equals one K-bank composition per trial (BN statistics per trial)."""
    trials = [cnn_trial(s, K=2, C=3, B=5, dtype=torch.float64) for s in range(4)]
    batched = run_cnn_batched(trials, True, ref=True)
    for t, (u, params, stats, go) in enumerate(trials):
        stats = [s.clone() for s in stats]
        out = one_bank_ref(u, *params, *stats, True)
        torch.testing.assert_close(batched[t][0], out, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batched[t][-2], stats[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batched[t][-1], stats[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data", DATA)
def test_blur_batched_matches_ref_and_rows(data, device):
    """blur / blur_adjoint on (T,B,1,L): the _ref twin, and the same bits as the unbatched op per trial."""
    A = O.Operator(data, dtype=torch.float64, device=device)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 1, L, generator=g, dtype=torch.float64).to(device)
    v = torch.randn(3, 5, 1, A.measured_length, generator=g, dtype=torch.float64).to(device)
    ax, atv = O.blur_batched(x, A.kernel, A.stride), O.blur_adjoint_batched(v, A.kernel, A.stride, L)
    assert ax.shape == (3, 5, 1, A.measured_length) and atv.shape == (3, 5, 1, L)
    torch.testing.assert_close(ax, O.blur_batched_ref(x, A.kernel, A.stride), **tol(torch.float64))
    torch.testing.assert_close(atv, O.blur_adjoint_batched_ref(v, A.kernel, A.stride, L), **tol(torch.float64))
    for t in range(3):
        assert_same(ax[t], A(x[t]), f"blur trial {t}")
        assert_same(atv[t], A.adjoint(v[t]), f"blur_adjoint trial {t}")


# ---------------------------------------------------------------- gradcheck and opcheck
@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("data", DATA)
def test_gradcheck_grad_step_batched(T, data, device):
    u, y, tau, r, _ = stack([step_trial(s, data, B=2, dtype=torch.float64, device=device) for s in range(T)])
    A = O.Operator(data, dtype=torch.float64, device=device)
    xs = [t.requires_grad_() for t in (u, y, tau, r)]
    assert torch.autograd.gradcheck(lambda *a: torch.ops.das.grad_step_batched(*a, A.kernel, A.stride), xs)


@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_cnn_batched(T, training):
    u, params, stats, _ = stack([cnn_trial(s, K=2, C=3, B=3, dtype=torch.float64) for s in range(T)])
    xs = [t.requires_grad_() for t in [u] + params]
    f = lambda *a: torch.ops.das.cnn_forward_batched(*a, *stats, training, 1e-5)[0]
    assert torch.autograd.gradcheck(f, xs)


@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("data", DATA)
def test_opcheck_grad_step_batched(T, data, device):
    u, y, tau, r, go = stack([step_trial(s, data, B=3, dtype=torch.float64, device=device) for s in range(T)])
    A = O.Operator(data, dtype=torch.float64, device=device)
    xs = [t.clone().requires_grad_() for t in (u, y, tau, r)]
    torch.library.opcheck(torch.ops.das.grad_step_batched.default, (*xs, A.kernel, A.stride))
    torch.library.opcheck(torch.ops.das.grad_step_batched_backward.default, (go, u, y, tau, r, A.kernel, A.stride))


@pytest.mark.parametrize("T", [1, 2])
def test_opcheck_cnn_batched(T):
    u, params, stats, go = stack([cnn_trial(s, K=2, C=3, B=3, dtype=torch.float64) for s in range(T)])
    for training in (True, False):
        xs = [t.clone().requires_grad_() for t in [u] + params]
        torch.library.opcheck(torch.ops.das.cnn_forward_batched.default, (*xs, *stats, training, 1e-5))
        _, mean, _, rstd = torch.ops.das.cnn_forward_batched(u, *params, *stats, training, 1e-5)
        torch.library.opcheck(torch.ops.das.cnn_backward_batched.default,
                              (go, u, mean, rstd, *params[:5], training))


# ---------------------------------------------------------------- adjoint tests
@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("data", DATA)
def test_blur_batched_adjoint_dot_product(T, data, device):
    """<A x_t, v_t> == <x_t, A^T v_t> for every trial t, to float64 precision."""
    A = O.Operator(data, dtype=torch.float64, device=device)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(T, 16, 1, L, generator=g, dtype=torch.float64).to(device)
    v = torch.randn(T, 16, 1, A.measured_length, generator=g, dtype=torch.float64).to(device)
    lhs = (O.blur_batched(x, A.kernel, A.stride) * v).sum((1, 2, 3))
    rhs = (x * O.blur_adjoint_batched(v, A.kernel, A.stride, L)).sum((1, 2, 3))
    assert lhs.shape == (T,) and (lhs - rhs).abs().max() < 1e-10


@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("data", DATA)
def test_grad_step_batched_backward_is_the_adjoint(T, data, device):
    """For a fixed tau the step f(u, y, r) = u - tau (A^T (A u - y) + r) is linear in (u, y, r), so its backward
    is the adjoint: <f, g> == <u, g_u> + <y, g_y> + <r, g_r> per trial; and df/dtau = (f - u) / tau, so
    g_tau == <(f - u) / tau, g>. Forward and backward kernels checked against each other in float64."""
    u, y, tau, r, go = stack([step_trial(s, data, B=7, dtype=torch.float64, device=device) for s in range(T)])
    A = O.Operator(data, dtype=torch.float64, device=device)
    f = torch.ops.das.grad_step_batched(u, y, tau, r, A.kernel, A.stride)
    gu, gy, gtau, gr = torch.ops.das.grad_step_batched_backward(go, u, y, tau, r, A.kernel, A.stride)
    dot = lambda a, b: (a * b).sum((1, 2, 3))
    torch.testing.assert_close(dot(f, go), dot(u, gu) + dot(y, gy) + dot(r, gr), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(gtau, dot((f - u) / tau.view(-1, 1, 1, 1), go), rtol=1e-12, atol=1e-10)
    assert gtau.shape == (T,) and gtau.abs().min() > 1e-3  # a test that could fail: the sums are not zero


# ---------------------------------------------------------------- batch invariance, bit for bit
# Trial `seed` alone, and inside batches of 2, 5 and 16 with other trials at other positions.
COMPOSITIONS = [[1], [1, 7], [7, 1], [3, 9, 1, 4, 5], list(range(20, 31)) + [1] + list(range(40, 44))]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [dict(K=2, C=16, B=128, dtype=torch.float32),
                                   dict(K=3, C=5, B=7, dtype=torch.float64)], ids=["K2C16B128f32", "K3C5B7f64"])
def test_cnn_bank_batch_invariance(training, shape):
    """Every trial of every batch gives the bits it gives alone (T = 1): output, all seven gradients and the
    updated running statistics."""
    alone = {}
    for seed in sorted({s for comp in COMPOSITIONS for s in comp}):
        (alone[seed],) = run_cnn_batched([cnn_trial(seed, **shape)], training)
    for comp in COMPOSITIONS[1:]:
        for seed, res in zip(comp, run_cnn_batched([cnn_trial(s, **shape) for s in comp], training)):
            for name, a, b in zip(CNN_NAMES, res, alone[seed]):
                assert_same(a, b, f"seed {seed} {name} in a batch of {len(comp)} vs alone")


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_step_batch_invariance(data, dtype):
    """grad_step_batched: each trial's output and gradients are the bits it gives alone (T = 1), whatever
    batch it is in."""
    alone = {}
    for seed in sorted({s for comp in COMPOSITIONS for s in comp}):
        (alone[seed],) = run_step_batched([step_trial(seed, data, B=128, dtype=dtype)], data)
    for comp in COMPOSITIONS[1:]:
        for seed, res in zip(comp, run_step_batched([step_trial(s, data, B=128, dtype=dtype) for s in comp], data)):
            for name, a, b in zip(STEP_NAMES, res, alone[seed]):
                assert_same(a, b, f"seed {seed} {name} in a batch of {len(comp)} vs alone")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [dict(K=2, C=16, B=128, dtype=torch.float32),
                                   dict(K=3, C=5, B=7, dtype=torch.float64)], ids=["K2C16B128f32", "K3C5B7f64"])
def test_cnn_input_grad_alone(training, shape, monkeypatch):
    """When only u's gradient is wanted (DAS's alpha step: the parameters require grad but autograd.grad
    asks for other inputs), the backward skips the parameter sums: u's gradient is the same bits, and a
    later pass that wants the parameters' gradients still gets them."""
    u, params, stats, go = stack([cnn_trial(s, **shape) for s in (3, 9)])
    asked = []
    wanted = O._params_wanted
    monkeypatch.setattr(O, "_params_wanted", lambda ctx: asked.append(wanted(ctx)) or asked[-1])
    for T in (2, 1):
        xs = [u[:T].clone().requires_grad_()] + [p[:T].clone().requires_grad_() for p in params]
        st = [t[:T].clone() for t in stats]
        a = torch.ones((), dtype=u.dtype, requires_grad=True)  # an "alpha" in front of the input
        out = O.cnn_bank_batched(xs[0] * a, *xs[1:], *st, training)
        (da,) = torch.autograd.grad(out, [a], go[:T], retain_graph=True)
        full = torch.autograd.grad(out, [a] + xs, go[:T])
        assert_same(da, full[0], f"T={T}: d/d alpha alone vs with the parameters")
        assert all(g is not None and g.abs().sum() > 0 for g in full[2:])
    assert asked == [False, True, False, True]
    # the op itself: u's gradient does not depend on the flag, the parameter gradients are zeros
    _, mean, _, rstd = torch.ops.das.cnn_forward_batched(u, *params, *stats, training, 1e-5)
    both = torch.ops.das.cnn_backward_batched(go, u, mean, rstd, *params[:5], training)
    only_u = torch.ops.das.cnn_backward_batched(go, u, mean, rstd, *params[:5], training, False)
    assert_same(only_u[0], both[0], "du without the parameter gradients")
    assert all(not g.any() for g in only_u[1:])


@pytest.mark.parametrize("taps", [(5, 3), (3, 5), (1, 1)])
@pytest.mark.parametrize("training", [True, False])
def test_cnn_other_kernel_sizes(taps, training):
    """Kernel sizes other than 3 take the general path (3 taps take the SIMD one): it matches the _ref
    composition, and a trial gives the same bits alone and in a batch."""
    k1, k2 = taps

    def trial(seed):
        u, params, stats, go = cnn_trial(seed, K=2, C=5, B=6, dtype=torch.float64)
        g = torch.Generator().manual_seed(100 + seed)
        params[0] = torch.randn(2, 5, k1, generator=g, dtype=torch.float64)
        params[4] = torch.randn(2, 5, k2, generator=g, dtype=torch.float64)
        return u, params, stats, go

    trials = [trial(s) for s in (1, 2, 3)]
    ext = run_cnn_batched(trials, training)
    ref = run_cnn_batched([(u, [p.clone() for p in ps], [s.clone() for s in st], go) for u, ps, st, go in trials],
                          training, ref=True)
    for t in range(3):
        for name, a, b in zip(CNN_NAMES, ext[t], ref[t]):
            torch.testing.assert_close(a, b, **tol(torch.float64), msg=f"trial {t} {name}")
    (alone,) = run_cnn_batched([trials[1]], training)
    for name, a, b in zip(CNN_NAMES, ext[1], alone):
        assert_same(a, b, f"{name}: in a batch vs alone")


@pytest.fixture
def threads():
    """Yields torch.set_num_threads and restores the thread count afterwards."""
    old = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(old)


@pytest.mark.parametrize("training", [True, False])
def test_thread_invariance(training, threads):
    """1 and 2 threads give the same bits for a batch of 5 trials (CNN bank and grad step), and each
    trial alone on 2 threads gives them too. (The CNN kernels pick one task per bank or trial when there
    are enough for every thread, else one per channel block: T=1 on 2 threads takes the second schedule,
    the batch of 5 the first, so this also compares the two schedules.)"""
    comp = [3, 9, 1, 4, 5]
    results = []
    for n in (1, 2):
        threads(n)
        assert torch.get_num_threads() == n
        cnn = run_cnn_batched([cnn_trial(s) for s in comp], training)
        step = run_step_batched([step_trial(s, "downsample", B=128) for s in comp], "downsample")
        results.append((cnn, step))
    cnn_alone = [run_cnn_batched([cnn_trial(s)], training)[0] for s in comp]  # still on 2 threads
    (cnn1, step1), (cnn2, step2) = results
    for t in range(len(comp)):
        for name, a, b, c in zip(CNN_NAMES, cnn1[t], cnn2[t], cnn_alone[t]):
            assert_same(a, b, f"trial {t} {name}, 1 vs 2 threads")
            assert_same(a, c, f"trial {t} {name}, in a batch on 1 thread vs alone on 2 threads")
        for name, a, b in zip(STEP_NAMES, step1[t], step2[t]):
            assert_same(a, b, f"trial {t} grad_step {name}, 1 vs 2 threads")


def test_batched_wrappers_fall_back_to_ref():
    """Without the extension the batched wrappers run the _ref twins (same numbers to tolerance)."""
    trials = [cnn_trial(s, K=2, C=3, B=4, dtype=torch.float64) for s in range(2)]
    with O.use_extension(False):
        assert not O.extension_enabled()
        off = run_cnn_batched(trials, True)
    on = run_cnn_batched(trials, True)
    for a, b in zip(off, on):
        for name, x, y in zip(CNN_NAMES, a, b):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")


def test_noncontiguous_and_empty_batches():
    """A permuted (non-contiguous) u gives the bits of its contiguous copy; T = 0 gives empty outputs."""
    A = O.Operator("blur")
    u = torch.randn(L, 4, 3, 1).permute(2, 1, 3, 0)  # (3, 4, 1, L), not contiguous
    assert not u.is_contiguous()
    y, tau, r = torch.randn(3, 4, 1, L), torch.rand(3) + 0.2, torch.randn(3, 4, 1, L)
    assert_same(O.grad_step_batched(u, y, tau, r, A.kernel, 1),
                O.grad_step_batched(u.contiguous(), y, tau, r, A.kernel, 1), "grad_step_batched")
    _, params, stats, _ = stack([cnn_trial(s, K=2, C=4, B=4) for s in range(3)])
    out = [O.cnn_bank_batched(x, *params, *[t.clone() for t in stats], True) for x in (u, u.contiguous())]
    assert_same(out[0], out[1], "cnn_bank_batched")
    empty = torch.zeros(0, 4, 1, L)
    assert O.grad_step_batched(empty, empty, torch.zeros(0), empty, A.kernel, 1).shape == (0, 4, 1, L)
    assert O.blur_batched(empty, A.kernel, 1).shape == (0, 4, 1, L)
    assert O.blur_adjoint_batched(empty, A.kernel, 1, L).shape == (0, 4, 1, L)
    assert O.cnn_bank_batched(empty, *[p[:0] for p in params], *[t[:0] for t in stats], True).shape == (0, 2, 4, 1, L)


# ---------------------------------------------------------------- bad input, one test per case
def step_args(T=2, B=3, dtype=torch.float32):
    A = O.Operator("downsample", dtype=dtype)
    return [torch.zeros(T, B, 1, L, dtype=dtype), torch.zeros(T, B, 1, 13, dtype=dtype),
            torch.ones(T, dtype=dtype), torch.zeros(T, B, 1, L, dtype=dtype), A.kernel, 4]


def test_grad_step_batched_rejects_unbatched_signal():
    args = step_args()
    args[0] = args[0][0]
    with pytest.raises(RuntimeError, match=r"u must have shape \(T, B, 1, L\), trials first"):
        torch.ops.das.grad_step_batched(*args)


def test_grad_step_batched_rejects_one_tau_for_all():
    args = step_args()
    args[2] = torch.ones(())
    with pytest.raises(RuntimeError, match=r"tau must hold one step size per trial, shape \(2,\)"):
        torch.ops.das.grad_step_batched(*args)


def test_grad_step_batched_rejects_y_of_other_trial_count():
    args = step_args()
    args[1] = torch.zeros(3, 3, 1, 13)
    with pytest.raises(RuntimeError, match=r"y must have shape \(2, 3, 1, 13\)"):
        torch.ops.das.grad_step_batched(*args)


def test_grad_step_batched_rejects_y_of_other_length():
    args = step_args()
    args[1] = torch.zeros(2, 3, 1, L)  # y of u's length, not A u's (13 samples with stride 4)
    with pytest.raises(RuntimeError, match=r"y must have shape \(2, 3, 1, 13\) = A u's shape for stride 4"):
        torch.ops.das.grad_step_batched(*args)


def test_grad_step_batched_rejects_r_of_other_trial_count():
    args = step_args()
    args[3] = torch.zeros(1, 3, 1, L)
    with pytest.raises(RuntimeError, match="r must have the shape of u"):
        torch.ops.das.grad_step_batched(*args)


def test_grad_step_batched_rejects_integer_signal():
    args = step_args()
    args[0] = args[0].long()
    with pytest.raises(RuntimeError, match="u must be float32 or float64"):
        torch.ops.das.grad_step_batched(*args)


def test_grad_step_batched_rejects_mixed_dtypes():
    args = step_args()
    args[2] = args[2].double()
    with pytest.raises(RuntimeError, match="u is Float but tau is Double; use one dtype"):
        torch.ops.das.grad_step_batched(*args)


def test_grad_step_batched_backward_rejects_bad_grad_out():
    args = step_args()
    with pytest.raises(RuntimeError, match="grad_out must have the shape of u"):
        torch.ops.das.grad_step_batched_backward(torch.zeros(1, 3, 1, L), *args)


def cnn_args(T=2, training=True):
    u, params, stats, _ = stack([cnn_trial(s, K=2, C=3, B=4) for s in range(T)])
    return [u, *params, *stats, training, 1e-5]


def test_cnn_batched_rejects_w1_of_other_trial_count():
    args = cnn_args()
    args[1] = args[1][:1]
    with pytest.raises(RuntimeError, match=r"cnn w1 must be \(T, K, C, k\) with T = 2 trials"):
        torch.ops.das.cnn_forward_batched(*args)


def test_cnn_batched_rejects_unbatched_w2():
    args = cnn_args()
    args[5] = args[5][0]
    with pytest.raises(RuntimeError, match=r"cnn w2 must be \(2, 2, 3, k\)"):
        torch.ops.das.cnn_forward_batched(*args)


def test_cnn_batched_rejects_w2_of_other_width():
    args = cnn_args()
    args[5] = args[5][:, :, :2]  # w2 with 2 channels where w1 has 3
    with pytest.raises(RuntimeError, match=r"cnn w2 must be \(2, 2, 3, k\) with k odd, got \[2, 2, 2, 3\]"):
        torch.ops.das.cnn_forward_batched(*args)


def test_cnn_batched_rejects_gamma_of_other_trial_count():
    args = cnn_args()
    args[3] = torch.cat([args[3], args[3]])
    with pytest.raises(RuntimeError, match=r"b1, gamma and beta must be \(2, 2, 3\)"):
        torch.ops.das.cnn_forward_batched(*args)


def test_cnn_batched_rejects_bad_b2():
    args = cnn_args()
    args[6] = args[6].reshape(-1)
    with pytest.raises(RuntimeError, match=r"cnn b2 must be \(2, 2\)"):
        torch.ops.das.cnn_forward_batched(*args)


def test_cnn_batched_rejects_mixed_dtypes():
    args = cnn_args()
    args[6] = args[6].double()
    with pytest.raises(RuntimeError, match="use one dtype"):
        torch.ops.das.cnn_forward_batched(*args)


def test_cnn_batched_rejects_integer_input():
    args = cnn_args()
    args[0] = args[0].long()
    with pytest.raises(RuntimeError, match="u must be float32 or float64"):
        torch.ops.das.cnn_forward_batched(*args)


def test_cnn_batched_eval_rejects_unbatched_running_stats():
    args = cnn_args(training=False)
    args[7], args[8] = args[7][0], args[8][0]
    with pytest.raises(RuntimeError, match=r"eval mode needs running_mean and running_var of shape \(T, K, C\)"):
        torch.ops.das.cnn_forward_batched(*args)


def test_cnn_batched_backward_rejects_bad_grad_out():
    u, w1, b1, gamma, beta, w2, b2, rm, rv, _, _ = cnn_args()
    with pytest.raises(RuntimeError, match=r"grad_out must be \(T, K, B, 1, L\) = \[2, 2, 4, 1, 50\]"):
        torch.ops.das.cnn_backward_batched(torch.zeros(2, 4, 1, L), u, rm, rv, w1, b1, gamma, beta, w2, True)
