// Shared by the CPU kernels blur.cpp, grad_step.cpp and cnn_bank.cpp: argument checks that name the
// fix, 64-byte aligned scratch memory, and Rows, a batch of signals as one flat zero-padded row with
// the convolutions every op is built from (plain loops the compiler vectorises; the fused 3- and
// 7-tap passes give the same bits as the tap-by-tap ones).
//
// Shapes: signals are (B, 1, L), or (T, B, 1, L) with the trial first; the blur kernel is (k,) with
// k odd, zero padding k/2, and `stride` keeps every stride-th sample starting at index 0 (A maps L
// to (L-1)/stride+1). Everything here has internal linkage: each kernel file compiles its own copy.
#pragma once

// The ATen headers this code uses, not the ATen/ATen.h umbrella: parsing that costs each file ~17 s
// of the build, these ~6 s.
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

namespace das {

namespace {

inline int64_t blurred_length(int64_t length, int64_t stride) { return (length - 1) / stride + 1; }

inline void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "das: ", name,
              " must be float32 or float64, got ", t.scalar_type(),
              "; convert it with .float() or .double()");
}

inline void check_signal(const at::Tensor& t, const char* name) {
  check_float(t, name);
  TORCH_CHECK(t.dim() == 3 && t.size(1) == 1, "das: ", name,
              " must have shape (B, 1, L), got ", t.sizes(),
              "; add the channel dimension with .unsqueeze(1)");
}

inline void check_same(const at::Tensor& a, const at::Tensor& b, const char* name_a, const char* name_b) {
  TORCH_CHECK(a.device() == b.device(), "das: ", name_a, " is on ", a.device(), " but ", name_b,
              " is on ", b.device(), "; move both to one device with .to(device)");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "das: ", name_a, " is ", a.scalar_type(),
              " but ", name_b, " is ", b.scalar_type(), "; use one dtype for both");
}

inline void check_kernel(const at::Tensor& kernel, const at::Tensor& x, int64_t stride) {
  TORCH_CHECK(kernel.dim() == 1 && kernel.size(0) % 2 == 1, "das: kernel must be 1-D of odd length, got shape ",
              kernel.sizes());
  check_same(kernel, x, "kernel", "the signal");
  TORCH_CHECK(stride >= 1, "das: stride (the subsampling factor) must be >= 1, got ", stride);
}

inline void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "das: ", name, " is on ", t.device(),
              " but this kernel runs on the CPU; the CUDA kernels are built only when torch has CUDA");
}

// Batched signals carry the trial first: (T, B, 1, L).
inline void check_batched_signal(const at::Tensor& t, const char* name) {
  check_float(t, name);
  TORCH_CHECK(t.dim() == 4 && t.size(2) == 1, "das: ", name, " must have shape (T, B, 1, L), trials first, got ",
              t.sizes(), "; stack the trials' (B, 1, L) signals with torch.stack");
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

// Scratch memory aligned to 64 bytes. Every buffer that a vectorised loop reads starts on the same
// alignment in every call, so the compiler's loop peeling (and with it the order of a reduction)
// can never depend on where malloc happened to put a buffer: trial t computes the same bits alone
// or inside a batch of trials.
template <typename scalar_t>
struct Scratch {
  std::unique_ptr<scalar_t, decltype(&std::free)> ptr;
  explicit Scratch(int64_t n) : ptr(allocate(n), &std::free) {
    TORCH_CHECK(ptr, "das: out of memory allocating ", n, " scratch values");
  }
  scalar_t* data() const { return ptr.get(); }
  scalar_t& operator[](int64_t i) const { return ptr.get()[i]; }
  static scalar_t* allocate(int64_t n) {  // aligned_alloc wants a multiple of the alignment
    const size_t bytes = (std::max<int64_t>(n, 1) * sizeof(scalar_t) + 63) / 64 * 64;
    return static_cast<scalar_t*>(std::aligned_alloc(64, bytes));
  }
};

// a * b + c as one rounding where the CPU has FMA, exactly what the compiler makes of `c += a * b` in the
// tap-by-tap loops (-ffp-contract=fast); spelled out so that -fassociative-math cannot regroup a
// chain of taps and change the bits.
template <typename scalar_t>
inline scalar_t madd(scalar_t a, scalar_t b, scalar_t c) {
#ifdef __FMA__
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// Signals of a batch as one flat row: each sample padded by p zeros on both sides, so a
// convolution over the whole batch is a few long, vectorised multiply-adds.
template <typename scalar_t>
struct Rows {
  int64_t B, L, p, P, n;  // samples, length, padding, padded length, flat length B * P
  int64_t ns;             // n rounded up to 64 bytes: the distance between consecutive rows in one buffer
  Rows(int64_t B_, int64_t L_, int64_t p_)
      : B(B_), L(L_), p(p_), P(L_ + 2 * p_), n(B_ * (L_ + 2 * p_)), ns((n + 15) / 16 * 16) {}

  void zero_pads(scalar_t* x) const {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t q = 0; q < p; ++q) x[b * P + q] = 0;
      for (int64_t q = p + L; q < P; ++q) x[b * P + q] = 0;
    }
  }
  void fill_pads(scalar_t* x, scalar_t v) const {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t q = 0; q < p; ++q) x[b * P + q] = v;
      for (int64_t q = p + L; q < P; ++q) x[b * P + q] = v;
    }
  }
  void pad(const scalar_t* src, scalar_t* dst) const {  // (B, L) -> padded rows
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t q = 0; q < p; ++q) dst[b * P + q] = 0;
      for (int64_t l = 0; l < L; ++l) dst[b * P + p + l] = src[b * L + l];
      for (int64_t q = p + L; q < P; ++q) dst[b * P + q] = 0;
    }
  }
  void unpad(const scalar_t* src, scalar_t* dst) const {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) dst[b * L + l] = src[b * P + p + l];
  }
  // out[i] (+)= sum_t w[t] x[i + t - kk/2] over the inner flat range (kk/2 <= p).
  // Every element adds its taps in the order t = 0..kk-1, one multiply-add each, on every path:
  // the fused one-pass loops for the common tap counts give the same bits as the tap-by-tap passes.
  void conv(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w, int64_t kk, scalar_t* __restrict__ out,
            bool accumulate, scalar_t bias = 0) const {
    const int64_t h = kk / 2, lo = p, hi = n - p;
    if (!accumulate)
      for (int64_t i = 0; i < n; ++i) out[i] = bias;
    if (kk == 3) return conv_taps<3>(x, w, out);
    if (kk == 7) return conv_taps<7>(x, w, out);
    for (int64_t t = 0; t < kk; ++t) {
      const scalar_t wt = w[t];
      const scalar_t* __restrict__ xs = x + (t - h);
      for (int64_t i = lo; i < hi; ++i) out[i] += wt * xs[i];
    }
  }
  // one pass over the row with the KK taps in registers: a third of the memory traffic for k = 3
  template <int KK>
  void conv_taps(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w, scalar_t* __restrict__ out) const {
    constexpr int h = KK / 2;
    scalar_t wt[KK];
    for (int t = 0; t < KK; ++t) wt[t] = w[t];
    for (int64_t i = p; i < n - p; ++i) {
      scalar_t s = out[i];
      for (int t = 0; t < KK; ++t) s = madd(wt[t], x[i + t - h], s);
      out[i] = s;
    }
  }
  // the transpose: out[i + t - kk/2] += w[t] x[i], for i over the inner flat range. Kept out of line (one
  // copy per file, compiled on its own): inlined into its callers, GCC vectorises it per caller.
  __attribute__((noinline)) void conv_transpose(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w, int64_t kk,
                      scalar_t* __restrict__ out) const {
    const int64_t h = kk / 2, lo = p, hi = n - p;
    if (hi - lo >= 2 * kk) {
      if (kk == 3) return conv_transpose_taps<3>(x, w, out);
      if (kk == 7) return conv_transpose_taps<7>(x, w, out);
    }
    for (int64_t t = 0; t < kk; ++t) {
      const scalar_t wt = w[t];
      scalar_t* __restrict__ os = out + (t - h);
      for (int64_t i = lo; i < hi; ++i) os[i] += wt * x[i];
    }
  }
  // out[j] += sum_t w[t] x[j - t + h] over the t with j - t + h in [lo, hi), in the order t = 0..KK-1:
  // all taps in the interior, one pass; the few elements at both ends take theirs one by one.
  template <int KK>
  void conv_transpose_taps(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w,
                           scalar_t* __restrict__ out) const {
    constexpr int h = KK / 2;
    const int64_t lo = p, hi = n - p;
    scalar_t wt[KK];
    for (int t = 0; t < KK; ++t) wt[t] = w[t];
    auto edge = [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j)
        for (int t = 0; t < KK; ++t) {
          const int64_t i = j - t + h;
          if (i >= lo && i < hi) out[j] = madd(wt[t], x[i], out[j]);
        }
    };
    edge(lo - h, lo + h);
    for (int64_t j = lo + h; j < hi - h; ++j) {
      scalar_t s = out[j];
      for (int t = 0; t < KK; ++t) s = madd(wt[t], x[j - t + h], s);
      out[j] = s;
    }
    edge(hi - h, hi + h);
  }
  // f(i, conv(x)[i] + bias) for every i of the row (just bias on the outer pads, as conv leaves them):
  // the convolution and what consumes it in one pass, with conv's arithmetic.
  template <typename F>
  void conv_map(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w, int64_t kk, scalar_t bias,
                F f) const {
    const int64_t h = kk / 2;
    for (int64_t i = 0; i < p; ++i) f(i, bias);
    if (kk == 3) {
      conv_map_taps<3>(x, w, bias, f);
    } else {
      for (int64_t i = p; i < n - p; ++i) {
        scalar_t s = bias;
        for (int64_t t = 0; t < kk; ++t) s = madd(w[t], x[i + t - h], s);
        f(i, s);
      }
    }
    for (int64_t i = n - p; i < n; ++i) f(i, bias);
  }
  template <int KK, typename F>
  void conv_map_taps(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w, scalar_t bias, F f) const {
    constexpr int h = KK / 2;
    scalar_t wt[KK];
    for (int t = 0; t < KK; ++t) wt[t] = w[t];
    for (int64_t i = p; i < n - p; ++i) {
      scalar_t s = bias;
      for (int t = 0; t < KK; ++t) s = madd(wt[t], x[i + t - h], s);
      f(i, s);
    }
  }
  // f(j, conv_transpose(x)[j]) for every j of the row, the transpose started from zeros: the same
  // bits as zeroing a row, conv_transpose into it and then applying f.
  template <typename F>
  void conv_transpose_map(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w, int64_t kk, F f) const {
    const int64_t h = kk / 2, lo = p, hi = n - p;
    auto one = [&](int64_t j) {  // the taps t = 0..kk-1 that reach j, in order
      scalar_t s = 0;
      for (int64_t t = 0; t < kk; ++t) {
        const int64_t i = j - t + h;
        if (i >= lo && i < hi) s = madd(w[t], x[i], s);
      }
      f(j, s);
    };
    if (kk != 3 || hi - lo < 2 * kk) {
      for (int64_t j = 0; j < n; ++j) one(j);
      return;
    }
    constexpr int64_t hh = 1;  // kk == 3
    const scalar_t w0 = w[0], w1 = w[1], w2 = w[2];
    for (int64_t j = 0; j < lo + hh; ++j) one(j);
    for (int64_t j = lo + hh; j < hi - hh; ++j) {
      scalar_t s = 0;
      s = madd(w0, x[j + hh], s);
      s = madd(w1, x[j + hh - 1], s);
      s = madd(w2, x[j + hh - 2], s);
      f(j, s);
    }
    for (int64_t j = hi - hh; j < n; ++j) one(j);
  }
  // dw[t] = sum_i g[i] x[i + t - kk/2]; g must be zero on the pads
  template <typename acc_t>
  void weight_grad(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x, int64_t kk, acc_t* dw) const {
    const int64_t h = kk / 2;
    if (kk == 3) return weight_grad3(g + p, x + p - 1, n - 2 * p, dw);
    for (int64_t t = 0; t < kk; ++t) dw[t] = blocked_dot<acc_t>(g + p, x + p + (t - h), n - 2 * p);
  }
  // the three dot products of a 3-tap kernel in one pass over g, each with blocked_dot's chunking (64
  // in the element type, the chunks in the accumulate type); with GCC's vectorisation here this gave
  // the same bits as three blocked_dot passes, and either way every caller shares this one code path
  template <typename acc_t>
  static void weight_grad3(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b, int64_t m, acc_t* dw) {
    acc_t d0 = 0, d1 = 0, d2 = 0;
    for (int64_t i = 0; i < m; i += 64) {
      const int64_t len = std::min<int64_t>(64, m - i);
      scalar_t s0 = 0, s1 = 0, s2 = 0;
      for (int64_t l = 0; l < len; ++l) {
        s0 += a[i + l] * b[i + l];
        s1 += a[i + l] * b[i + l + 1];
        s2 += a[i + l] * b[i + l + 2];
      }
      d0 += s0;
      d1 += s1;
      d2 += s2;
    }
    dw[0] = d0;
    dw[1] = d1;
    dw[2] = d2;
  }
  // sums in chunks of 64 in the element type (vectorised), the chunks in the accumulate type
  template <typename acc_t>
  static acc_t blocked_dot(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b, int64_t m) {
    acc_t s = 0;
    for (int64_t i = 0; i < m; i += 64) s += row_dot(a + i, b + i, std::min<int64_t>(64, m - i));
    return s;
  }
  // blocked_dot(a, b) and blocked_sum(a) in one pass over a, with their chunking
  template <typename acc_t>
  static void blocked_dot_sum(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b, int64_t m, acc_t& dot,
                              acc_t& sum) {
    dot = 0;
    sum = 0;
    for (int64_t i = 0; i < m; i += 64) {
      const int64_t len = std::min<int64_t>(64, m - i);
      scalar_t sd = 0, ss = 0;
      for (int64_t l = 0; l < len; ++l) {
        sd += a[i + l] * b[i + l];
        ss += a[i + l];
      }
      dot += sd;
      sum += ss;
    }
  }
  template <typename acc_t>
  static acc_t blocked_sum(const scalar_t* __restrict__ a, int64_t m) {
    acc_t s = 0;
    for (int64_t i = 0; i < m; i += 64) s += row_sum(a + i, std::min<int64_t>(64, m - i));
    return s;
  }
};

}  // namespace

}  // namespace das
