// The blur operator A and its adjoint A^T on the CPU: torch.ops.das.blur (x (B, 1, L) -> A x of
// (B, 1, (L-1)/stride+1)) and torch.ops.das.blur_adjoint (back to length L). Data generation calls
// them, and blur_batched / blur_adjoint_batched run a batch of trials through them as rows; the
// autograd formulas (each is the other's backward) are in das/operators.py. Plain code only: the
// convolutions are Rows' (common.h), which the compiler vectorises; there is no SIMD fast path.
// Registered in bindings.cpp.
#include "common.h"

namespace das {

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
    const Rows<scalar_t> R(B, L, K / 2);
    std::vector<scalar_t> xpad(R.n), full(R.n);
    R.pad(x.data_ptr<scalar_t>(), xpad.data());
    R.conv(xpad.data(), kernel.data_ptr<scalar_t>(), K, full.data(), false);
    scalar_t* op = out.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Lo; ++i) op[b * Lo + i] = full[b * R.P + R.p + i * stride];
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
    // zero-filled upsampling into padded rows, then the blur's transpose
    const Rows<scalar_t> R(B, length, K / 2);
    std::vector<scalar_t> z(R.n, 0), full(R.n, 0);
    const scalar_t* vp = v.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Lo; ++i) z[b * R.P + R.p + i * stride] = vp[b * Lo + i];
    R.conv_transpose(z.data(), kernel.data_ptr<scalar_t>(), K, full.data());
    R.unpad(full.data(), out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace das
