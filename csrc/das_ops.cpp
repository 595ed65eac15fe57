// CPU kernels of the das operators: the blur operator A and its adjoint A^T, the fused
// learnable-gradient-descent step of the paper's Eq. 6, and a bank of K 2-layer CNNs
// n(u; theta) = conv(k) -> BatchNorm -> ReLU -> conv(k) that read the same input.
//
// Shapes: signals are (B, 1, L); the blur kernel is (k,) with k odd, zero padding k/2,
// and `stride` keeps every stride-th sample starting at index 0 (A maps L to (L-1)/stride+1).
// The Python wrappers in das/operators.py register autograd and fake kernels.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <Python.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

extern "C" {
// Lets `import das._C` load this library, which registers the operators below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace das {

namespace {

int64_t blurred_length(int64_t length, int64_t stride) { return (length - 1) / stride + 1; }

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "das: ", name,
              " must be float32 or float64, got ", t.scalar_type(),
              "; convert it with .float() or .double()");
}

void check_signal(const at::Tensor& t, const char* name) {
  check_float(t, name);
  TORCH_CHECK(t.dim() == 3 && t.size(1) == 1, "das: ", name,
              " must have shape (B, 1, L), got ", t.sizes(),
              "; add the channel dimension with .unsqueeze(1)");
}

void check_same(const at::Tensor& a, const at::Tensor& b, const char* name_a, const char* name_b) {
  TORCH_CHECK(a.device() == b.device(), "das: ", name_a, " is on ", a.device(), " but ", name_b,
              " is on ", b.device(), "; move both to one device with .to(device)");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "das: ", name_a, " is ", a.scalar_type(),
              " but ", name_b, " is ", b.scalar_type(), "; use one dtype for both");
}

void check_kernel(const at::Tensor& kernel, const at::Tensor& x, int64_t stride) {
  TORCH_CHECK(kernel.dim() == 1 && kernel.size(0) % 2 == 1, "das: kernel must be 1-D of odd length, got shape ",
              kernel.sizes());
  check_same(kernel, x, "kernel", "the signal");
  TORCH_CHECK(stride >= 1, "das: stride (the subsampling factor) must be >= 1, got ", stride);
}

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "das: ", name, " is on ", t.device(),
              " but this kernel runs on the CPU; the CUDA kernels are built only when torch has CUDA");
}

// A x for one sample: out[i] = sum_t k[t] x[i*s + t - p].
template <typename scalar_t>
inline void blur_row(const scalar_t* x, const scalar_t* k, int64_t K, int64_t L, int64_t s, int64_t Lo,
                     scalar_t* out) {
  const int64_t p = K / 2;
  for (int64_t i = 0; i < Lo; ++i) {
    scalar_t acc = 0;
    const int64_t c = i * s - p;
    const int64_t t0 = std::max<int64_t>(0, -c), t1 = std::min<int64_t>(K, L - c);
    for (int64_t t = t0; t < t1; ++t) acc += k[t] * x[c + t];
    out[i] = acc;
  }
}

// A^T v for one sample: out[j] = sum over (i, t) with i*s + t - p == j of k[t] v[i].
template <typename scalar_t>
inline void adjoint_row(const scalar_t* v, const scalar_t* k, int64_t K, int64_t L, int64_t s, int64_t Lo,
                        scalar_t* out) {
  const int64_t p = K / 2;
  for (int64_t j = 0; j < L; ++j) out[j] = 0;
  for (int64_t i = 0; i < Lo; ++i) {
    const int64_t c = i * s - p;
    const int64_t t0 = std::max<int64_t>(0, -c), t1 = std::min<int64_t>(K, L - c);
    const scalar_t vi = v[i];
    for (int64_t t = t0; t < t1; ++t) out[c + t] += k[t] * vi;
  }
}

// Row-wise reductions in the element type; -fassociative-math lets the compiler vectorise them,
// and callers add the row results up in the accumulate type.
template <typename scalar_t>
inline scalar_t row_sum(const scalar_t* __restrict__ a, int64_t n) {
  scalar_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i];
  return s;
}

template <typename scalar_t>
inline scalar_t row_dot(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b, int64_t n) {
  scalar_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

at::Tensor blur_cpu(const at::Tensor& x_, const at::Tensor& kernel_, int64_t stride) {
  check_signal(x_, "x");
  check_kernel(kernel_, x_, stride);
  check_cpu(x_, "x");
  auto x = x_.contiguous();
  auto kernel = kernel_.contiguous();
  const int64_t B = x.size(0), L = x.size(2), K = kernel.size(0);
  const int64_t Lo = blurred_length(L, stride);
  auto out = at::empty({B, 1, Lo}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "das_blur", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* kp = kernel.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, B, 64, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) blur_row(xp + b * L, kp, K, L, stride, Lo, op + b * Lo);
    });
  });
  return out;
}

at::Tensor blur_adjoint_cpu(const at::Tensor& v_, const at::Tensor& kernel_, int64_t stride, int64_t length) {
  check_signal(v_, "v");
  check_kernel(kernel_, v_, stride);
  check_cpu(v_, "v");
  TORCH_CHECK(length >= 1 && blurred_length(length, stride) == v_.size(2), "das: blur_adjoint of a signal of length ",
              v_.size(2), " cannot have length ", length, " with stride ", stride,
              "; pass the length of the signal that blur() was applied to");
  auto v = v_.contiguous();
  auto kernel = kernel_.contiguous();
  const int64_t B = v.size(0), Lo = v.size(2), K = kernel.size(0);
  auto out = at::empty({B, 1, length}, v.options());
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "das_blur_adjoint", [&] {
    const scalar_t* vp = v.data_ptr<scalar_t>();
    const scalar_t* kp = kernel.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, B, 64, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) adjoint_row(vp + b * Lo, kp, K, length, stride, Lo, op + b * length);
    });
  });
  return out;
}

namespace {
void check_grad_step(const at::Tensor& u, const at::Tensor& y, const at::Tensor& tau, const at::Tensor& r,
                     const at::Tensor& kernel, int64_t stride) {
  check_signal(u, "u");
  check_signal(y, "y");
  check_signal(r, "r");
  check_kernel(kernel, u, stride);
  check_same(u, y, "u", "y");
  check_same(u, r, "u", "r");
  check_same(u, tau, "u", "tau");
  TORCH_CHECK(tau.numel() == 1, "das: tau must hold one number (the step size), got shape ", tau.sizes());
  TORCH_CHECK(r.sizes() == u.sizes(), "das: r must have the shape of u ", u.sizes(), ", got ", r.sizes());
  TORCH_CHECK(y.size(0) == u.size(0) && y.size(2) == blurred_length(u.size(2), stride),
              "das: y must have shape (", u.size(0), ", 1, ", blurred_length(u.size(2), stride),
              ") = A u's shape for stride ", stride, ", got ", y.sizes());
}
}  // namespace

// u - tau * (A^T (A u - y) + r): Eq. 6 with r = n(u; theta).
at::Tensor grad_step_cpu(const at::Tensor& u_, const at::Tensor& y_, const at::Tensor& tau_, const at::Tensor& r_,
                         const at::Tensor& kernel_, int64_t stride) {
  check_grad_step(u_, y_, tau_, r_, kernel_, stride);
  check_cpu(u_, "u");
  auto u = u_.contiguous(), y = y_.contiguous(), r = r_.contiguous(), kernel = kernel_.contiguous();
  const int64_t B = u.size(0), L = u.size(2), Lo = y.size(2), K = kernel.size(0);
  auto out = at::empty_like(u);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "das_grad_step", [&] {
    const scalar_t tau = tau_.item<scalar_t>();
    const scalar_t *up = u.data_ptr<scalar_t>(), *yp = y.data_ptr<scalar_t>(), *rp = r.data_ptr<scalar_t>();
    const scalar_t* kp = kernel.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, B, 64, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> res(Lo), g(L);
      for (int64_t b = b0; b < b1; ++b) {
        blur_row(up + b * L, kp, K, L, stride, Lo, res.data());
        for (int64_t i = 0; i < Lo; ++i) res[i] -= yp[b * Lo + i];
        adjoint_row(res.data(), kp, K, L, stride, Lo, g.data());
        for (int64_t j = 0; j < L; ++j) op[b * L + j] = up[b * L + j] - tau * (g[j] + rp[b * L + j]);
      }
    });
  });
  return out;
}

// Gradients of grad_step for (u, y, tau, r); tau's gradient has tau's shape.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> grad_step_backward_cpu(
    const at::Tensor& go_, const at::Tensor& u_, const at::Tensor& y_, const at::Tensor& tau_, const at::Tensor& r_,
    const at::Tensor& kernel_, int64_t stride) {
  check_grad_step(u_, y_, tau_, r_, kernel_, stride);
  check_cpu(u_, "u");
  TORCH_CHECK(go_.sizes() == u_.sizes(), "das: grad_out must have the shape of u");
  auto go = go_.contiguous(), u = u_.contiguous(), y = y_.contiguous(), r = r_.contiguous();
  auto kernel = kernel_.contiguous();
  const int64_t B = u.size(0), L = u.size(2), Lo = y.size(2), K = kernel.size(0);
  auto gu = at::empty_like(u), gy = at::empty_like(y), gr = at::empty_like(r);
  auto partial = at::empty({B}, u.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "das_grad_step_backward", [&] {
    const scalar_t tau = tau_.item<scalar_t>();
    const scalar_t *gop = go.data_ptr<scalar_t>(), *up = u.data_ptr<scalar_t>(), *yp = y.data_ptr<scalar_t>();
    const scalar_t *rp = r.data_ptr<scalar_t>(), *kp = kernel.data_ptr<scalar_t>();
    scalar_t *gup = gu.data_ptr<scalar_t>(), *gyp = gy.data_ptr<scalar_t>(), *grp = gr.data_ptr<scalar_t>();
    double* pp = partial.data_ptr<double>();
    at::parallel_for(0, B, 64, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> ag(Lo), atag(L), res(Lo), g(L);
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* gb = gop + b * L;
        blur_row(gb, kp, K, L, stride, Lo, ag.data());
        adjoint_row(ag.data(), kp, K, L, stride, Lo, atag.data());
        blur_row(up + b * L, kp, K, L, stride, Lo, res.data());
        for (int64_t i = 0; i < Lo; ++i) {
          res[i] -= yp[b * Lo + i];
          gyp[b * Lo + i] = tau * ag[i];
        }
        adjoint_row(res.data(), kp, K, L, stride, Lo, g.data());
        double acc = 0;
        for (int64_t j = 0; j < L; ++j) {
          gup[b * L + j] = gb[j] - tau * atag[j];
          grp[b * L + j] = -tau * gb[j];
          acc += static_cast<double>(gb[j]) * static_cast<double>(g[j] + rp[b * L + j]);
        }
        pp[b] = -acc;
      }
    });
  });
  auto gtau = partial.sum().to(u.scalar_type()).reshape(tau_.sizes());
  return {gu, gy, gtau, gr};
}

// ---------------------------------------------------------------------------------------
// A bank of K CNNs on one input: out[k] = conv2_k(relu(bn_k(conv1_k(u)))).
// u (B,1,L); w1 (K,C,k1); b1, gamma, beta (K,C); w2 (K,C,k2); b2 (K,);
// running_mean, running_var (K,C) are read in eval mode only (the wrapper updates them).
// Returns out (K,B,1,L), xhat (K,B,C,L) (the normalised pre-activation, saved for backward),
// mean (K,C), var (K,C) (batch statistics in training, biased var; the running ones in eval),
// rstd (K,C).
namespace {
void check_cnn(const at::Tensor& u, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& gamma,
               const at::Tensor& beta, const at::Tensor& w2, const at::Tensor& b2) {
  check_signal(u, "u");
  TORCH_CHECK(w1.dim() == 3 && w1.size(2) % 2 == 1, "das: cnn w1 must be (K, C, k) with k odd, got ", w1.sizes());
  const int64_t K = w1.size(0), C = w1.size(1);
  TORCH_CHECK(w2.dim() == 3 && w2.size(0) == K && w2.size(1) == C && w2.size(2) % 2 == 1,
              "das: cnn w2 must be (", K, ", ", C, ", k) with k odd, got ", w2.sizes());
  for (auto* t : {&b1, &gamma, &beta})
    TORCH_CHECK(t->dim() == 2 && t->size(0) == K && t->size(1) == C, "das: cnn b1, gamma and beta must be (", K,
                ", ", C, "), got ", t->sizes());
  TORCH_CHECK(b2.dim() == 1 && b2.size(0) == K, "das: cnn b2 must be (", K, ",), got ", b2.sizes());
  for (auto* t : {&w1, &b1, &gamma, &beta, &w2, &b2}) check_same(u, *t, "u", "a cnn parameter");
  check_cpu(u, "u");
}
}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cnn_forward_cpu(
    const at::Tensor& u_, const at::Tensor& w1_, const at::Tensor& b1_, const at::Tensor& gamma_,
    const at::Tensor& beta_, const at::Tensor& w2_, const at::Tensor& b2_, const at::Tensor& running_mean,
    const at::Tensor& running_var, bool training, double eps) {
  check_cnn(u_, w1_, b1_, gamma_, beta_, w2_, b2_);
  auto u = u_.contiguous(), w1 = w1_.contiguous(), b1 = b1_.contiguous(), gamma = gamma_.contiguous();
  auto beta = beta_.contiguous(), w2 = w2_.contiguous(), b2 = b2_.contiguous();
  const int64_t B = u.size(0), L = u.size(2), K = w1.size(0), C = w1.size(1);
  const int64_t k1 = w1.size(2), k2 = w2.size(2), p1 = k1 / 2, p2 = k2 / 2;
  TORCH_CHECK(training || (running_mean.sizes() == gamma.sizes() && running_var.sizes() == gamma.sizes()),
              "das: cnn in eval mode needs running_mean and running_var of shape (K, C)");
  auto out = at::empty({K, B, 1, L}, u.options());
  auto xhat = at::empty({K, B, C, L}, u.options());
  at::Tensor mean, var;
  if (training) {
    mean = at::empty({K, C}, u.options());
    var = at::empty({K, C}, u.options());
  } else {
    mean = running_mean.to(u.scalar_type()).contiguous().clone();  // outputs never alias inputs
    var = running_var.to(u.scalar_type()).contiguous().clone();
  }
  auto rstd = at::empty({K, C}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "das_cnn_forward", [&] {
    using acc_t = at::acc_type<scalar_t, false>;
    const scalar_t *up = u.data_ptr<scalar_t>(), *w1p = w1.data_ptr<scalar_t>(), *b1p = b1.data_ptr<scalar_t>();
    const scalar_t *gp = gamma.data_ptr<scalar_t>(), *bp = beta.data_ptr<scalar_t>();
    const scalar_t *w2p = w2.data_ptr<scalar_t>(), *b2p = b2.data_ptr<scalar_t>();
    scalar_t *op = out.data_ptr<scalar_t>(), *hp = xhat.data_ptr<scalar_t>();
    scalar_t *mp = mean.data_ptr<scalar_t>(), *vp = var.data_ptr<scalar_t>(), *rp = rstd.data_ptr<scalar_t>();
    // conv1 into xhat's storage: h[k,b,c,l] = b1 + sum_t w1[t] u[l+t-p1]
    at::parallel_for(0, K * B, 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t k = i / B, b = i % B;
        const scalar_t* __restrict__ ub = up + b * L;
        for (int64_t c = 0; c < C; ++c) {
          scalar_t* __restrict__ h = hp + (i * C + c) * L;
          const scalar_t bias = b1p[k * C + c];
          for (int64_t l = 0; l < L; ++l) h[l] = bias;
          for (int64_t t = 0; t < k1; ++t) {
            const scalar_t w = w1p[(k * C + c) * k1 + t];
            const int64_t off = t - p1, l0 = std::max<int64_t>(0, -off), l1 = std::min<int64_t>(L, L - off);
            for (int64_t l = l0; l < l1; ++l) h[l] += w * ub[l + off];
          }
        }
      }
    });
    // statistics per (k, c) over (b, l), then normalise in place
    const acc_t n = static_cast<acc_t>(B * L);
    at::parallel_for(0, K * C, 4, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t k = j / C, c = j % C;
        acc_t mu, va;
        if (training) {
          acc_t s = 0;
          for (int64_t b = 0; b < B; ++b) s += row_sum(hp + ((k * B + b) * C + c) * L, L);
          mu = s / n;
          acc_t s2 = 0;
          const scalar_t m = static_cast<scalar_t>(mu);
          for (int64_t b = 0; b < B; ++b) {
            const scalar_t* __restrict__ h = hp + ((k * B + b) * C + c) * L;
            scalar_t r = 0;
            for (int64_t l = 0; l < L; ++l) r += (h[l] - m) * (h[l] - m);
            s2 += r;
          }
          va = s2 / n;
          mp[j] = static_cast<scalar_t>(mu);
          vp[j] = static_cast<scalar_t>(va);
        } else {
          mu = mp[j];
          va = vp[j];
        }
        const scalar_t rs = static_cast<scalar_t>(1.0 / std::sqrt(va + eps));
        rp[j] = rs;
        const scalar_t m = static_cast<scalar_t>(mu);
        for (int64_t b = 0; b < B; ++b) {
          scalar_t* h = hp + ((k * B + b) * C + c) * L;
          for (int64_t l = 0; l < L; ++l) h[l] = (h[l] - m) * rs;
        }
      }
    });
    // relu(gamma * xhat + beta), then conv2 (C -> 1)
    at::parallel_for(0, K * B, 16, [&](int64_t i0, int64_t i1) {
      std::vector<scalar_t> a(L);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t k = i / B;
        scalar_t* __restrict__ o = op + i * L;
        scalar_t* __restrict__ ap = a.data();
        const scalar_t bias = b2p[k];
        for (int64_t l = 0; l < L; ++l) o[l] = bias;
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* h = hp + (i * C + c) * L;
          const scalar_t g = gp[k * C + c], be = bp[k * C + c];
          for (int64_t l = 0; l < L; ++l) a[l] = std::max<scalar_t>(g * h[l] + be, scalar_t(0));
          for (int64_t t = 0; t < k2; ++t) {
            const scalar_t w = w2p[(k * C + c) * k2 + t];
            const int64_t off = t - p2, l0 = std::max<int64_t>(0, -off), l1 = std::min<int64_t>(L, L - off);
            for (int64_t l = l0; l < l1; ++l) o[l] += w * ap[l + off];
          }
        }
      }
    });
  });
  return {out, xhat, mean, var, rstd};
}

// Returns the gradients for (u, w1, b1, gamma, beta, w2, b2).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cnn_backward_cpu(
    const at::Tensor& go_, const at::Tensor& u_, const at::Tensor& xhat_, const at::Tensor& rstd_,
    const at::Tensor& w1_, const at::Tensor& gamma_, const at::Tensor& beta_, const at::Tensor& w2_, bool training) {
  check_signal(u_, "u");
  check_cpu(u_, "u");
  const int64_t B = u_.size(0), L = u_.size(2), K = w1_.size(0), C = w1_.size(1);
  TORCH_CHECK(go_.dim() == 4 && go_.size(0) == K && go_.size(1) == B && go_.size(3) == L,
              "das: cnn_backward grad_out must be (K, B, 1, L)");
  TORCH_CHECK(xhat_.dim() == 4 && xhat_.size(0) == K && xhat_.size(1) == B && xhat_.size(2) == C,
              "das: cnn_backward xhat must be (K, B, C, L)");
  auto go = go_.contiguous(), u = u_.contiguous(), xhat = xhat_.contiguous(), rstd = rstd_.contiguous();
  auto w1 = w1_.contiguous(), gamma = gamma_.contiguous(), beta = beta_.contiguous(), w2 = w2_.contiguous();
  const int64_t k1 = w1.size(2), k2 = w2.size(2), p1 = k1 / 2, p2 = k2 / 2;
  auto du = at::empty_like(u);
  auto dw1 = at::empty_like(w1), db1 = at::empty({K, C}, u.options());
  auto dgamma = at::empty({K, C}, u.options()), dbeta = at::empty({K, C}, u.options());
  auto dw2 = at::empty_like(w2), db2 = at::empty({K}, u.options());
  auto dh = at::empty({K, B, C, L}, u.options());
  // per-(k,b) partial sums, reduced in a fixed order so results do not depend on threads
  auto part_w2 = at::empty({K, B, C, k2}, u.options());
  auto part_gb = at::empty({K, B, C, 2}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "das_cnn_backward", [&] {
    using acc_t = at::acc_type<scalar_t, false>;
    const scalar_t *gop = go.data_ptr<scalar_t>(), *up = u.data_ptr<scalar_t>(), *xp = xhat.data_ptr<scalar_t>();
    const scalar_t *rsp = rstd.data_ptr<scalar_t>(), *w1p = w1.data_ptr<scalar_t>();
    const scalar_t *gp = gamma.data_ptr<scalar_t>(), *bp = beta.data_ptr<scalar_t>(), *w2p = w2.data_ptr<scalar_t>();
    scalar_t *dup = du.data_ptr<scalar_t>(), *dw1p = dw1.data_ptr<scalar_t>(), *db1p = db1.data_ptr<scalar_t>();
    scalar_t *dgp = dgamma.data_ptr<scalar_t>(), *dbp = dbeta.data_ptr<scalar_t>();
    scalar_t *dw2p = dw2.data_ptr<scalar_t>(), *db2p = db2.data_ptr<scalar_t>(), *dhp = dh.data_ptr<scalar_t>();
    scalar_t *pw2 = part_w2.data_ptr<scalar_t>(), *pgb = part_gb.data_ptr<scalar_t>();
    // conv2 and relu backward per (k, b): dxhat = gamma * relu'(z) * (conv2^T go)
    at::parallel_for(0, K * B, 16, [&](int64_t i0, int64_t i1) {
      std::vector<scalar_t> a(L), da(L);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t k = i / B;
        const scalar_t* __restrict__ g = gop + i * L;
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* x = xp + (i * C + c) * L;
          const scalar_t ga = gp[k * C + c], be = bp[k * C + c];
          for (int64_t l = 0; l < L; ++l) a[l] = std::max<scalar_t>(ga * x[l] + be, scalar_t(0));
          for (int64_t l = 0; l < L; ++l) da[l] = 0;
          for (int64_t t = 0; t < k2; ++t) {
            const scalar_t w = w2p[(k * C + c) * k2 + t];
            const int64_t off = t - p2, l0 = std::max<int64_t>(0, -off), l1 = std::min<int64_t>(L, L - off);
            pw2[(i * C + c) * k2 + t] = row_dot(g + l0, a.data() + l0 + off, l1 - l0);
            scalar_t* __restrict__ dap = da.data() + off;
            for (int64_t l = l0; l < l1; ++l) dap[l] += w * g[l];
          }
          scalar_t* d = dhp + (i * C + c) * L;
          scalar_t sg = 0, sb = 0;
          for (int64_t l = 0; l < L; ++l) {
            const scalar_t dz = da[l] * static_cast<scalar_t>(a[l] > 0);
            sg += dz * x[l];
            sb += dz;
            d[l] = dz * ga;
          }
          pgb[(i * C + c) * 2] = static_cast<scalar_t>(sg);
          pgb[(i * C + c) * 2 + 1] = static_cast<scalar_t>(sb);
        }
      }
    });
    // reductions over b, and BatchNorm backward per (k, c); then conv1's weight gradient
    const acc_t n = static_cast<acc_t>(B * L);
    at::parallel_for(0, K * C, 4, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t k = j / C, c = j % C;
        acc_t sg = 0, sb = 0;
        std::vector<acc_t> sw2(k2, 0);
        for (int64_t b = 0; b < B; ++b) {
          const int64_t i = (k * B + b) * C + c;
          sg += pgb[i * 2];
          sb += pgb[i * 2 + 1];
          for (int64_t t = 0; t < k2; ++t) sw2[t] += pw2[i * k2 + t];
        }
        dgp[j] = static_cast<scalar_t>(sg);
        dbp[j] = static_cast<scalar_t>(sb);
        for (int64_t t = 0; t < k2; ++t) dw2p[j * k2 + t] = static_cast<scalar_t>(sw2[t]);
        const scalar_t rs = rsp[j];
        if (training) {
          // dh = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
          acc_t s1 = 0, s2 = 0;
          for (int64_t b = 0; b < B; ++b) {
            const int64_t o = ((k * B + b) * C + c) * L;
            s1 += row_sum(dhp + o, L);
            s2 += row_dot(dhp + o, xp + o, L);
          }
          const scalar_t m1 = static_cast<scalar_t>(s1 / n), m2 = static_cast<scalar_t>(s2 / n);
          for (int64_t b = 0; b < B; ++b) {
            const int64_t o = ((k * B + b) * C + c) * L;
            scalar_t* __restrict__ d = dhp + o;
            const scalar_t* __restrict__ xo = xp + o;
            for (int64_t l = 0; l < L; ++l) d[l] = rs * (d[l] - m1 - xo[l] * m2);
          }
        } else {
          for (int64_t b = 0; b < B; ++b) {
            const int64_t o = ((k * B + b) * C + c) * L;
            for (int64_t l = 0; l < L; ++l) dhp[o + l] = rs * dhp[o + l];
          }
        }
        acc_t s0 = 0;
        std::vector<acc_t> sw1(k1, 0);
        for (int64_t b = 0; b < B; ++b) {
          const scalar_t* d = dhp + ((k * B + b) * C + c) * L;
          const scalar_t* ub = up + b * L;
          s0 += row_sum(d, L);
          for (int64_t t = 0; t < k1; ++t) {
            const int64_t off = t - p1, l0 = std::max<int64_t>(0, -off), l1 = std::min<int64_t>(L, L - off);
            sw1[t] += row_dot(d + l0, ub + l0 + off, l1 - l0);
          }
        }
        db1p[j] = static_cast<scalar_t>(s0);
        for (int64_t t = 0; t < k1; ++t) dw1p[j * k1 + t] = static_cast<scalar_t>(sw1[t]);
      }
    });
    for (int64_t k = 0; k < K; ++k) {
      acc_t s = 0;
      for (int64_t b = 0; b < B; ++b) s += row_sum(gop + (k * B + b) * L, L);
      db2p[k] = static_cast<scalar_t>(s);
    }
    // du[b, l] = sum_{k, c, t} w1[k, c, t] dh[k, b, c, l - t + p1]
    at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        scalar_t* __restrict__ o = dup + b * L;
        for (int64_t l = 0; l < L; ++l) o[l] = 0;
        for (int64_t k = 0; k < K; ++k)
          for (int64_t c = 0; c < C; ++c) {
            const scalar_t* __restrict__ d = dhp + ((k * B + b) * C + c) * L;
            for (int64_t t = 0; t < k1; ++t) {
              const scalar_t w = w1p[(k * C + c) * k1 + t];
              const int64_t off = t - p1, l0 = std::max<int64_t>(0, -off), l1 = std::min<int64_t>(L, L - off);
              for (int64_t l = l0; l < l1; ++l) o[l + off] += w * d[l];
            }
          }
      }
    });
  });
  return {du, dw1, db1, dgamma, dbeta, dw2, db2};
}

TORCH_LIBRARY(das, m) {
  m.def("blur(Tensor x, Tensor kernel, int stride) -> Tensor");
  m.def("blur_adjoint(Tensor v, Tensor kernel, int stride, int length) -> Tensor");
  m.def("grad_step(Tensor u, Tensor y, Tensor tau, Tensor r, Tensor kernel, int stride) -> Tensor");
  m.def(
      "grad_step_backward(Tensor grad_out, Tensor u, Tensor y, Tensor tau, Tensor r, Tensor kernel, int stride) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "cnn_forward(Tensor u, Tensor w1, Tensor b1, Tensor gamma, Tensor beta, Tensor w2, Tensor b2, "
      "Tensor running_mean, Tensor running_var, bool training, float eps) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "cnn_backward(Tensor grad_out, Tensor u, Tensor xhat, Tensor rstd, Tensor w1, Tensor gamma, Tensor beta, "
      "Tensor w2, bool training) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(das, CPU, m) {
  m.impl("blur", &blur_cpu);
  m.impl("blur_adjoint", &blur_adjoint_cpu);
  m.impl("grad_step", &grad_step_cpu);
  m.impl("grad_step_backward", &grad_step_backward_cpu);
  m.impl("cnn_forward", &cnn_forward_cpu);
  m.impl("cnn_backward", &cnn_backward_cpu);
}

}  // namespace das
