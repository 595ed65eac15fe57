// The fused CNN bank n(u; theta) on the CPU, for T trials at once: torch.ops.das.cnn_forward_batched
// (K CNNs conv(k1) -> BatchNorm -> ReLU -> conv(k2) on each trial's input) and its backward
// cnn_backward_batched. The autograd formula and the running-statistics update are in
// das/operators.py; the ops are registered in bindings.cpp.
//
// In this file: the argument check; the general path for any odd kernel sizes (cnn_forward_general,
// cnn_backward_general, plain loops over Rows, common.h); then the SIMD fast path for 3-tap kernels
// (cnn3_forward, cnn3_backward: AVX2/FMA intrinsics where the build has them, one lane otherwise);
// then the two ops, which pick one of the two.
#include "common.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace das {

// ---------------------------------------------------------------------------------------
// A bank of K CNNs on one input: out[k] = conv2_k(relu(bn_k(conv1_k(u)))), for T trials at once,
// each on its own input and weights.
// u (T,B,1,L); w1 (T,K,C,k1); b1, gamma, beta (T,K,C); w2 (T,K,C,k2); b2 (T,K);
// running_mean, running_var (T,K,C) are read in eval mode only (the wrapper updates them).
// Returns out (T,K,B,1,L), mean (T,K,C), var (T,K,C) (batch statistics in training, biased var; the
// running ones in eval) and rstd (T,K,C).
//
// 3-tap kernels (k1 = k2 = 3, the paper's CNN) take the SIMD fast path further below (cnn3_forward,
// cnn3_backward: one unit per bank, closed-form BatchNorm statistics); other kernel sizes the general
// path that comes first.
// Layout: one channel (k, c) at a time over the whole batch, as a flat row of B samples each
// padded by p zeros on both sides (B * (L + 2p) values, ~26 KB for B=128). The convolutions
// become shifted multiply-adds over that long row, which vectorise well, and BatchNorm's
// statistics are sums over the same row, so forward and backward are each one pass per channel.
// Nothing of size (K,B,C,L) is stored: the backward recomputes a channel's activations from u.
//
// Work is split into units (trial t, CNN k, block of kBlock channels). A unit writes only its own
// slots (its channels' statistics and weight gradients, and its own partial row of the output or of
// u's gradient); the partial rows are then added in block order, per bank (output) or per trial
// (u's gradient). So no sum ever crosses trials, every sum has a fixed order, and the results depend
// neither on the number of threads nor on T, nor on which of the two schedules (see the kernels)
// ran: trial t of a batched call gives the same bits as a call with T = 1 on trial t alone.
namespace {
void check_cnn_batched(const at::Tensor& u, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& gamma,
                       const at::Tensor& beta, const at::Tensor& w2, const at::Tensor* b2) {
  check_batched_signal(u, "u");
  const int64_t T = u.size(0);
  TORCH_CHECK(u.size(1) >= 1, "das: cnn u needs at least one sample per trial for BatchNorm, got ", u.sizes());
  TORCH_CHECK(w1.dim() == 4 && w1.size(0) == T && w1.size(3) % 2 == 1, "das: cnn w1 must be (T, K, C, k) with T = ",
              T, " trials (u's first dimension) and k odd, got ", w1.sizes());
  const int64_t K = w1.size(1), C = w1.size(2);
  TORCH_CHECK(w2.dim() == 4 && w2.size(0) == T && w2.size(1) == K && w2.size(2) == C && w2.size(3) % 2 == 1,
              "das: cnn w2 must be (", T, ", ", K, ", ", C, ", k) with k odd, got ", w2.sizes());
  for (auto* t : {&b1, &gamma, &beta})
    TORCH_CHECK(t->dim() == 3 && t->size(0) == T && t->size(1) == K && t->size(2) == C,
                "das: cnn b1, gamma and beta must be (", T, ", ", K, ", ", C, "), got ", t->sizes());
  if (b2) {
    TORCH_CHECK(b2->dim() == 2 && b2->size(0) == T && b2->size(1) == K, "das: cnn b2 must be (", T, ", ", K,
                "), got ", b2->sizes());
    check_same(u, *b2, "u", "a cnn parameter");
  }
  for (auto* t : {&w1, &b1, &gamma, &beta, &w2}) check_same(u, *t, "u", "a cnn parameter");
  check_cpu(u, "u");
}

constexpr int64_t kBlock = 4;  // channels per block of partial sums

// Forward of T banks. u (T,B,L); w1 (T,K,C,k1); b1, gamma, beta (T,K,C); w2 (T,K,C,k2); b2 (T,K);
// mean, var (T,K,C): written in training, read in eval; rstd (T,K,C) written; out (T,K,B,L).
template <typename scalar_t>
void cnn_forward_general(int64_t T, int64_t B, int64_t L, int64_t K, int64_t C, int64_t k1, int64_t k2,
                         const scalar_t* u, const scalar_t* w1p, const scalar_t* b1p, const scalar_t* gp,
                         const scalar_t* bp, const scalar_t* w2p, const scalar_t* b2p, scalar_t* mp, scalar_t* vp,
                         scalar_t* rp, scalar_t* op, bool training, double eps) {
  using acc_t = at::acc_type<scalar_t, false>;
  const Rows<scalar_t> R(B, L, std::max(k1, k2) / 2);
  const int64_t blocks_per_k = (C + kBlock - 1) / kBlock, nunits = T * K * blocks_per_k;
  const acc_t cnt = static_cast<acc_t>(B * L);
  // Unit q: the channels of block q % blocks_per_k of bank tk = q / blocks_per_k (= t * K + k) on the
  // padded input x of its trial, into its own partial row o; h is scratch. j = tk * C + c is a channel.
  auto unit = [&](int64_t q, const scalar_t* x, scalar_t* h, scalar_t* o) {
    const int64_t tk = q / blocks_per_k;
    const int64_t c0 = (q % blocks_per_k) * kBlock, c1 = std::min(C, c0 + kBlock);
    for (int64_t i = 0; i < R.n; ++i) o[i] = 0;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t j = tk * C + c;
      R.conv(x, w1p + j * k1, k1, h, false, b1p[j]);
      if (training) {
        // statistics over the valid samples in two passes (the row is in cache): the pads hold
        // the value whose deviation is summed, so they add nothing
        R.fill_pads(h, scalar_t(0));
        const acc_t mu = Rows<scalar_t>::template blocked_sum<acc_t>(h, R.n) / cnt;
        const scalar_t m = static_cast<scalar_t>(mu);
        R.fill_pads(h, m);
        acc_t s2 = 0;
        for (int64_t i = 0; i < R.n; i += 64) {
          const int64_t len = std::min<int64_t>(64, R.n - i);
          scalar_t a2 = 0;
          for (int64_t l = 0; l < len; ++l) a2 += (h[i + l] - m) * (h[i + l] - m);
          s2 += a2;
        }
        mp[j] = m;
        vp[j] = static_cast<scalar_t>(s2 / cnt);
      }
      rp[j] = static_cast<scalar_t>(1.0 / std::sqrt(static_cast<acc_t>(vp[j]) + eps));
      const scalar_t mj = mp[j], rs = rp[j], g = gp[j], be = bp[j];
      for (int64_t i = 0; i < R.n; ++i) h[i] = std::max<scalar_t>(g * ((h[i] - mj) * rs) + be, scalar_t(0));
      R.zero_pads(h);
      R.conv(h, w2p + j * k2, k2, o, true);
    }
  };
  // out of bank tk: b2 plus its blocks' partial rows (blocks_per_k rows from part), in block order
  auto reduce = [&](int64_t tk, const scalar_t* part, scalar_t* sum) {
    for (int64_t i = 0; i < R.n; ++i) sum[i] = b2p[tk];
    for (int64_t b = 0; b < blocks_per_k; ++b) {
      const scalar_t* o = part + b * R.ns;
      for (int64_t i = 0; i < R.n; ++i) sum[i] += o[i];
    }
    R.unpad(sum, op + tk * B * L);
  };
  // Two schedules of the same units and sums, so the same bits: with enough banks for every thread,
  // one task per bank keeps its input and partial rows in thread-local, cache-resident buffers;
  // otherwise (few banks, many threads) one task per unit, with every partial row kept until the end.
  if (T * K >= 2 * at::get_num_threads()) {
    at::parallel_for(0, T * K, 1, [&](int64_t tk0, int64_t tk1) {
      Scratch<scalar_t> x(R.ns), h(R.ns), part(blocks_per_k * R.ns), sum(R.ns);
      for (int64_t tk = tk0; tk < tk1; ++tk) {
        if (tk == tk0 || tk % K == 0) R.pad(u + (tk / K) * B * L, x.data());
        for (int64_t b = 0; b < blocks_per_k; ++b)
          unit(tk * blocks_per_k + b, x.data(), h.data(), part.data() + b * R.ns);
        reduce(tk, part.data(), sum.data());
      }
    });
    return;
  }
  Scratch<scalar_t> upad(T * R.ns), partial(nunits * R.ns);
  at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) R.pad(u + t * B * L, upad.data() + t * R.ns);
  });
  at::parallel_for(0, nunits, 1, [&](int64_t q0, int64_t q1) {
    Scratch<scalar_t> h(R.ns);
    for (int64_t q = q0; q < q1; ++q)
      unit(q, upad.data() + (q / blocks_per_k / K) * R.ns, h.data(), partial.data() + q * R.ns);
  });
  at::parallel_for(0, T * K, 1, [&](int64_t tk0, int64_t tk1) {
    Scratch<scalar_t> sum(R.ns);
    for (int64_t tk = tk0; tk < tk1; ++tk) reduce(tk, partial.data() + tk * blocks_per_k * R.ns, sum.data());
  });
}

// Backward of T banks: go (T,K,B,L), u (T,B,L), mean and rstd (T,K,C) from the forward; writes
// du (T,B,L), dw1 (T,K,C,k1), db1, dgamma, dbeta (T,K,C), dw2 (T,K,C,k2), db2 (T,K).
template <typename scalar_t>
void cnn_backward_general(int64_t T, int64_t B, int64_t L, int64_t K, int64_t C, int64_t k1, int64_t k2,
                          const scalar_t* go, const scalar_t* u, const scalar_t* mp, const scalar_t* rp,
                          const scalar_t* w1p, const scalar_t* b1p, const scalar_t* gp, const scalar_t* bp,
                          const scalar_t* w2p, scalar_t* dup, scalar_t* dw1p, scalar_t* db1p, scalar_t* dgp,
                          scalar_t* dbp, scalar_t* dw2p, scalar_t* db2p, bool training, bool weights) {
  using acc_t = at::acc_type<scalar_t, false>;
  const Rows<scalar_t> R(B, L, std::max(k1, k2) / 2);
  const int64_t blocks_per_k = (C + kBlock - 1) / kBlock, nunits = T * K * blocks_per_k;
  const int64_t units_per_t = K * blocks_per_k;
  const acc_t cnt = static_cast<acc_t>(B * L);
  // bank tk's padded grad_out into g, and b2's gradient (its sum)
  auto pad_grad = [&](int64_t tk, scalar_t* g) {
    R.pad(go + tk * B * L, g);
    db2p[tk] = static_cast<scalar_t>(Rows<scalar_t>::template blocked_sum<acc_t>(g, R.n));
  };
  // Unit q (as in the forward) on the padded input x and grad_out g of its bank: the gradients of its
  // channels' parameters, and its share of u's gradient into its own partial row du_q.
  // xhat, a, d: rows of scratch; dw: max(k1, k2) values.
  auto unit = [&](int64_t q, const scalar_t* x, const scalar_t* g, scalar_t* xhat, scalar_t* a, scalar_t* d,
                  acc_t* dw, scalar_t* du_q) {
    const int64_t tk = q / blocks_per_k;
    const int64_t c0 = (q % blocks_per_k) * kBlock, c1 = std::min(C, c0 + kBlock);
    for (int64_t i = 0; i < R.n; ++i) du_q[i] = 0;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t j = tk * C + c;
      // recompute xhat and a = relu(gamma xhat + beta) in one pass, pads of a zero
      const scalar_t m = mp[j], rs = rp[j], ga = gp[j], be = bp[j];
      R.conv_map(x, w1p + j * k1, k1, b1p[j], [&](int64_t i, scalar_t hv) {
        const scalar_t xh = (hv - m) * rs;
        xhat[i] = xh;
        a[i] = std::max<scalar_t>(ga * xh + be, scalar_t(0));
      });
      R.zero_pads(a);
      // conv2: weight gradient, then dz = relu'(z) * conv2^T(g) in one pass; pads of dz are zero since a is
      R.weight_grad(g, a, k2, dw);
      for (int64_t tt = 0; tt < k2; ++tt) dw2p[j * k2 + tt] = static_cast<scalar_t>(dw[tt]);
      R.conv_transpose_map(g, w2p + j * k2, k2,
                           [&](int64_t i, scalar_t v) { d[i] = v * static_cast<scalar_t>(a[i] > 0); });
      acc_t sg, sb;
      Rows<scalar_t>::template blocked_dot_sum<acc_t>(d, xhat, R.n, sg, sb);
      dgp[j] = static_cast<scalar_t>(sg);
      dbp[j] = static_cast<scalar_t>(sb);
      // BatchNorm: dh = rstd (gamma dz - mean(gamma dz) - xhat mean(gamma dz xhat)) in training
      const scalar_t m1 = training ? static_cast<scalar_t>(ga * sb / cnt) : scalar_t(0);
      const scalar_t m2 = training ? static_cast<scalar_t>(ga * sg / cnt) : scalar_t(0);
      for (int64_t i = 0; i < R.n; ++i) d[i] = rs * (ga * d[i] - m1 - xhat[i] * m2);
      R.zero_pads(d);
      // conv1: weight, bias and input gradients
      R.weight_grad(d, x, k1, dw);
      for (int64_t tt = 0; tt < k1; ++tt) dw1p[j * k1 + tt] = static_cast<scalar_t>(dw[tt]);
      db1p[j] = static_cast<scalar_t>(Rows<scalar_t>::template blocked_sum<acc_t>(d, R.n));
      R.conv_transpose(d, w1p + j * k1, k1, du_q);
    }
  };
  // u's gradient of trial t: its units_per_t partial rows from part, added in unit order
  auto reduce = [&](int64_t t, const scalar_t* part, scalar_t* sum) {
    for (int64_t i = 0; i < R.n; ++i) sum[i] = 0;
    for (int64_t q = 0; q < units_per_t; ++q) {
      const scalar_t* o = part + q * R.ns;
      for (int64_t i = 0; i < R.n; ++i) sum[i] += o[i];
    }
    R.unpad(sum, dup + t * B * L);
  };
  // Two schedules of the same units and sums (see the forward): one task per trial when there are
  // enough trials for every thread, else one task per unit with all partial rows kept to the end.
  if (T >= 2 * at::get_num_threads()) {
    at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
      Scratch<scalar_t> x(R.ns), g(K * R.ns), part(units_per_t * R.ns), xhat(R.ns), a(R.ns), d(R.ns), sum(R.ns);
      std::vector<acc_t> dw(std::max(k1, k2));
      for (int64_t t = t0; t < t1; ++t) {
        R.pad(u + t * B * L, x.data());
        for (int64_t k = 0; k < K; ++k) pad_grad(t * K + k, g.data() + k * R.ns);
        for (int64_t q = 0; q < units_per_t; ++q)
          unit(t * units_per_t + q, x.data(), g.data() + (q / blocks_per_k) * R.ns, xhat.data(), a.data(), d.data(),
               dw.data(), part.data() + q * R.ns);
        reduce(t, part.data(), sum.data());
      }
    });
    return;
  }
  Scratch<scalar_t> upad(T * R.ns), gpad(T * K * R.ns), partial(nunits * R.ns);
  at::parallel_for(0, T * K, 1, [&](int64_t tk0, int64_t tk1) {
    for (int64_t tk = tk0; tk < tk1; ++tk) {
      if (tk % K == 0) R.pad(u + (tk / K) * B * L, upad.data() + (tk / K) * R.ns);
      pad_grad(tk, gpad.data() + tk * R.ns);
    }
  });
  at::parallel_for(0, nunits, 1, [&](int64_t q0, int64_t q1) {
    Scratch<scalar_t> xhat(R.ns), a(R.ns), d(R.ns);
    std::vector<acc_t> dw(std::max(k1, k2));
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t tk = q / blocks_per_k;
      unit(q, upad.data() + (tk / K) * R.ns, gpad.data() + tk * R.ns, xhat.data(), a.data(), d.data(), dw.data(),
           partial.data() + q * R.ns);
    }
  });
  at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
    Scratch<scalar_t> sum(R.ns);
    for (int64_t t = t0; t < t1; ++t) reduce(t, partial.data() + t * units_per_t * R.ns, sum.data());
  });
}

// ---------------------------------------------------------------------------------------
// The fast path for 3-tap kernels (k1 = k2 = 3, the paper's CNN), explicit SIMD over positions.
//
// BatchNorm's batch statistics of channel c are those of h = b + sum_t w_t x_t, a linear map of the
// three shifted copies x_t of the (zero-padded) input: mean = b + w . mu and var = w^T Cov w, with mu
// and Cov the means and covariance of (x_0, x_1, x_2) over the batch, accumulated once per trial in
// double (`XStats`). So the forward needs no statistics pass per channel: one pass over the
// positions, all channels of a bank at once, the conv2 taps in registers.
//
// The backward makes one pass per channel: it recomputes h, z and the ReLU mask, and accumulates
// sum d, sum d xhat (dbeta, dgamma), sum d x_t and sum a g_{t} (w1's and w2's gradients) and
// the part of u's gradient that is linear in d. BatchNorm's training-mode terms of dh,
// rstd (-m1 - m2 xhat), are affine in x_t, so their share of w1's, b1's and u's gradients follows
// from the same statistics of x in closed form, with one cheap pass per bank for u's.
//
// Every sum has a fixed order that depends only on (B, L): float lanes over fixed tiles of
// positions, added into double per tile, the lanes added in order at the end. A unit of work is one
// bank (t, k); u's gradient of trial t adds its banks' rows in k order.
//
// The sums here are written out in the order they must happen: the compiler may not regroup them
// (the file's -fassociative-math is off for this code), so the weight_grads=false variant of the
// backward computes u's gradient with exactly the operations of the full one.
#pragma GCC push_options
#pragma GCC optimize("no-associative-math")
#if defined(__AVX2__) && defined(__FMA__)
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  static constexpr int N = 8;
  using R = __m256;
  static R load(const float* p) { return _mm256_load_ps(p); }
  static R loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R v) { _mm256_store_ps(p, v); }
  static R set1(float x) { return _mm256_set1_ps(x); }
  static R zero() { return _mm256_setzero_ps(); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R relu(R z) { return _mm256_max_ps(zero(), z); }  // a NaN passes through
  static R gt0(R z) { return _mm256_cmp_ps(z, zero(), _CMP_GT_OQ); }
  static R and_(R a, R m) { return _mm256_and_ps(a, m); }
};
template <>
struct Vec<double> {
  static constexpr int N = 4;
  using R = __m256d;
  static R load(const double* p) { return _mm256_load_pd(p); }
  static R loadu(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, R v) { _mm256_store_pd(p, v); }
  static R set1(double x) { return _mm256_set1_pd(x); }
  static R zero() { return _mm256_setzero_pd(); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  static R add(R a, R b) { return _mm256_add_pd(a, b); }
  static R relu(R z) { return _mm256_max_pd(zero(), z); }
  static R gt0(R z) { return _mm256_cmp_pd(z, zero(), _CMP_GT_OQ); }
  static R and_(R a, R m) { return _mm256_and_pd(a, m); }
};
#else
template <typename T>
struct Vec {  // one lane; masks are all-ones or all-zero bit patterns, as in the SIMD version
  static constexpr int N = 1;
  using R = T;
  using Bits = typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type;
  static R load(const T* p) { return *p; }
  static R loadu(const T* p) { return *p; }
  static void store(T* p, R v) { *p = v; }
  static R set1(T x) { return x; }
  static R zero() { return T(0); }
  static R fma(R a, R b, R c) { return madd(a, b, c); }
  static R mul(R a, R b) { return a * b; }
  static R add(R a, R b) { return a + b; }
  static R relu(R z) { return z > 0 || z != z ? z : T(0); }
  static R gt0(R z) { return z > 0 ? ones() : T(0); }
  static R ones() {
    Bits b = ~Bits(0);
    T t;
    std::memcpy(&t, &b, sizeof(T));
    return t;
  }
  static R and_(R a, R m) {
    Bits x, y;
    std::memcpy(&x, &a, sizeof(T));
    std::memcpy(&y, &m, sizeof(T));
    x &= y;
    std::memcpy(&a, &x, sizeof(T));
    return a;
  }
};
#endif

// A row of Rows' flat layout (padding 1) with kGuard zeros before and after, so that the loads at
// i - 1 and i + 1 of every vector stay inside; zero-filled.
constexpr int64_t kGuard = 8;
template <typename scalar_t>
struct GuardedRows {
  Scratch<scalar_t> buf;
  int64_t stride;
  GuardedRows(int64_t ns, int64_t count) : buf(count * (ns + 2 * kGuard)), stride(ns + 2 * kGuard) {
    std::fill(buf.data(), buf.data() + count * stride, scalar_t(0));
  }
  scalar_t* operator[](int64_t r) const { return buf.data() + r * stride + kGuard; }
};

// all-ones bits at the valid positions of the flat row, zero on the pads and past n
template <typename scalar_t>
void fill_valid(const Rows<scalar_t>& R, scalar_t* v) {
  scalar_t ones;
  std::memset(&ones, 0xff, sizeof(ones));
  std::fill(v, v + R.ns, scalar_t(0));
  for (int64_t b = 0; b < R.B; ++b)
    for (int64_t l = 0; l < R.L; ++l) v[b * R.P + 1 + l] = ones;
}

// Sums over the batch of the shifted inputs x_t[i] = x[i + t - 1] (t = 0, 1, 2) at the valid
// positions: S_t, and their products G_st; n the number of valid positions.
struct XStats {
  double n, S[3], G[3][3];
};

template <typename scalar_t>
XStats x_stats(const Rows<scalar_t>& R, const scalar_t* x) {
  // over the flat row (zero pads, and zeros up to ns + 2): sum x, sum x^2, lag-1 and lag-2 products
  // (a lag of at most 2 never reaches the next sample through the 2 pads between them), in 4 lanes
  // added in order; the end samples of each row tell the shifted copies apart
  alignas(32) double l1[4] = {0, 0, 0, 0}, l2[4] = {0, 0, 0, 0}, q1[4] = {0, 0, 0, 0}, q2[4] = {0, 0, 0, 0};
#if defined(__AVX2__) && defined(__FMA__)
  auto load4 = [](const scalar_t* p) {  // 4 values as doubles
    if constexpr (std::is_same<scalar_t, float>::value)
      return _mm256_cvtps_pd(_mm_loadu_ps(p));
    else
      return _mm256_loadu_pd(p);
  };
  __m256d a1 = _mm256_setzero_pd(), a2 = a1, b1 = a1, b2 = a1;
  for (int64_t i = 0; i < R.ns; i += 4) {
    const __m256d xi = load4(x + i);
    a1 = _mm256_add_pd(a1, xi);
    a2 = _mm256_fmadd_pd(xi, xi, a2);
    b1 = _mm256_fmadd_pd(xi, load4(x + i + 1), b1);
    b2 = _mm256_fmadd_pd(xi, load4(x + i + 2), b2);
  }
  _mm256_store_pd(l1, a1);
  _mm256_store_pd(l2, a2);
  _mm256_store_pd(q1, b1);
  _mm256_store_pd(q2, b2);
#else
  for (int64_t i = 0; i < R.ns; i += 4)
    for (int l = 0; l < 4; ++l) {
      const double xi = x[i + l];
      l1[l] += xi;
      l2[l] = madd(xi, xi, l2[l]);
      q1[l] = madd(xi, static_cast<double>(x[i + l + 1]), q1[l]);
      q2[l] = madd(xi, static_cast<double>(x[i + l + 2]), q2[l]);
    }
#endif
  const double s1 = (l1[0] + l1[1]) + (l1[2] + l1[3]), s2 = (l2[0] + l2[1]) + (l2[2] + l2[3]);
  const double r1 = (q1[0] + q1[1]) + (q1[2] + q1[3]), r2 = (q2[0] + q2[1]) + (q2[2] + q2[3]);
  double f = 0, f2 = 0, e = 0, e2 = 0;  // first and last sample of every row
  for (int64_t b = 0; b < R.B; ++b) {
    const double xf = x[b * R.P + 1], xl = x[b * R.P + R.L];
    f += xf;
    f2 += xf * xf;
    e += xl;
    e2 += xl * xl;
  }
  XStats s;
  s.n = static_cast<double>(R.B * R.L);
  s.S[0] = s1 - e;  // x_0[i] = x[i - 1] misses each row's last sample
  s.S[1] = s1;
  s.S[2] = s1 - f;
  s.G[0][0] = s2 - e2;
  s.G[1][1] = s2;
  s.G[2][2] = s2 - f2;
  s.G[0][1] = s.G[1][0] = s.G[1][2] = s.G[2][1] = r1;
  s.G[0][2] = s.G[2][0] = r2;
  return s;
}

// mean and biased variance of h = b + sum_t w_t x_t over the batch
inline void bn_stats(const XStats& s, const double w[3], double b, double& mean, double& var) {
  double mu[3];
  for (int t = 0; t < 3; ++t) mu[t] = s.S[t] / s.n;
  mean = b + (w[0] * mu[0] + w[1] * mu[1] + w[2] * mu[2]);
  var = 0;
  for (int a = 0; a < 3; ++a)
    for (int c = 0; c < 3; ++c) var += w[a] * w[c] * (s.G[a][c] / s.n - mu[a] * mu[c]);
  var = std::max(var, 0.0);
}

// Per-channel constants of the fast forward, each broadcast to a vector
enum { kW0, kW1, kW2, kC0, kSc, kBe, kV0, kV1, kV2, kFwdConsts };

// One bank (K = 1 slice) forward. x: guarded padded input row; valid: mask row; A: 3 guarded rows
// of scratch; o: a guarded row of scratch; cst: C * kFwdConsts * N aligned values of scratch.
template <typename scalar_t>
__attribute__((noinline)) void cnn3_forward_bank(const Rows<scalar_t>& R, const scalar_t* x, const scalar_t* valid,
                                                 const XStats& xs, int64_t C, const scalar_t* w1, const scalar_t* b1,
                                                 const scalar_t* ga, const scalar_t* be, const scalar_t* w2,
                                                 scalar_t b2, scalar_t* mean, scalar_t* var, scalar_t* rstd,
                                                 bool training, double eps, const GuardedRows<scalar_t>& A,
                                                 scalar_t* cst, scalar_t* out) {
  using V = Vec<scalar_t>;
  using Rg = typename V::R;
  constexpr int N = V::N;
  for (int64_t c = 0; c < C; ++c) {
    if (training) {
      const double w[3] = {double(w1[c * 3]), double(w1[c * 3 + 1]), double(w1[c * 3 + 2])};
      double m, v;
      bn_stats(xs, w, double(b1[c]), m, v);
      mean[c] = static_cast<scalar_t>(m);
      var[c] = static_cast<scalar_t>(v);
    }
    rstd[c] = static_cast<scalar_t>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
    const scalar_t k[kFwdConsts] = {w1[c * 3], w1[c * 3 + 1], w1[c * 3 + 2],
                                    static_cast<scalar_t>(double(b1[c]) - double(mean[c])), ga[c] * rstd[c], be[c],
                                    w2[c * 3], w2[c * 3 + 1], w2[c * 3 + 2]};
    for (int q = 0; q < kFwdConsts; ++q) V::store(cst + (c * kFwdConsts + q) * N, V::set1(k[q]));
  }
  scalar_t *A0 = A[0], *A1 = A[1], *A2 = A[2];
  // A_t[i] = sum_c w2[c, t] a_c[i]: two interleaved chains of channels, added at the end
  for (int64_t i = 0; i < R.ns; i += N) {
    const Rg xm = V::loadu(x + i - 1), x0 = V::load(x + i), xp = V::loadu(x + i + 1);
    Rg e0 = V::zero(), e1 = V::zero(), e2 = V::zero(), d0 = V::zero(), d1 = V::zero(), d2 = V::zero();
    auto channel = [&](int64_t c, Rg& s0, Rg& s1, Rg& s2) {
      const scalar_t* k = cst + c * kFwdConsts * N;
      Rg h = V::fma(V::load(k + kW0 * N), xm, V::load(k + kC0 * N));
      h = V::fma(V::load(k + kW1 * N), x0, h);
      h = V::fma(V::load(k + kW2 * N), xp, h);
      const Rg a = V::relu(V::fma(h, V::load(k + kSc * N), V::load(k + kBe * N)));
      s0 = V::fma(V::load(k + kV0 * N), a, s0);
      s1 = V::fma(V::load(k + kV1 * N), a, s1);
      s2 = V::fma(V::load(k + kV2 * N), a, s2);
    };
    int64_t c = 0;
    for (; c + 1 < C; c += 2) {
      channel(c, e0, e1, e2);
      channel(c + 1, d0, d1, d2);
    }
    if (c < C) channel(c, e0, e1, e2);
    const Rg m = V::load(valid + i);
    V::store(A0 + i, V::and_(V::add(e0, d0), m));
    V::store(A1 + i, V::and_(V::add(e1, d1), m));
    V::store(A2 + i, V::and_(V::add(e2, d2), m));
  }
  // out[j] = b2 + A_0[j - 1] + A_1[j] + A_2[j + 1]
  scalar_t* o = A[3];
  const Rg bias = V::set1(b2);
  for (int64_t i = 0; i < R.ns; i += N)
    V::store(o + i, V::add(V::add(V::add(bias, V::loadu(A0 + i - 1)), V::load(A1 + i)), V::loadu(A2 + i + 1)));
  R.unpad(o, out);
}

constexpr int64_t kTile = 512;  // positions per tile of the backward's float partial sums
enum { kSb, kSg, kP0, kP1, kP2, kQ0, kQ1, kQ2, kBwdSums };

// One bank's backward. go: guarded padded grad_out row; D: 4 guarded rows of scratch; dacc:
// C * kBwdSums * N doubles of scratch; du: this bank's share of u's gradient (B, L).
// With weights false, only u's gradient (and what it needs) is computed.
template <typename scalar_t, bool weights>
__attribute__((noinline)) void cnn3_backward_bank(const Rows<scalar_t>& R, const scalar_t* x, const scalar_t* valid,
                                                  const XStats& xs, int64_t C, const scalar_t* go,
                                                  const scalar_t* w1, const scalar_t* b1, const scalar_t* ga,
                                                  const scalar_t* be, const scalar_t* w2, const scalar_t* mean,
                                                  const scalar_t* rstd, bool training, scalar_t* dw1, scalar_t* db1,
                                                  scalar_t* dg, scalar_t* dbt, scalar_t* dw2,
                                                  const GuardedRows<scalar_t>& D, double* dacc, scalar_t* du) {
  using V = Vec<scalar_t>;
  using Rg = typename V::R;
  constexpr int N = V::N;
  scalar_t *D0 = D[0], *D1 = D[1], *D2 = D[2];
  std::fill(D0, D0 + R.ns, scalar_t(0));
  std::fill(D1, D1 + R.ns, scalar_t(0));
  std::fill(D2, D2 + R.ns, scalar_t(0));
  std::fill(dacc, dacc + C * kBwdSums * N, 0.0);
  for (int64_t i0 = 0; i0 < R.ns; i0 += kTile) {
    const int64_t i1 = std::min(R.ns, i0 + kTile);
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t rs = rstd[c];
      const Rg w0 = V::set1(w1[c * 3]), w1_ = V::set1(w1[c * 3 + 1]), w2_ = V::set1(w1[c * 3 + 2]);
      const Rg c0 = V::set1(static_cast<scalar_t>(double(b1[c]) - double(mean[c])));
      const Rg vsc = V::set1(ga[c] * rs), vbe = V::set1(be[c]);  // z as the forward computes it
      const Rg v0 = V::set1(w2[c * 3]), v1 = V::set1(w2[c * 3 + 1]), v2 = V::set1(w2[c * 3 + 2]);
      const scalar_t al = rs * ga[c];
      const Rg aw0 = V::set1(al * w1[c * 3]), aw1 = V::set1(al * w1[c * 3 + 1]), aw2 = V::set1(al * w1[c * 3 + 2]);
      Rg sb = V::zero(), sg = V::zero(), p0 = V::zero(), p1 = V::zero(), p2 = V::zero();
      Rg q0 = V::zero(), q1 = V::zero(), q2 = V::zero();
      for (int64_t i = i0; i < i1; i += N) {
        const Rg xm = V::loadu(x + i - 1), x0 = V::load(x + i), xp = V::loadu(x + i + 1);
        const Rg gp = V::loadu(go + i + 1), g0 = V::load(go + i), gm = V::loadu(go + i - 1);
        const Rg h = V::fma(w2_, xp, V::fma(w1_, x0, V::fma(w0, xm, c0)));
        const Rg z = V::fma(h, vsc, vbe);
        const Rg msk = V::and_(V::gt0(z), V::load(valid + i));
        const Rg d = V::and_(V::fma(v2, gm, V::fma(v1, g0, V::mul(v0, gp))), msk);
        sb = V::add(sb, d);
        sg = V::fma(d, h, sg);  // sum d (h - mean); times rstd below gives sum d xhat
        if (weights) {
          const Rg a = V::and_(z, msk);
          p0 = V::fma(d, xm, p0);
          p1 = V::fma(d, x0, p1);
          p2 = V::fma(d, xp, p2);
          q0 = V::fma(a, gp, q0);
          q1 = V::fma(a, g0, q1);
          q2 = V::fma(a, gm, q2);
        }
        V::store(D0 + i, V::fma(aw0, d, V::load(D0 + i)));
        V::store(D1 + i, V::fma(aw1, d, V::load(D1 + i)));
        V::store(D2 + i, V::fma(aw2, d, V::load(D2 + i)));
      }
      alignas(64) scalar_t lanes[kBwdSums][N];
      V::store(lanes[kSb], sb);
      V::store(lanes[kSg], sg);
      V::store(lanes[kP0], p0);
      V::store(lanes[kP1], p1);
      V::store(lanes[kP2], p2);
      V::store(lanes[kQ0], q0);
      V::store(lanes[kQ1], q1);
      V::store(lanes[kQ2], q2);
      double* acc = dacc + c * kBwdSums * N;
      for (int s = 0; s < (weights ? kBwdSums : 2); ++s)
        for (int l = 0; l < N; ++l) acc[s * N + l] += static_cast<double>(lanes[s][l]);
    }
  }
  // per channel: the sums, the closed-form terms, and the bank's share of dh's affine part
  double F[3] = {0, 0, 0}, E[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
  for (int64_t c = 0; c < C; ++c) {
    double tot[kBwdSums];
    for (int s = 0; s < kBwdSums; ++s) {
      double v = 0;
      for (int l = 0; l < N; ++l) v += dacc[(c * kBwdSums + s) * N + l];
      tot[s] = v;
    }
    const double rs = rstd[c], g = ga[c], sb = tot[kSb], sg = rs * tot[kSg];
    const double w[3] = {double(w1[c * 3]), double(w1[c * 3 + 1]), double(w1[c * 3 + 2])};
    // dh = alpha d + beta2 + gam sum_s w_s x_s, with alpha = rstd gamma (applied in the pass above)
    double beta2 = 0, gam = 0;
    if (training) {
      const double m1 = g * sb / xs.n, m2 = g * sg / xs.n;
      gam = -rs * rs * m2;
      beta2 = -rs * m1 + gam * static_cast<double>(static_cast<scalar_t>(double(b1[c]) - double(mean[c])));
      for (int t = 0; t < 3; ++t) {
        F[t] += w[t] * beta2;
        for (int s = 0; s < 3; ++s) E[t][s] += gam * w[t] * w[s];
      }
    }
    if (weights) {
      const double al = rs * g;
      dg[c] = static_cast<scalar_t>(sg);
      dbt[c] = static_cast<scalar_t>(sb);
      double wS = 0;
      for (int t = 0; t < 3; ++t) {
        double wG = 0;
        for (int s = 0; s < 3; ++s) wG += w[s] * xs.G[s][t];
        dw1[c * 3 + t] = static_cast<scalar_t>(al * tot[kP0 + t] + beta2 * xs.S[t] + gam * wG);
        dw2[c * 3 + t] = static_cast<scalar_t>(tot[kQ0 + t]);
        wS += w[t] * xs.S[t];
      }
      db1[c] = static_cast<scalar_t>(al * sb + beta2 * xs.n + gam * wS);
    }
  }
  if (training) {
    const Rg f0 = V::set1(static_cast<scalar_t>(F[0])), f1 = V::set1(static_cast<scalar_t>(F[1]));
    const Rg f2 = V::set1(static_cast<scalar_t>(F[2]));
    Rg e[3][3];
    for (int t = 0; t < 3; ++t)
      for (int s = 0; s < 3; ++s) e[t][s] = V::set1(static_cast<scalar_t>(E[t][s]));
    for (int64_t i = 0; i < R.ns; i += N) {
      const Rg xm = V::loadu(x + i - 1), x0 = V::load(x + i), xp = V::loadu(x + i + 1);
      const Rg m = V::load(valid + i);
      const Rg t0 = V::fma(e[0][2], xp, V::fma(e[0][1], x0, V::fma(e[0][0], xm, f0)));
      const Rg t1 = V::fma(e[1][2], xp, V::fma(e[1][1], x0, V::fma(e[1][0], xm, f1)));
      const Rg t2 = V::fma(e[2][2], xp, V::fma(e[2][1], x0, V::fma(e[2][0], xm, f2)));
      V::store(D0 + i, V::add(V::load(D0 + i), V::and_(t0, m)));
      V::store(D1 + i, V::add(V::load(D1 + i), V::and_(t1, m)));
      V::store(D2 + i, V::add(V::load(D2 + i), V::and_(t2, m)));
    }
  }
  // du[j] = sum_t D_t[j - t + 1]
  scalar_t* o = D[3];
  for (int64_t i = 0; i < R.ns; i += N)
    V::store(o + i, V::add(V::add(V::loadu(D0 + i + 1), V::load(D1 + i)), V::loadu(D2 + i - 1)));
  R.unpad(o, du);
}

template <typename scalar_t>
void cnn3_forward(int64_t T, int64_t B, int64_t L, int64_t K, int64_t C, const scalar_t* u, const scalar_t* w1p,
                  const scalar_t* b1p, const scalar_t* gp, const scalar_t* bp, const scalar_t* w2p,
                  const scalar_t* b2p, scalar_t* mp, scalar_t* vp, scalar_t* rp, scalar_t* op, bool training,
                  double eps) {
  using V = Vec<scalar_t>;
  const Rows<scalar_t> R(B, L, 1);
  GuardedRows<scalar_t> xrows(R.ns, T + 1);  // the trials' padded inputs, then the valid mask
  std::vector<XStats> xs(T);
  fill_valid(R, xrows[T]);
  at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      R.pad(u + t * B * L, xrows[t]);
      xs[t] = x_stats(R, xrows[t]);
    }
  });
  at::parallel_for(0, T * K, 1, [&](int64_t q0, int64_t q1) {
    GuardedRows<scalar_t> A(R.ns, 4);
    Scratch<scalar_t> cst(C * kFwdConsts * V::N);
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t t = q / K, j = q * C;
      cnn3_forward_bank(R, xrows[t], xrows[T], xs[t], C, w1p + j * 3, b1p + j, gp + j, bp + j, w2p + j * 3, b2p[q],
                        mp + j, vp + j, rp + j, training, eps, A, cst.data(), op + q * B * L);
    }
  });
}

template <typename scalar_t>
void cnn3_backward(int64_t T, int64_t B, int64_t L, int64_t K, int64_t C, const scalar_t* go, const scalar_t* u,
                   const scalar_t* mp, const scalar_t* rp, const scalar_t* w1p, const scalar_t* b1p,
                   const scalar_t* gp, const scalar_t* bp, const scalar_t* w2p, scalar_t* dup, scalar_t* dw1p,
                   scalar_t* db1p, scalar_t* dgp, scalar_t* dbp, scalar_t* dw2p, scalar_t* db2p, bool training,
                   bool weights) {
  using V = Vec<scalar_t>;
  using acc_t = at::acc_type<scalar_t, false>;
  const Rows<scalar_t> R(B, L, 1);
  GuardedRows<scalar_t> xrows(R.ns, T + 1);
  std::vector<XStats> xs(T);
  fill_valid(R, xrows[T]);
  at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      R.pad(u + t * B * L, xrows[t]);
      xs[t] = x_stats(R, xrows[t]);
    }
  });
  // each bank's share of u's gradient; banks of one trial are added in k order below
  Scratch<scalar_t> part(K > 1 ? T * K * B * L : 0);
  at::parallel_for(0, T * K, 1, [&](int64_t q0, int64_t q1) {
    GuardedRows<scalar_t> D(R.ns, 5);  // D_0..D_2, the output row, the padded grad_out
    std::vector<double> dacc(C * kBwdSums * V::N);
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t t = q / K, j = q * C;
      scalar_t* g = D[4];
      R.pad(go + q * B * L, g);
      db2p[q] = static_cast<scalar_t>(Rows<scalar_t>::template blocked_sum<acc_t>(g, R.n));
      scalar_t* du = K > 1 ? part.data() + q * B * L : dup + t * B * L;
      if (weights)
        cnn3_backward_bank<scalar_t, true>(R, xrows[t], xrows[T], xs[t], C, g, w1p + j * 3, b1p + j, gp + j, bp + j,
                                           w2p + j * 3, mp + j, rp + j, training, dw1p + j * 3, db1p + j, dgp + j,
                                           dbp + j, dw2p + j * 3, D, dacc.data(), du);
      else
        cnn3_backward_bank<scalar_t, false>(R, xrows[t], xrows[T], xs[t], C, g, w1p + j * 3, b1p + j, gp + j,
                                            bp + j, w2p + j * 3, mp + j, rp + j, training, dw1p + j * 3, db1p + j,
                                            dgp + j, dbp + j, dw2p + j * 3, D, dacc.data(), du);
    }
  });
  if (K > 1)
    at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        scalar_t* d = dup + t * B * L;
        const scalar_t* p = part.data() + t * K * B * L;
        for (int64_t i = 0; i < B * L; ++i) d[i] = p[i];
        for (int64_t k = 1; k < K; ++k)
          for (int64_t i = 0; i < B * L; ++i) d[i] += p[k * B * L + i];
      }
    });
}
#pragma GCC pop_options

// The kernels the two ops run: the SIMD fast path for 3-tap kernels (the paper's CNN), the general
// path for other kernel sizes. The arguments are those of cnn_forward_general / cnn_backward_general.
template <typename scalar_t>
void cnn_forward_kernel(int64_t T, int64_t B, int64_t L, int64_t K, int64_t C, int64_t k1, int64_t k2,
                        const scalar_t* u, const scalar_t* w1p, const scalar_t* b1p, const scalar_t* gp,
                        const scalar_t* bp, const scalar_t* w2p, const scalar_t* b2p, scalar_t* mp, scalar_t* vp,
                        scalar_t* rp, scalar_t* op, bool training, double eps) {
  if (k1 == 3 && k2 == 3)
    return cnn3_forward(T, B, L, K, C, u, w1p, b1p, gp, bp, w2p, b2p, mp, vp, rp, op, training, eps);
  cnn_forward_general(T, B, L, K, C, k1, k2, u, w1p, b1p, gp, bp, w2p, b2p, mp, vp, rp, op, training, eps);
}

template <typename scalar_t>
void cnn_backward_kernel(int64_t T, int64_t B, int64_t L, int64_t K, int64_t C, int64_t k1, int64_t k2,
                         const scalar_t* go, const scalar_t* u, const scalar_t* mp, const scalar_t* rp,
                         const scalar_t* w1p, const scalar_t* b1p, const scalar_t* gp, const scalar_t* bp,
                         const scalar_t* w2p, scalar_t* dup, scalar_t* dw1p, scalar_t* db1p, scalar_t* dgp,
                         scalar_t* dbp, scalar_t* dw2p, scalar_t* db2p, bool training, bool weights) {
  if (k1 == 3 && k2 == 3)
    return cnn3_backward(T, B, L, K, C, go, u, mp, rp, w1p, b1p, gp, bp, w2p, dup, dw1p, db1p, dgp, dbp, dw2p, db2p,
                         training, weights);
  cnn_backward_general(T, B, L, K, C, k1, k2, go, u, mp, rp, w1p, b1p, gp, bp, w2p, dup, dw1p, db1p, dgp, dbp, dw2p,
                       db2p, training, weights);
}

}  // namespace

// T banks, one per trial: u (T,B,1,L), parameters and statistics with a leading T; out (T,K,B,1,L).
// BatchNorm's statistics of trial t are over trial t's batch only.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cnn_forward_batched_cpu(
    const at::Tensor& u_, const at::Tensor& w1_, const at::Tensor& b1_, const at::Tensor& gamma_,
    const at::Tensor& beta_, const at::Tensor& w2_, const at::Tensor& b2_, const at::Tensor& running_mean,
    const at::Tensor& running_var, bool training, double eps) {
  check_cnn_batched(u_, w1_, b1_, gamma_, beta_, w2_, &b2_);
  auto u = u_.contiguous(), w1 = w1_.contiguous(), b1 = b1_.contiguous(), gamma = gamma_.contiguous();
  auto beta = beta_.contiguous(), w2 = w2_.contiguous(), b2 = b2_.contiguous();
  const int64_t T = u.size(0), B = u.size(1), L = u.size(3);
  const int64_t K = w1.size(1), C = w1.size(2), k1 = w1.size(3), k2 = w2.size(3);
  TORCH_CHECK(training || (running_mean.sizes() == gamma.sizes() && running_var.sizes() == gamma.sizes()),
              "das: cnn in eval mode needs running_mean and running_var of shape (T, K, C) = ", gamma.sizes(),
              ", got ", running_mean.sizes(), " and ", running_var.sizes());
  auto out = at::empty({T, K, B, 1, L}, u.options());
  at::Tensor mean, var;
  if (training) {
    mean = at::empty(gamma.sizes(), u.options());
    var = at::empty(gamma.sizes(), u.options());
  } else {
    mean = running_mean.to(u.scalar_type()).contiguous().clone();  // outputs never alias inputs
    var = running_var.to(u.scalar_type()).contiguous().clone();
  }
  auto rstd = at::empty(gamma.sizes(), u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "das_cnn_forward", [&] {
    cnn_forward_kernel<scalar_t>(T, B, L, K, C, k1, k2, u.data_ptr<scalar_t>(), w1.data_ptr<scalar_t>(),
                                 b1.data_ptr<scalar_t>(), gamma.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(),
                                 w2.data_ptr<scalar_t>(), b2.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(),
                                 var.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                 training, eps);
  });
  return {out, mean, var, rstd};
}

// Returns the gradients for (u, w1, b1, gamma, beta, w2, b2); with weight_grads false only u's is computed
// and the six parameter gradients are zeros (what autograd needs when no parameter's gradient is wanted).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
cnn_backward_batched_cpu(const at::Tensor& go_, const at::Tensor& u_, const at::Tensor& mean_,
                         const at::Tensor& rstd_, const at::Tensor& w1_, const at::Tensor& b1_,
                         const at::Tensor& gamma_, const at::Tensor& beta_, const at::Tensor& w2_, bool training,
                         bool weight_grads) {
  check_cnn_batched(u_, w1_, b1_, gamma_, beta_, w2_, nullptr);
  const int64_t T = u_.size(0), B = u_.size(1), L = u_.size(3);
  const int64_t K = w1_.size(1), C = w1_.size(2);
  const std::vector<int64_t> go_shape{T, K, B, 1, L};
  TORCH_CHECK(go_.sizes() == at::IntArrayRef(go_shape), "das: cnn_backward grad_out must be (T, K, B, 1, L) = ",
              at::IntArrayRef(go_shape), ", got ", go_.sizes());
  check_same(u_, go_, "u", "grad_out");
  TORCH_CHECK(mean_.sizes() == gamma_.sizes() && rstd_.sizes() == gamma_.sizes(),
              "das: cnn_backward mean and rstd must be (T, K, C) = ", gamma_.sizes());
  check_same(u_, mean_, "u", "mean");
  check_same(u_, rstd_, "u", "rstd");
  auto go = go_.contiguous(), u = u_.contiguous(), mean = mean_.contiguous(), rstd = rstd_.contiguous();
  auto w1 = w1_.contiguous(), b1 = b1_.contiguous(), gamma = gamma_.contiguous(), beta = beta_.contiguous();
  auto w2 = w2_.contiguous();
  const int64_t k1 = w1.size(3), k2 = w2.size(3);
  auto du = at::empty_like(u);
  auto dw1 = at::empty_like(w1), db1 = at::empty(gamma.sizes(), u.options());
  auto dgamma = at::empty(gamma.sizes(), u.options()), dbeta = at::empty(gamma.sizes(), u.options());
  auto dw2 = at::empty_like(w2);
  auto db2 = at::empty({T, K}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "das_cnn_backward", [&] {
    cnn_backward_kernel<scalar_t>(T, B, L, K, C, k1, k2, go.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(),
                                  mean.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>(), w1.data_ptr<scalar_t>(),
                                  b1.data_ptr<scalar_t>(), gamma.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(),
                                  w2.data_ptr<scalar_t>(), du.data_ptr<scalar_t>(), dw1.data_ptr<scalar_t>(),
                                  db1.data_ptr<scalar_t>(), dgamma.data_ptr<scalar_t>(), dbeta.data_ptr<scalar_t>(),
                                  dw2.data_ptr<scalar_t>(), db2.data_ptr<scalar_t>(), training, weight_grads);
  });
  if (!weight_grads)
    for (auto* t : {&dw1, &db1, &dgamma, &dbeta, &dw2, &db2}) t->zero_();
  return {du, dw1, db1, dgamma, dbeta, dw2, db2};
}

}  // namespace das
