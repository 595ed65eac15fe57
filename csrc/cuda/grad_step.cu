// The fused gradient step of the paper's Eq. 6 on the GPU, for T trials at once
// (torch.ops.das.grad_step_batched and grad_step_batched_backward): u, r (T, B, 1, L), y (T, B, 1, Lo),
// tau (T,). The kernels run the per-sample blur code of common.cuh over the T*B rows, one thread per
// sample; a row's trial only picks its tau. Registered in bindings.cu.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <tuple>

#include "common.cuh"

namespace das {

namespace {

// residual[b, i] = (A u)[i] - y[b, i]
template <typename scalar_t>
__global__ void residual_kernel(const scalar_t* u, const scalar_t* y, const scalar_t* k, int64_t K, int64_t B,
                                int64_t L, int64_t s, int64_t Lo, scalar_t* res) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= B * Lo) return;
  const int64_t b = idx / Lo, i = idx % Lo;
  res[idx] = blur_at(u + b * L, k, K, L, s, i) - y[idx];
}

// Batched: rows b of trial b / rows_per_trial, each trial with its own tau.
// out = u - tau[t] * (A^T res + r)
template <typename scalar_t>
__global__ void grad_step_batched_kernel(const scalar_t* u, const scalar_t* res, const scalar_t* tau,
                                         const scalar_t* r, const scalar_t* k, int64_t K, int64_t rows,
                                         int64_t rows_per_trial, int64_t L, int64_t s, int64_t Lo, scalar_t* out) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= rows * L) return;
  const int64_t b = idx / L, j = idx % L;
  out[idx] = u[idx] - tau[b / rows_per_trial] * (adjoint_at(res + b * Lo, k, K, s, Lo, j) + r[idx]);
}

// gu = g - tau[t] A^T A g, gr = -tau[t] g, prod = -g * (A^T res + r) (summed per trial for tau's gradient)
template <typename scalar_t>
__global__ void grad_step_batched_backward_kernel(const scalar_t* g, const scalar_t* ag, const scalar_t* res,
                                                  const scalar_t* tau, const scalar_t* r, const scalar_t* k,
                                                  int64_t K, int64_t rows, int64_t rows_per_trial, int64_t L,
                                                  int64_t s, int64_t Lo, scalar_t* gu, scalar_t* gr,
                                                  scalar_t* prod) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= rows * L) return;
  const int64_t b = idx / L, j = idx % L;
  const scalar_t t = tau[b / rows_per_trial];
  gu[idx] = g[idx] - t * adjoint_at(ag + b * Lo, k, K, s, Lo, j);
  gr[idx] = -t * g[idx];
  prod[idx] = -g[idx] * (adjoint_at(res + b * Lo, k, K, s, Lo, j) + r[idx]);
}

// out[i] = tau[t] * x[i] with per_trial consecutive values per trial
template <typename scalar_t>
__global__ void scale_batched_kernel(const scalar_t* x, const scalar_t* tau, int64_t n, int64_t per_trial,
                                     scalar_t* out) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx < n) out[idx] = tau[idx / per_trial] * x[idx];
}

// u, r (T, B, 1, L), y (T, B, 1, Lo), tau (T,): trials first, one step size per trial.
void check_batched(const at::Tensor& u, const at::Tensor& y, const at::Tensor& tau, const at::Tensor& r,
                   const at::Tensor& kernel, int64_t stride) {
  TORCH_CHECK(u.dim() == 4 && u.size(2) == 1, "das: u must have shape (T, B, 1, L), trials first, got ", u.sizes());
  TORCH_CHECK(u.is_cuda() && kernel.is_cuda(), "das: CUDA kernel called with a tensor that is not on the GPU");
  TORCH_CHECK(kernel.dim() == 1 && kernel.size(0) % 2 == 1, "das: kernel must be 1-D of odd length");
  TORCH_CHECK(u.scalar_type() == kernel.scalar_type(), "das: signal and kernel must share one dtype");
  TORCH_CHECK(stride >= 1, "das: stride (the subsampling factor) must be >= 1, got ", stride);
  const int64_t T = u.size(0), B = u.size(1), Lo = blurred_length(u.size(3), stride);
  TORCH_CHECK(y.is_cuda() && r.is_cuda() && tau.is_cuda(), "das: y, r and tau must be on the GPU with u");
  TORCH_CHECK(y.scalar_type() == u.scalar_type() && r.scalar_type() == u.scalar_type() &&
                  tau.scalar_type() == u.scalar_type(),
              "das: u, y, r and tau must share one dtype");
  TORCH_CHECK(tau.dim() == 1 && tau.size(0) == T, "das: tau must hold one step size per trial, shape (", T,
              ",), got ", tau.sizes());
  TORCH_CHECK(r.sizes() == u.sizes(), "das: r must have the shape of u ", u.sizes(), ", got ", r.sizes());
  TORCH_CHECK(y.dim() == 4 && y.size(0) == T && y.size(1) == B && y.size(2) == 1 && y.size(3) == Lo,
              "das: y must have shape (", T, ", ", B, ", 1, ", Lo, ") = A u's shape for stride ", stride, ", got ",
              y.sizes());
}

}  // namespace

at::Tensor grad_step_batched_cuda(const at::Tensor& u_, const at::Tensor& y_, const at::Tensor& tau_,
                                  const at::Tensor& r_, const at::Tensor& kernel_, int64_t stride) {
  check_batched(u_, y_, tau_, r_, kernel_, stride);
  const c10::cuda::CUDAGuard guard(u_.device());
  auto u = u_.contiguous(), y = y_.contiguous(), r = r_.contiguous(), kernel = kernel_.contiguous();
  auto tau = tau_.contiguous();
  const int64_t T = u.size(0), B = u.size(1), L = u.size(3), K = kernel.size(0), Lo = blurred_length(L, stride);
  const int64_t rows = T * B;
  auto res = at::empty({T, B, 1, Lo}, u.options());
  auto out = at::empty_like(u);
  if (rows == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "das_grad_step_batched_cuda", [&] {
    const scalar_t* kp = kernel.data_ptr<scalar_t>();
    residual_kernel<scalar_t><<<blocks_for(rows * Lo), kThreads, 0, stream>>>(
        u.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), kp, K, rows, L, stride, Lo, res.data_ptr<scalar_t>());
    grad_step_batched_kernel<scalar_t><<<blocks_for(rows * L), kThreads, 0, stream>>>(
        u.data_ptr<scalar_t>(), res.data_ptr<scalar_t>(), tau.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), kp, K,
        rows, B, L, stride, Lo, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> grad_step_batched_backward_cuda(
    const at::Tensor& go_, const at::Tensor& u_, const at::Tensor& y_, const at::Tensor& tau_, const at::Tensor& r_,
    const at::Tensor& kernel_, int64_t stride) {
  check_batched(u_, y_, tau_, r_, kernel_, stride);
  TORCH_CHECK(go_.sizes() == u_.sizes() && go_.is_cuda() && go_.scalar_type() == u_.scalar_type(),
              "das: grad_out must have the shape of u ", u_.sizes(), " on its device and dtype, got ", go_.sizes());
  const c10::cuda::CUDAGuard guard(u_.device());
  auto go = go_.contiguous(), u = u_.contiguous(), y = y_.contiguous(), r = r_.contiguous();
  auto kernel = kernel_.contiguous(), tau = tau_.contiguous();
  const int64_t T = u.size(0), B = u.size(1), L = u.size(3), K = kernel.size(0), Lo = blurred_length(L, stride);
  const int64_t rows = T * B;
  auto ag = at::empty({T, B, 1, Lo}, u.options()), res = at::empty({T, B, 1, Lo}, u.options());
  auto gu = at::empty_like(u), gr = at::empty_like(u), prod = at::empty_like(u), gy = at::empty_like(y);
  if (rows == 0) return {gu, gy, at::zeros_like(tau), gr};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "das_grad_step_batched_backward_cuda", [&] {
    const scalar_t* kp = kernel.data_ptr<scalar_t>();
    blur_kernel<scalar_t><<<blocks_for(rows * Lo), kThreads, 0, stream>>>(go.data_ptr<scalar_t>(), kp, K, rows, L,
                                                                           stride, Lo, ag.data_ptr<scalar_t>());
    residual_kernel<scalar_t><<<blocks_for(rows * Lo), kThreads, 0, stream>>>(
        u.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), kp, K, rows, L, stride, Lo, res.data_ptr<scalar_t>());
    grad_step_batched_backward_kernel<scalar_t><<<blocks_for(rows * L), kThreads, 0, stream>>>(
        go.data_ptr<scalar_t>(), ag.data_ptr<scalar_t>(), res.data_ptr<scalar_t>(), tau.data_ptr<scalar_t>(),
        r.data_ptr<scalar_t>(), kp, K, rows, B, L, stride, Lo, gu.data_ptr<scalar_t>(), gr.data_ptr<scalar_t>(),
        prod.data_ptr<scalar_t>());
    scale_batched_kernel<scalar_t><<<blocks_for(rows * Lo), kThreads, 0, stream>>>(
        ag.data_ptr<scalar_t>(), tau.data_ptr<scalar_t>(), rows * Lo, B * Lo, gy.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // one plain sum per trial (no atomics): deterministic, and no sum crosses trials
  auto gtau = prod.reshape({T, B * L}).sum(1);
  return {gu, gy, gtau, gr};
}

}  // namespace das
