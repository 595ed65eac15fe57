// The fused learnable gradient step of the paper's Eq. 6 on the CPU, for T trials at once:
// torch.ops.das.grad_step_batched, out = u - tau_t (A^T (A u - y) + r) with u, r (T, B, 1, L),
// y (T, B, 1, Lo) and tau (T,), and its backward grad_step_batched_backward (the gradients for u, y,
// tau and r). Each trial runs on its own (grad_step_trial), so its bits do not depend on T, on the
// other trials or on the thread count. Plain code only: A and A^T are Rows' convolutions
// (common.h), which the compiler vectorises; there is no SIMD fast path. Registered in bindings.cpp.
#include "common.h"

namespace das {

namespace {
void check_grad_step_batched(const at::Tensor& u, const at::Tensor& y, const at::Tensor& tau, const at::Tensor& r,
                             const at::Tensor& kernel, int64_t stride) {
  check_batched_signal(u, "u");
  check_batched_signal(y, "y");
  check_batched_signal(r, "r");
  check_kernel(kernel, u, stride);
  check_same(u, y, "u", "y");
  check_same(u, r, "u", "r");
  check_same(u, tau, "u", "tau");
  const int64_t T = u.size(0), B = u.size(1), Lo = blurred_length(u.size(3), stride);
  TORCH_CHECK(tau.dim() == 1 && tau.size(0) == T, "das: tau must hold one step size per trial, shape (", T,
              ",), got ", tau.sizes());
  TORCH_CHECK(r.sizes() == u.sizes(), "das: r must have the shape of u ", u.sizes(), ", got ", r.sizes());
  TORCH_CHECK(y.size(0) == T && y.size(1) == B && y.size(3) == Lo, "das: y must have shape (", T, ", ", B, ", 1, ",
              Lo, ") = A u's shape for stride ", stride, ", got ", y.sizes());
}

// g = A^T (A u - y) on padded rows; z holds the zero-filled residual
template <typename scalar_t>
void residual_adjoint(const Rows<scalar_t>& R, const scalar_t* upad, const scalar_t* y, const scalar_t* k,
                      int64_t K, int64_t stride, int64_t Lo, scalar_t* full, scalar_t* z, scalar_t* g) {
  R.conv(upad, k, K, full, false);
  for (int64_t i = 0; i < R.n; ++i) z[i] = 0;
  for (int64_t b = 0; b < R.B; ++b)
    for (int64_t i = 0; i < Lo; ++i) z[b * R.P + R.p + i * stride] = full[b * R.P + R.p + i * stride] - y[b * Lo + i];
  for (int64_t i = 0; i < R.n; ++i) g[i] = 0;
  R.conv_transpose(z, k, K, g);
}

// One trial of Eq. 6 on its batch: out = u - tau (A^T (A u - y) + r); u, r, out (B, L), y (B, Lo).
// work holds 4 aligned rows of R.ns values. The batched op calls this once per trial, so a trial's
// numbers are the same bits whatever T and whatever the other trials. It and its backward are kept out
// of line: inlined into their one caller, GCC vectorises the general (not 3- or 7-tap) convolutions
// differently and the bits of a 5-tap kernel's gradient change.
template <typename scalar_t>
__attribute__((noinline)) void grad_step_trial(const Rows<scalar_t>& R, const scalar_t* u, const scalar_t* y,
                                               scalar_t tau, const scalar_t* r, const scalar_t* k, int64_t K,
                                               int64_t stride, int64_t Lo, scalar_t* work, scalar_t* out) {
  scalar_t *upad = work, *full = work + R.ns, *z = work + 2 * R.ns, *g = work + 3 * R.ns;
  R.pad(u, upad);
  residual_adjoint(R, upad, y, k, K, stride, Lo, full, z, g);
  const int64_t L = R.L;
  for (int64_t b = 0; b < R.B; ++b) {
    const scalar_t* gb = g + b * R.P + R.p;
    for (int64_t l = 0; l < L; ++l) out[b * L + l] = u[b * L + l] - tau * (gb[l] + r[b * L + l]);
  }
}

// One trial's gradients of grad_step for (u, y, r); returns tau's. work holds 6 aligned rows.
template <typename scalar_t>
__attribute__((noinline)) scalar_t grad_step_backward_trial(const Rows<scalar_t>& R, const scalar_t* go,
                                                            const scalar_t* u, const scalar_t* y, scalar_t tau,
                                                            const scalar_t* r, const scalar_t* kp, int64_t K,
                                                            int64_t stride, int64_t Lo, scalar_t* work,
                                                            scalar_t* gu, scalar_t* gy, scalar_t* gr) {
  using acc_t = at::acc_type<scalar_t, false>;
  scalar_t *gpad = work, *full = work + R.ns, *z = work + 2 * R.ns, *atag = work + 3 * R.ns;
  scalar_t *upad = work + 4 * R.ns, *g = work + 5 * R.ns;
  const int64_t B = R.B, L = R.L;
  // A^T A g for u's gradient, tau A g for y's
  R.pad(go, gpad);
  R.conv(gpad, kp, K, full, false);
  for (int64_t i = 0; i < R.n; ++i) z[i] = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < Lo; ++i) {
      const int64_t q = b * R.P + R.p + i * stride;
      z[q] = full[q];
      gy[b * Lo + i] = tau * full[q];
    }
  for (int64_t i = 0; i < R.n; ++i) atag[i] = 0;
  R.conv_transpose(z, kp, K, atag);
  // tau's gradient needs A^T (A u - y) + r again
  R.pad(u, upad);
  residual_adjoint(R, upad, y, kp, K, stride, Lo, full, z, g);
  acc_t acc = 0;
  for (int64_t b = 0; b < B; ++b) {
    const scalar_t *ab = atag + b * R.P + R.p, *gb = g + b * R.P + R.p;
    scalar_t row = 0;
    for (int64_t l = 0; l < L; ++l) {
      const scalar_t gv = go[b * L + l];
      gu[b * L + l] = gv - tau * ab[l];
      gr[b * L + l] = -tau * gv;
      row += gv * (gb[l] + r[b * L + l]);
    }
    acc += row;
  }
  return static_cast<scalar_t>(-acc);
}

// Trials per task of the batched grad step: one trial of B=128 is a few microseconds of work.
constexpr int64_t kStepGrain = 4;
}  // namespace

// T independent trials of Eq. 6 in one call: u, r (T,B,1,L), y (T,B,1,Lo), tau (T,) one step size
// per trial. Trials are spread over threads; each trial runs grad_step_trial on its own, so its
// result does not depend on T, on the other trials or on the number of threads.
at::Tensor grad_step_batched_cpu(const at::Tensor& u_, const at::Tensor& y_, const at::Tensor& tau_,
                                 const at::Tensor& r_, const at::Tensor& kernel_, int64_t stride) {
  check_grad_step_batched(u_, y_, tau_, r_, kernel_, stride);
  check_cpu(u_, "u");
  auto u = u_.contiguous(), y = y_.contiguous(), r = r_.contiguous(), kernel = kernel_.contiguous();
  auto tau = tau_.contiguous();
  const int64_t T = u.size(0), B = u.size(1), L = u.size(3), Lo = y.size(3), K = kernel.size(0);
  auto out = at::empty_like(u);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "das_grad_step_batched", [&] {
    const Rows<scalar_t> R(B, L, K / 2);
    const scalar_t *up = u.data_ptr<scalar_t>(), *yp = y.data_ptr<scalar_t>(), *rp = r.data_ptr<scalar_t>();
    const scalar_t *tp = tau.data_ptr<scalar_t>(), *kp = kernel.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, T, kStepGrain, [&](int64_t t0, int64_t t1) {
      Scratch<scalar_t> work(4 * R.ns);
      for (int64_t t = t0; t < t1; ++t)
        grad_step_trial(R, up + t * B * L, yp + t * B * Lo, tp[t], rp + t * B * L, kp, K, stride, Lo, work.data(),
                        op + t * B * L);
    });
  });
  return out;
}

// Gradients of grad_step_batched for (u, y, tau, r); tau's gradient is (T,), one sum per trial.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> grad_step_batched_backward_cpu(
    const at::Tensor& go_, const at::Tensor& u_, const at::Tensor& y_, const at::Tensor& tau_, const at::Tensor& r_,
    const at::Tensor& kernel_, int64_t stride) {
  check_grad_step_batched(u_, y_, tau_, r_, kernel_, stride);
  check_cpu(u_, "u");
  TORCH_CHECK(go_.sizes() == u_.sizes(), "das: grad_out must have the shape of u ", u_.sizes(), ", got ",
              go_.sizes());
  check_same(u_, go_, "u", "grad_out");
  auto go = go_.contiguous(), u = u_.contiguous(), y = y_.contiguous(), r = r_.contiguous();
  auto kernel = kernel_.contiguous(), tau = tau_.contiguous();
  const int64_t T = u.size(0), B = u.size(1), L = u.size(3), Lo = y.size(3), K = kernel.size(0);
  auto gu = at::empty_like(u), gy = at::empty_like(y), gr = at::empty_like(r), gtau = at::empty_like(tau);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "das_grad_step_batched_backward", [&] {
    const Rows<scalar_t> R(B, L, K / 2);
    const scalar_t *gop = go.data_ptr<scalar_t>(), *up = u.data_ptr<scalar_t>(), *yp = y.data_ptr<scalar_t>();
    const scalar_t *rp = r.data_ptr<scalar_t>(), *tp = tau.data_ptr<scalar_t>(), *kp = kernel.data_ptr<scalar_t>();
    scalar_t *gup = gu.data_ptr<scalar_t>(), *gyp = gy.data_ptr<scalar_t>(), *grp = gr.data_ptr<scalar_t>();
    scalar_t* gtp = gtau.data_ptr<scalar_t>();
    at::parallel_for(0, T, kStepGrain, [&](int64_t t0, int64_t t1) {
      Scratch<scalar_t> work(6 * R.ns);
      for (int64_t t = t0; t < t1; ++t)
        gtp[t] = grad_step_backward_trial(R, gop + t * B * L, up + t * B * L, yp + t * B * Lo, tp[t], rp + t * B * L,
                                          kp, K, stride, Lo, work.data(), gup + t * B * L, gyp + t * B * Lo,
                                          grp + t * B * L);
    });
  });
  return {gu, gy, gtau, gr};
}

}  // namespace das
