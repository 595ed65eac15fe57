// The registrations of the das extension's CUDA kernels (TORCH_LIBRARY_IMPL for the CUDA dispatch
// key): blur and blur_adjoint (blur.cu), grad_step_batched and its backward (grad_step.cu). The
// schemas are defined with the CPU kernels, in ../bindings.cpp. The CNN bank has no CUDA kernel: on
// the GPU the Python wrapper runs cuDNN's convolutions (das/operators.py).
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>

namespace das {

// The CUDA kernels, defined in the op files.
at::Tensor blur_cuda(const at::Tensor& x, const at::Tensor& kernel, int64_t stride);
at::Tensor blur_adjoint_cuda(const at::Tensor& v, const at::Tensor& kernel, int64_t stride, int64_t length);
at::Tensor grad_step_batched_cuda(const at::Tensor& u, const at::Tensor& y, const at::Tensor& tau,
                                  const at::Tensor& r, const at::Tensor& kernel, int64_t stride);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> grad_step_batched_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& y, const at::Tensor& tau, const at::Tensor& r,
    const at::Tensor& kernel, int64_t stride);

TORCH_LIBRARY_IMPL(das, CUDA, m) {
  m.impl("blur", &blur_cuda);
  m.impl("blur_adjoint", &blur_adjoint_cuda);
  m.impl("grad_step_batched", &grad_step_batched_cuda);
  m.impl("grad_step_batched_backward", &grad_step_batched_backward_cuda);
}

}  // namespace das
