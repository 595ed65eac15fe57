// Shared by the CUDA kernels blur.cu and grad_step.cu: the launch shape (one thread per output
// sample, kThreads per block) and the blur operator's per-sample device code, (A x)[i] and
// (A^T v)[j] for a signal row, with the kernel that applies A to every row. Signals are rows of L
// samples (Lo = (L-1)/stride+1 after A); the blur kernel has K (odd) taps and zero padding K/2.
// Internal linkage: each .cu file compiles its own copy.
#pragma once

#include <cstdint>

namespace das {

namespace {

constexpr int kThreads = 256;

inline int64_t blurred_length(int64_t length, int64_t stride) { return (length - 1) / stride + 1; }

inline int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

// (A x)[i] for sample row x.
template <typename scalar_t>
__device__ inline scalar_t blur_at(const scalar_t* x, const scalar_t* k, int64_t K, int64_t L, int64_t s,
                                   int64_t i) {
  const int64_t p = K / 2, c = i * s - p;
  scalar_t acc = 0;
  for (int64_t t = 0; t < K; ++t) {
    const int64_t j = c + t;
    if (j >= 0 && j < L) acc += k[t] * x[j];
  }
  return acc;
}

// (A^T v)[j] for sample row v of length Lo.
template <typename scalar_t>
__device__ inline scalar_t adjoint_at(const scalar_t* v, const scalar_t* k, int64_t K, int64_t s, int64_t Lo,
                                      int64_t j) {
  const int64_t p = K / 2;
  scalar_t acc = 0;
  for (int64_t t = 0; t < K; ++t) {
    const int64_t q = j + p - t;
    if (q >= 0 && q % s == 0 && q / s < Lo) acc += k[t] * v[q / s];
  }
  return acc;
}

template <typename scalar_t>
__global__ void blur_kernel(const scalar_t* x, const scalar_t* k, int64_t K, int64_t B, int64_t L, int64_t s,
                            int64_t Lo, scalar_t* out) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= B * Lo) return;
  const int64_t b = idx / Lo, i = idx % Lo;
  out[idx] = blur_at(x + b * L, k, K, L, s, i);
}

}  // namespace

}  // namespace das
