// The das extension's operator library: the TORCH_LIBRARY schemas of every op (torch.ops.das.*), the
// registrations of their CPU kernels (blur.cpp, grad_step.cpp, cnn_bank.cpp), and PyInit__C, which lets
// `import das._C` load this library. The CUDA kernels register themselves in cuda/bindings.cu; the
// autograd formulas and fake (meta) kernels are registered from Python, in das/operators.py.
#include <Python.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>

extern "C" {
// Lets `import das._C` load this library, which registers the operators below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace das {

// The CPU kernels, defined in the op files.
at::Tensor blur_cpu(const at::Tensor& x, const at::Tensor& kernel, int64_t stride);
at::Tensor blur_adjoint_cpu(const at::Tensor& v, const at::Tensor& kernel, int64_t stride, int64_t length);
at::Tensor grad_step_batched_cpu(const at::Tensor& u, const at::Tensor& y, const at::Tensor& tau, const at::Tensor& r,
                                 const at::Tensor& kernel, int64_t stride);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> grad_step_batched_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& y, const at::Tensor& tau, const at::Tensor& r,
    const at::Tensor& kernel, int64_t stride);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cnn_forward_batched_cpu(
    const at::Tensor& u, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& gamma, const at::Tensor& beta,
    const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& running_mean, const at::Tensor& running_var,
    bool training, double eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
cnn_backward_batched_cpu(const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& mean,
                         const at::Tensor& rstd, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& gamma,
                         const at::Tensor& beta, const at::Tensor& w2, bool training, bool weight_grads);

TORCH_LIBRARY(das, m) {
  m.def("blur(Tensor x, Tensor kernel, int stride) -> Tensor");
  m.def("blur_adjoint(Tensor v, Tensor kernel, int stride, int length) -> Tensor");
  // The gradient step and the CNN bank over T independent trials, trials first (shapes: grad_step.cpp,
  // cnn_bank.cpp).
  m.def("grad_step_batched(Tensor u, Tensor y, Tensor tau, Tensor r, Tensor kernel, int stride) -> Tensor");
  m.def(
      "grad_step_batched_backward(Tensor grad_out, Tensor u, Tensor y, Tensor tau, Tensor r, Tensor kernel, "
      "int stride) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "cnn_forward_batched(Tensor u, Tensor w1, Tensor b1, Tensor gamma, Tensor beta, Tensor w2, Tensor b2, "
      "Tensor running_mean, Tensor running_var, bool training, float eps) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "cnn_backward_batched(Tensor grad_out, Tensor u, Tensor mean, Tensor rstd, Tensor w1, Tensor b1, "
      "Tensor gamma, Tensor beta, Tensor w2, bool training, bool weight_grads=True) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(das, CPU, m) {
  m.impl("blur", &blur_cpu);
  m.impl("blur_adjoint", &blur_adjoint_cpu);
  m.impl("grad_step_batched", &grad_step_batched_cpu);
  m.impl("grad_step_batched_backward", &grad_step_batched_backward_cpu);
  m.impl("cnn_forward_batched", &cnn_forward_batched_cpu);
  m.impl("cnn_backward_batched", &cnn_backward_batched_cpu);
}

}  // namespace das
