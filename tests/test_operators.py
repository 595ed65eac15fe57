"""The blur operator A and its adjoint (the unbatched ops) against their _ref twins, gradcheck, opcheck, the
adjoint test, bad input. The gradient step and the CNN bank, which exist only with a leading trial dimension,
are tested in test_batched_ops.py."""
import pytest
import torch

from das import operators as O

pytestmark = pytest.mark.skipif(not O.HAS_EXTENSION, reason="extension not built")
DATA = ["blur", "downsample"]
DTYPES = [torch.float32, torch.float64]


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


def make(data, dtype, device, B=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = O.Operator(data, dtype=dtype, device=device)
    u = torch.randn(B, 1, 50, generator=g, dtype=dtype).to(device)
    y = torch.randn(B, 1, A.measured_length, generator=g, dtype=dtype).to(device)
    return A, u, y


def both(fn, inputs):
    """Run fn on the extension and on the _ref path; return values and gradients of each."""
    results = []
    for ext in (True, False):
        xs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
        with O.use_extension(ext):
            out = fn(*xs)
        w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
        grads = torch.autograd.grad((out * w).sum(), [x for x in xs if x.requires_grad], allow_unused=True)
        results.append((out, grads))
    return results


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("dtype", DTYPES)
def test_blur_and_adjoint_match_ref(data, dtype, device):
    A, u, y = make(data, dtype, device)
    (o1, g1), (o2, g2) = both(lambda x: O.blur(x, A.kernel, A.stride), [u])
    torch.testing.assert_close(o1, o2, **tol(dtype))
    torch.testing.assert_close(g1, g2, **tol(dtype))
    (o1, g1), (o2, g2) = both(lambda v: O.blur_adjoint(v, A.kernel, A.stride, 50), [y])
    torch.testing.assert_close(o1, o2, **tol(dtype))
    torch.testing.assert_close(g1, g2, **tol(dtype))


@pytest.mark.parametrize("data", DATA)
def test_gradcheck_float64(data, device):
    A, u, y = make(data, torch.float64, device, B=3)
    for x in (u, y):
        x.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: torch.ops.das.blur(x, A.kernel, A.stride), (u,))
    assert torch.autograd.gradcheck(lambda v: torch.ops.das.blur_adjoint(v, A.kernel, A.stride, 50), (y,))


@pytest.mark.parametrize("data", DATA)
def test_opcheck(data, device):
    A, u, y = make(data, torch.float64, device, B=3)
    u.requires_grad_()
    torch.library.opcheck(torch.ops.das.blur.default, (u, A.kernel, A.stride))
    torch.library.opcheck(torch.ops.das.blur_adjoint.default, (y.requires_grad_(), A.kernel, A.stride, 50))


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("ext", [True, False])
def test_adjoint_dot_product(data, ext, device):
    """<A x, v> == <x, A^T v> to float64 precision."""
    A, x, v = make(data, torch.float64, device, B=16, seed=5)
    with O.use_extension(ext):
        lhs = (A(x) * v).sum()
        rhs = (x * A.adjoint(v)).sum()
    assert abs(float(lhs - rhs)) < 1e-10


def test_operator_matrix_is_the_spec_blur():
    """A's matrix: 7-tap Gaussian, sigma 0.2 in units of w, zero padding; downsample keeps 0, 4, .., 48."""
    A = O.Operator("blur", dtype=torch.float64)
    eye = torch.eye(50, dtype=torch.float64).reshape(50, 1, 50)
    M = A(eye).reshape(50, 50).T  # column j = A e_j
    k = A.kernel
    assert k.numel() == 7 and abs(float(k.sum()) - 1) < 1e-12
    h = torch.pi / 49
    assert torch.allclose(k / k[3], torch.exp(-((torch.arange(-3, 4, dtype=torch.float64) * h) ** 2) / (2 * 0.2**2)))
    assert torch.allclose(M[10, 7:14], k) and M[10, 6] == 0 and M[0, :4].sum() < 1  # zero padding at the edge
    D = O.Operator("downsample", dtype=torch.float64)
    Md = D(eye).reshape(50, 13).T
    assert torch.allclose(Md, M[0::4])


def test_noncontiguous_input_is_accepted():
    A = O.Operator("blur")
    u = torch.randn(50, 4, 1).permute(1, 2, 0)  # (4, 1, 50), not contiguous
    assert not u.is_contiguous()
    torch.testing.assert_close(torch.ops.das.blur(u, A.kernel, 1), O.blur_ref(u, A.kernel, 1))


# ---------------------------------------------------------------- bad input, one test per case
def test_rejects_wrong_dtype():
    A = O.Operator("blur")
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.das.blur(torch.zeros(2, 1, 50, dtype=torch.int64), A.kernel.long(), 1)


def test_rejects_mixed_dtypes():
    A = O.Operator("blur")
    with pytest.raises(RuntimeError, match="use one dtype"):
        torch.ops.das.blur(torch.zeros(2, 1, 50, dtype=torch.float64), A.kernel, 1)


def test_rejects_wrong_shape():
    A = O.Operator("blur")
    with pytest.raises(RuntimeError, match=r"shape \(B, 1, L\)"):
        torch.ops.das.blur(torch.zeros(2, 50), A.kernel, 1)


def test_rejects_bad_stride():
    A = O.Operator("blur")
    with pytest.raises(RuntimeError, match="stride .* must be >= 1"):
        torch.ops.das.blur(torch.zeros(2, 1, 50), A.kernel, 0)


def test_rejects_wrong_adjoint_length():
    A = O.Operator("downsample")
    with pytest.raises(RuntimeError, match="cannot have length"):
        torch.ops.das.blur_adjoint(torch.zeros(2, 1, 13), A.kernel, 4, 80)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to hold a CUDA tensor")
def test_rejects_mixed_devices():
    A = O.Operator("blur")
    with pytest.raises(RuntimeError, match="device"):
        torch.ops.das.blur(torch.zeros(2, 1, 50, device="cuda"), A.kernel, 1)
