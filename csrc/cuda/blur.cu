// The blur operator A and its adjoint A^T on the GPU (torch.ops.das.blur and blur_adjoint): signals
// (B, 1, L), one thread per output sample, launched on the current stream. The per-sample code is in
// common.cuh; the ops are registered in bindings.cu.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "common.cuh"

namespace das {

namespace {

template <typename scalar_t>
__global__ void adjoint_kernel(const scalar_t* v, const scalar_t* k, int64_t K, int64_t B, int64_t L, int64_t s,
                               int64_t Lo, scalar_t* out) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= B * L) return;
  const int64_t b = idx / L, j = idx % L;
  out[idx] = adjoint_at(v + b * Lo, k, K, s, Lo, j);
}

void check_inputs(const at::Tensor& x, const at::Tensor& kernel, int64_t stride) {
  TORCH_CHECK(x.is_cuda() && kernel.is_cuda(), "das: CUDA kernel called with a tensor that is not on the GPU");
  TORCH_CHECK(x.dim() == 3 && x.size(1) == 1, "das: signal must have shape (B, 1, L), got ", x.sizes());
  TORCH_CHECK(kernel.dim() == 1 && kernel.size(0) % 2 == 1, "das: kernel must be 1-D of odd length");
  TORCH_CHECK(x.scalar_type() == kernel.scalar_type(), "das: signal and kernel must share one dtype");
  TORCH_CHECK(stride >= 1, "das: stride (the subsampling factor) must be >= 1, got ", stride);
}

}  // namespace

at::Tensor blur_cuda(const at::Tensor& x_, const at::Tensor& kernel_, int64_t stride) {
  check_inputs(x_, kernel_, stride);
  const c10::cuda::CUDAGuard guard(x_.device());
  auto x = x_.contiguous(), kernel = kernel_.contiguous();
  const int64_t B = x.size(0), L = x.size(2), K = kernel.size(0), Lo = blurred_length(L, stride);
  auto out = at::empty({B, 1, Lo}, x.options());
  if (B == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "das_blur_cuda", [&] {
    blur_kernel<scalar_t><<<blocks_for(B * Lo), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), kernel.data_ptr<scalar_t>(), K, B, L, stride, Lo, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor blur_adjoint_cuda(const at::Tensor& v_, const at::Tensor& kernel_, int64_t stride, int64_t length) {
  check_inputs(v_, kernel_, stride);
  TORCH_CHECK(length >= 1 && blurred_length(length, stride) == v_.size(2),
              "das: blur_adjoint length does not match the signal's length and stride");
  const c10::cuda::CUDAGuard guard(v_.device());
  auto v = v_.contiguous(), kernel = kernel_.contiguous();
  const int64_t B = v.size(0), Lo = v.size(2), K = kernel.size(0);
  auto out = at::empty({B, 1, length}, v.options());
  if (B == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "das_blur_adjoint_cuda", [&] {
    adjoint_kernel<scalar_t><<<blocks_for(B * length), kThreads, 0, stream>>>(
        v.data_ptr<scalar_t>(), kernel.data_ptr<scalar_t>(), K, B, length, stride, Lo, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace das
