// Normalised-weight margin softmax cross-entropy on the GPU (ArcFace / CosFace / combined margins,
// exact or straight-through margin gradient, margin or AACE loss): the twin of kernels/cpu/margin_softmax.
//
// What it computes, for embeddings f [B, d], centres W [C, d], labels y [B]:
//   norms |f_i|, |W_j|; dots f·Wᵀ (cuBLAS); per row, in one pass over the dots: cosine, clamp, margin
//   on the target, scale, max and sum of exps of the non-targets (online); loss per row; then in a
//   second pass the logits gradient H in place; backward: grad_f = P_f(H·W), grad_W = P_W(Hᵀ·f)
//   (two cuBLAS GEMMs, then the normalisation's projection, one warp per row).
// FLOPs: 2·B·C·d per GEMM, three GEMMs (four when the classes are processed in column blocks).
// Minimum bytes moved outside the GEMMs, f32: per element of [B, C] 16 B (the GEMM writes the dot,
// the stats pass reads it, the gradient pass reads it and writes H); per element of W 16 B (norm
// pass reads W; projection reads W and grad_W and writes grad_W); the same per element of f.
// At B = 128, d = 512 that is 10 KB per class: 10 GB at C = 10^6, about 2.4 ms at 4.3 TB/s.
// Determinism: partial row statistics per (row, column segment) with a geometry fixed by B and C,
// combined in segment order; no atomics. Benchmark: bench_cuda_kernels (benchmarks/cuda_kernels.cpp).
#include <cfloat>
#include <climits>
#include <cmath>

#include "kernels/cuda/fused.h"
#include "kernels/cuda/fused_util.cuh"

namespace ff::cuda {

using namespace fused;

namespace {

constexpr int kRows = 8;                 // rows per block: a column's 1/|W_j| is loaded once for all of them
constexpr int kTile = 4 * kThreads;      // columns a block covers per step
constexpr int64_t kTargetBlocks = 1024;  // fixed, not from the SM count: partial sums stay GPU-independent
constexpr int64_t kMaxSeg = 256;

// ---- scalar helpers (double, as the CPU steps) ----

__host__ __device__ inline double inv_norm(double n) { return 1.0 / (n < cpu::kNormEps ? cpu::kNormEps : n); }

__device__ inline int64_t local_target(const int64_t* labels, int64_t i, int64_t C, int64_t class_begin) {
  int64_t y = labels[i] - class_begin;
  return y >= 0 && y < C ? y : -1;
}

__device__ inline double log_add_exp(double a, double b) {
  double hi = a > b ? a : b, lo = a > b ? b : a;
  if (hi == -INFINITY) return hi;
  return hi + log1p(exp(lo - hi));
}

__device__ inline double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

__device__ inline float fast_exp(float x) { return __expf(x); }
__device__ inline double fast_exp(double x) { return exp(x); }

// The clamped cosine from a raw dot, exactly as every pass computes it (so the passes agree bitwise).
template <class T>
__device__ inline T cos_of(T dot, T inv_f, T inv_w) {
  T c = dot * inv_f * inv_w;
  return c < T(-1) ? T(-1) : (c > T(1) ? T(1) : c);  // NaN passes through
}

// (m, s) ← the pair of (max, Σ exp(z − max)) over the union of two sets; -inf max means empty.
__device__ inline void combine(double& m, double& s, double m2, double s2) {
  const double M = m > m2 ? m : m2;
  const double a = m == -INFINITY ? 0.0 : s * exp(m - M);
  const double b = m2 == -INFINITY ? 0.0 : s2 * exp(m2 - M);
  m = M;
  s = a + b;
}

// ---- geometry of the [B, C] passes: blocks of kRows rows × one column segment ----

struct PassGrid {
  int64_t nseg = 1, segw = kTile;
  dim3 grid;
};

PassGrid pass_grid(int64_t B, int64_t C) {
  PassGrid g;
  const int64_t groups = (B + kRows - 1) / kRows;
  const int64_t tiles = (C + kTile - 1) / kTile;
  int64_t nseg = (kTargetBlocks + groups - 1) / groups;
  nseg = nseg < 1 ? 1 : nseg;
  nseg = nseg > kMaxSeg ? kMaxSeg : nseg;
  nseg = nseg > tiles ? tiles : nseg;
  g.segw = (tiles + nseg - 1) / nseg * kTile;
  g.nseg = (C + g.segw - 1) / g.segw;
  FF_CHECK(groups <= 65535, "margin softmax: batch ", B, " exceeds ", 65535 * kRows, " rows");
  g.grid = dim3((unsigned)g.nseg, (unsigned)groups);
  return g;
}

template <class T>
struct PassArgs {
  int64_t B, C, class_begin, nseg, segw;
  const int64_t* labels;
  const double* f_norm;
  const double* w_norm;
  MarginParams p;
};

// Column of slot q (0..3) of this thread in the tile starting at `base`: 4 consecutive columns per
// thread for 16-byte access, else columns kThreads apart (coalesced single loads).
template <bool kVec>
__device__ inline int64_t col_of(int64_t base, int q) {
  return kVec ? base + 4 * threadIdx.x + q : base + threadIdx.x + (int64_t)q * kThreads;
}

template <class T, bool kVec>
__device__ inline void load_dots(const T* row, int64_t base, int64_t C, T (&v)[4]) {
  if constexpr (kVec) {
    const int64_t j = col_of<true>(base, 0);
    if (j < C) {  // C % 4 == 0 here, so all four are in the row
      load<4>(row + j, v);
    } else {
#pragma unroll
      for (int q = 0; q < 4; ++q) v[q] = T(0);
    }
  } else {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t j = col_of<false>(base, q);
      v[q] = j < C ? row[j] : T(0);
    }
  }
}

template <class T, bool kVec>
__device__ inline void store_grads(T* row, int64_t base, int64_t C, const T (&v)[4]) {
  if constexpr (kVec) {
    const int64_t j = col_of<true>(base, 0);
    if (j < C) store<4>(row + j, v);
  } else {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t j = col_of<false>(base, q);
      if (j < C) row[j] = v[q];
    }
  }
}

// ---- kernels ----

// norms[i] = |x_i|: one warp per row, double accumulation.
template <class T, bool kVec>
__global__ void __launch_bounds__(kThreads) row_norms_kernel(int64_t n, int64_t d, const T* x, double* norms) {
  const int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;
  const T* xi = x + row * d;
  double s = 0;
  if (kVec) {
    for (int64_t k = 4 * lane; k < d; k += 128) {
      T v[4];
      load<4>(xi + k, v);
#pragma unroll
      for (int q = 0; q < 4; ++q) s += (double)v[q] * (double)v[q];
    }
  } else {
    for (int64_t k = lane; k < d; k += 32) s += (double)xi[k] * (double)xi[k];
  }
  s = warp_reduce(s, [](double a, double b) { return a + b; });
  if (lane == 0) norms[row] = sqrt(s);
}

// g_i -= x_i (x_i·g_i) / |x_i|²: one warp per row; the second read of the row hits L1.
template <class T, bool kVec>
__global__ void __launch_bounds__(kThreads)
    project_rows_kernel(int64_t n, int64_t d, const T* x, const double* norms, T* g) {
  const int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;
  const double nr = norms[row];
  if (!(nr >= cpu::kNormEps)) return;  // divided by the constant kNormEps: nothing to project out
  const T* xi = x + row * d;
  T* gi = g + row * d;
  double dot = 0;
  if (kVec) {
    for (int64_t k = 4 * lane; k < d; k += 128) {
      T a[4], b[4];
      load<4>(xi + k, a);
      load<4>(gi + k, b);
#pragma unroll
      for (int q = 0; q < 4; ++q) dot += (double)a[q] * (double)b[q];
    }
  } else {
    for (int64_t k = lane; k < d; k += 32) dot += (double)xi[k] * (double)gi[k];
  }
  dot = warp_reduce(dot, [](double a, double b) { return a + b; });
  const T coef = (T)(dot / (nr * nr));
  if (kVec) {
    for (int64_t k = 4 * lane; k < d; k += 128) {
      T a[4], b[4];
      load<4>(xi + k, a);
      load<4>(gi + k, b);
#pragma unroll
      for (int q = 0; q < 4; ++q) b[q] -= coef * a[q];
      store<4>(gi + k, b);
    }
  } else {
    for (int64_t k = lane; k < d; k += 32) gi[k] -= coef * xi[k];
  }
}

// Per (row, column segment): max and Σ exp(z − max) of the non-target margin logits.
template <class T, bool kVec>
__global__ void __launch_bounds__(kThreads)
    row_stats_kernel(PassArgs<T> a, const T* buf, double* part_m, double* part_s) {
  const int64_t r0 = (int64_t)blockIdx.y * kRows, seg = blockIdx.x;
  const int64_t seg_begin = seg * a.segw, seg_end = seg_begin + a.segw < a.C ? seg_begin + a.segw : a.C;
  const T s = (T)a.p.s;
  T inv_f[kRows], m[kRows];
  int64_t y[kRows];
  double sum[kRows];
#pragma unroll
  for (int rr = 0; rr < kRows; ++rr) {
    const int64_t r = r0 + rr;
    const bool valid = r < a.B;
    inv_f[rr] = valid ? (T)inv_norm(a.f_norm[r]) : T(0);
    y[rr] = valid ? local_target(a.labels, r, a.C, a.class_begin) : -1;
    m[rr] = -(T)INFINITY;
    sum[rr] = 0;
  }
  for (int64_t base = seg_begin; base < seg_end; base += kTile) {
    T inv_w[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t j = col_of<kVec>(base, q);
      inv_w[q] = j < a.C ? (T)inv_norm(a.w_norm[j]) : T(0);
    }
#pragma unroll
    for (int rr = 0; rr < kRows; ++rr) {
      const int64_t r = r0 + rr;
      if (r >= a.B) break;
      T dots[4];
      load_dots<T, kVec>(buf + r * a.C, base, a.C, dots);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int64_t j = col_of<kVec>(base, q);
        if (j >= a.C || j == y[rr]) continue;
        const T z = cos_of(dots[q], inv_f[rr], inv_w[q]) * s;
        if (z > m[rr]) {  // online: rescale the sum to the new max (m = -inf: sum is 0)
          sum[rr] = sum[rr] * (double)fast_exp(m[rr] - z) + 1.0;
          m[rr] = z;
        } else {
          sum[rr] += (double)fast_exp(z - m[rr]);
        }
      }
    }
  }
  // Block reduction per row: warps by shuffles, then the warps in index order.
  __shared__ double sm_m[kRows][kThreads / 32], sm_s[kRows][kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int rr = 0; rr < kRows; ++rr) {
    double mm = (double)m[rr], ss = sum[rr];
    for (int off = 16; off > 0; off >>= 1) {
      const double m2 = __shfl_xor_sync(0xffffffffu, mm, off), s2 = __shfl_xor_sync(0xffffffffu, ss, off);
      combine(mm, ss, m2, s2);
    }
    if (lane == 0) {
      sm_m[rr][warp] = mm;
      sm_s[rr][warp] = ss;
    }
  }
  __syncthreads();
  if (threadIdx.x < kRows && r0 + threadIdx.x < a.B) {
    const int rr = threadIdx.x;
    double mm = sm_m[rr][0], ss = sm_s[rr][0];
    for (int w = 1; w < kThreads / 32; ++w) combine(mm, ss, sm_m[rr][w], sm_s[rr][w]);
    part_m[(r0 + rr) * a.nseg + seg] = mm;
    part_s[(r0 + rr) * a.nseg + seg] = ss;
  }
}

// One thread per row: combines the segments in order, reads the target's dot, writes or merges rows.
template <class T>
__global__ void __launch_bounds__(kThreads)
    row_stats_finish_kernel(PassArgs<T> a, const T* buf, const double* part_m, const double* part_s, MarginRows rows,
                            bool accumulate) {
  const int64_t r = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  if (r >= a.B) return;
  double m = -INFINITY, s = 0;
  for (int64_t seg = 0; seg < a.nseg; ++seg) combine(m, s, part_m[r * a.nseg + seg], part_s[r * a.nseg + seg]);
  const int64_t y = local_target(a.labels, r, a.C, a.class_begin);
  double tc = 0, tl = 0;
  if (y >= 0) {
    const T c = cos_of(buf[r * a.C + y], (T)inv_norm(a.f_norm[r]), (T)inv_norm(a.w_norm[y]));
    tc = (double)c;
    tl = a.p.s * cpu::margin_psi(a.p, tc);
  }
  if (accumulate) {
    double mm = rows.max_other[r], ss = rows.sum_other[r];
    combine(mm, ss, m, s);
    m = mm;
    s = ss;
    tc += rows.target_cos[r];
    tl += rows.target_logit[r];
  }
  rows.max_other[r] = m;
  rows.sum_other[r] = s;
  rows.target_cos[r] = tc;
  rows.target_logit[r] = tl;
}

// Per-row constants of the gradient pass (one thread per row), so the [B, C] pass has no
// transcendental work besides one exp per element: exp base and factor of the non-target terms, the
// row's scale, 1/|f_i|, and the target's own H value (with dψ/dc in exact mode).
constexpr int kRowConsts = 5;

template <class T>
__global__ void __launch_bounds__(kThreads)
    grad_row_consts_kernel(PassArgs<T> a, MarginRows rows, double scale, double sin_floor, double* consts) {
  const int64_t r = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  if (r >= a.B) return;
  const bool aace = a.p.loss == MarginLoss::Aace;
  const double lso = rows.max_other[r] + log(rows.sum_other[r]), zy = rows.target_logit[r];
  const double lse = log_add_exp(zy, lso);
  const double row_scale = scale * a.p.s * inv_norm(a.f_norm[r]);
  double* c = consts + r * kRowConsts;
  // Non-targets: margin p_j = exp(z_j − lse); aace p_j − t_j = −p_y·exp(z_j − lso) with
  // p_y = sigmoid(zy − lso), as in the CPU twin (expm1(lso − lse) rounds to 0 once p_y < ulp(lso)).
  c[0] = aace ? lso : lse;
  c[1] = aace ? -1.0 / (1.0 + exp(lso - zy)) : 1.0;
  c[2] = row_scale;
  c[3] = inv_norm(a.f_norm[r]);
  c[4] = 0;
  const int64_t y = local_target(a.labels, r, a.C, a.class_begin);
  if (y >= 0) {
    // Target: margin p_y − 1 = −exp(lso − lse); aace p_y − t_y = p_y; times dψ/dc when exact.
    const double g = aace ? exp(zy - lse) : -exp(lso - lse);
    const double dpsi = a.p.grad == MarginGrad::Exact ? cpu::margin_dpsi(a.p, rows.target_cos[r], sin_floor) : 1.0;
    c[4] = (double)(T)(g * dpsi * row_scale * inv_norm(a.w_norm[y]));
  }
}

// buf: raw dots -> H_ij = scale · dL_i/dcos_ij / (|f_i||W_j|) (see cpu::logits_to_grad).
template <class T, bool kVec>
__global__ void __launch_bounds__(kThreads) logits_to_grad_kernel(PassArgs<T> a, const double* consts, T* buf) {
  const int64_t r0 = (int64_t)blockIdx.y * kRows, seg = blockIdx.x;
  const int64_t seg_begin = seg * a.segw, seg_end = seg_begin + a.segw < a.C ? seg_begin + a.segw : a.C;
  const T s = (T)a.p.s;
  T inv_f[kRows], base_z[kRows], factor[kRows], rs[kRows], target_h[kRows];
  int64_t y[kRows];
#pragma unroll
  for (int rr = 0; rr < kRows; ++rr) {
    const int64_t r = r0 + rr;
    const bool valid = r < a.B;
    const double* c = consts + (valid ? r : 0) * kRowConsts;
    y[rr] = valid ? local_target(a.labels, r, a.C, a.class_begin) : -1;
    base_z[rr] = (T)c[0];
    factor[rr] = (T)c[1];
    rs[rr] = (T)c[2];
    inv_f[rr] = (T)c[3];
    target_h[rr] = (T)c[4];
  }
  for (int64_t base = seg_begin; base < seg_end; base += kTile) {
    T inv_w[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t j = col_of<kVec>(base, q);
      inv_w[q] = j < a.C ? (T)inv_norm(a.w_norm[j]) : T(0);
    }
#pragma unroll
    for (int rr = 0; rr < kRows; ++rr) {
      const int64_t r = r0 + rr;
      if (r >= a.B) break;
      T* row = buf + r * a.C;
      T v[4];
      load_dots<T, kVec>(row, base, a.C, v);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const T z = cos_of(v[q], inv_f[rr], inv_w[q]) * s;
        const T g = fast_exp(z - base_z[rr]) * factor[rr];
        v[q] = col_of<kVec>(base, q) == y[rr] ? target_h[rr] : g * rs[rr] * inv_w[q];
      }
      store_grads<T, kVec>(row, base, a.C, v);
    }
  }
}

// One block: per-row loss and correctness (cpu::row_losses), and their mean in a fixed order.
__global__ void __launch_bounds__(kThreads)
    row_losses_kernel(MarginParams p, int64_t B, MarginRows rows, double* loss, int64_t* correct, double* loss_mean) {
  double total = 0;
  for (int64_t i = threadIdx.x; i < B; i += kThreads) {
    const double d = rows.max_other[i] + log(rows.sum_other[i]) - rows.target_logit[i];
    const double l = p.loss == MarginLoss::Margin ? softplus(d) : softplus(-d);
    if (loss) loss[i] = l;
    if (correct) correct[i] = p.s * rows.target_cos[i] > rows.max_other[i];
    total += l;
  }
  total = block_sum(total);
  if (threadIdx.x == 0 && loss_mean) *loss_mean = total / (double)B;
}

// ---- host side ----

template <class T>
bool vec_ok(int64_t width, const void* p) {
  return width % 4 == 0 && (uintptr_t)p % (4 * sizeof(T)) == 0;
}

template <class T>
PassArgs<T> pass_args(const MarginParams& p, int64_t B, int64_t C, int64_t class_begin, const int64_t* labels,
                      const double* f_norm, const double* w_norm, const PassGrid& g) {
  return PassArgs<T>{B, C, class_begin, g.nseg, g.segw, labels, f_norm, w_norm, p};
}

void check_sizes(const char* op, int64_t B, int64_t C, int64_t d) {
  FF_CHECK(B > 0 && C > 0 && d > 0, op, ": sizes B ", B, ", C ", C, ", d ", d, " must be positive");
  FF_CHECK(B <= INT_MAX && C <= INT_MAX && d <= INT_MAX, op, ": sizes B ", B, ", C ", C, ", d ", d,
           " exceed the cuBLAS index range");
}

// Column-major cuBLAS on row-major arrays: a row-major X [r, c] is the column-major Xᵀ [c, r].
void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, double alpha, const float* A,
          int64_t lda, const float* Bm, int64_t ldb, double beta, float* Cm, int64_t ldc, bool tf32) {
  const float al = (float)alpha, be = (float)beta;
  if (tf32)
    FF_CUBLAS_CHECK(cublasGemmEx(cublas(), ta, tb, (int)m, (int)n, (int)k, &al, A, CUDA_R_32F, (int)lda, Bm,
                                       CUDA_R_32F, (int)ldb, &be, Cm, CUDA_R_32F, (int)ldc,
                                       CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
  else
    FF_CUBLAS_CHECK(
        cublasSgemm(cublas(), ta, tb, (int)m, (int)n, (int)k, &al, A, (int)lda, Bm, (int)ldb, &be, Cm, (int)ldc));
}
void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, double alpha, const double* A,
          int64_t lda, const double* Bm, int64_t ldb, double beta, double* Cm, int64_t ldc, bool) {
  FF_CUBLAS_CHECK(cublasDgemm(cublas(), ta, tb, (int)m, (int)n, (int)k, &alpha, A, (int)lda, Bm, (int)ldb,
                                    &beta, Cm, (int)ldc));
}

// The backward GEMMs of one column block; grad_f accumulates when `accumulate_f` (projected later).
template <class T>
void backward_gemms(int64_t B, int64_t C, int64_t d, const T* f, const T* w, const T* buf, double grad_out, T* grad_f,
                    T* grad_w, bool accumulate_f, bool tf32) {
  if (grad_f)
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, d, B, C, grad_out, w, d, buf, C, accumulate_f ? 1.0 : 0.0, grad_f, d, tf32);
  if (grad_w) gemm(CUBLAS_OP_N, CUBLAS_OP_T, d, C, B, grad_out, f, d, buf, C, 0.0, grad_w, d, tf32);
}

// Workspace carving: 256-byte aligned pieces in a fixed order.
struct Carve {
  char* p;
  size_t used = 0;
  template <class U>
  U* take(int64_t n) {
    used = (used + 255) / 256 * 256;
    U* r = reinterpret_cast<U*>(p ? p + used : nullptr);
    used += (size_t)n * sizeof(U);
    return r;
  }
};

struct Workspace {
  double* f_norm;
  double* w_norm;
  MarginRows rows;
  void* buf;
  size_t bytes;
};

Workspace carve(const MarginShape& s, size_t elem_size, void* base) {
  Carve c{static_cast<char*>(base)};
  Workspace w;
  w.f_norm = c.take<double>(s.B);
  w.w_norm = c.take<double>(s.C);
  w.rows.target_cos = c.take<double>(s.B);
  w.rows.target_logit = c.take<double>(s.B);
  w.rows.max_other = c.take<double>(s.B);
  w.rows.sum_other = c.take<double>(s.B);
  const int64_t block = s.chunk <= 0 || s.chunk >= s.C ? s.C : s.chunk;
  w.buf = c.take<char>(s.B * block * (int64_t)elem_size);
  w.bytes = c.used;
  return w;
}

void check_shape(const MarginParams& p, const MarginShape& s) {
  check_sizes("margin_fused", s.B, s.C, s.d);
  FF_CHECK(s.chunk >= 0, "margin_fused: chunk ", s.chunk, " must be >= 0");
  FF_CHECK(p.loss != MarginLoss::Aace || s.C >= 2, "margin_fused: aace needs at least 2 classes, got C ", s.C);
}

}  // namespace

// ---- steps ----

template <class T>
void row_norms(int64_t n, int64_t d, const T* x, double* norms) {
  if (n == 0) return;
  FF_CHECK(d > 0, "row_norms: d ", d, " must be positive");
  const unsigned blocks = div_up(n, kThreads / 32);
  if (vec_ok<T>(d, x))
    row_norms_kernel<T, true><<<blocks, kThreads, 0, stream()>>>(n, d, x, norms);
  else
    row_norms_kernel<T, false><<<blocks, kThreads, 0, stream()>>>(n, d, x, norms);
  FF_CUDA_LAUNCH_CHECK("row_norms_kernel");
}

template <class T>
void logits_gemm(int64_t B, int64_t C, int64_t d, const T* f, const T* w, T* buf, bool tf32) {
  check_sizes("logits_gemm", B, C, d);
  gemm(CUBLAS_OP_T, CUBLAS_OP_N, C, B, d, 1.0, w, d, f, d, 0.0, buf, C, tf32);
}

template <class T>
void margin_row_stats(const MarginParams& p, int64_t B, int64_t C, int64_t class_begin, const int64_t* labels,
                      const double* f_norm, const double* w_norm, const T* buf, const MarginRows& rows,
                      bool accumulate) {
  FF_CHECK(B > 0 && C > 0, "margin_row_stats: sizes B ", B, ", C ", C, " must be positive");
  const PassGrid g = pass_grid(B, C);
  const PassArgs<T> a = pass_args<T>(p, B, C, class_begin, labels, f_norm, w_norm, g);
  auto* part = static_cast<double*>(scratch(Slot::Partials, (size_t)(2 * B * g.nseg) * sizeof(double)));
  double *part_m = part, *part_s = part + B * g.nseg;
  if (vec_ok<T>(C, buf))
    row_stats_kernel<T, true><<<g.grid, kThreads, 0, stream()>>>(a, buf, part_m, part_s);
  else
    row_stats_kernel<T, false><<<g.grid, kThreads, 0, stream()>>>(a, buf, part_m, part_s);
  FF_CUDA_LAUNCH_CHECK("row_stats_kernel");
  row_stats_finish_kernel<T>
      <<<div_up(B, kThreads), kThreads, 0, stream()>>>(a, buf, part_m, part_s, rows, accumulate);
  FF_CUDA_LAUNCH_CHECK("row_stats_finish_kernel");
}

void row_losses(const MarginParams& p, int64_t B, const MarginRows& rows, double* loss, int64_t* correct,
                double* loss_mean) {
  if (B == 0) return;
  row_losses_kernel<<<1, kThreads, 0, stream()>>>(p, B, rows, loss, correct, loss_mean);
  FF_CUDA_LAUNCH_CHECK("row_losses_kernel");
}

template <class T>
void logits_to_grad(const MarginParams& p, int64_t B, int64_t C, int64_t class_begin, const int64_t* labels,
                    const MarginRows& rows, const double* f_norm, const double* w_norm, double scale, T* buf) {
  FF_CHECK(B > 0 && C > 0, "logits_to_grad: sizes B ", B, ", C ", C, " must be positive");
  const PassGrid g = pass_grid(B, C);
  const PassArgs<T> a = pass_args<T>(p, B, C, class_begin, labels, f_norm, w_norm, g);
  const double sin_floor = std::sqrt(sizeof(T) == 4 ? (double)FLT_EPSILON : DBL_EPSILON);
  auto* consts = static_cast<double*>(scratch(Slot::RowConsts, (size_t)(B * kRowConsts) * sizeof(double)));
  grad_row_consts_kernel<T><<<div_up(B, kThreads), kThreads, 0, stream()>>>(a, rows, scale, sin_floor, consts);
  FF_CUDA_LAUNCH_CHECK("grad_row_consts_kernel");
  if (vec_ok<T>(C, buf))
    logits_to_grad_kernel<T, true><<<g.grid, kThreads, 0, stream()>>>(a, consts, buf);
  else
    logits_to_grad_kernel<T, false><<<g.grid, kThreads, 0, stream()>>>(a, consts, buf);
  FF_CUDA_LAUNCH_CHECK("logits_to_grad_kernel");
}

template <class T>
void project_rows(int64_t n, int64_t d, const T* x, const double* norms, T* g) {
  if (n == 0) return;
  const unsigned blocks = div_up(n, kThreads / 32);
  if (vec_ok<T>(d, x) && vec_ok<T>(d, g))
    project_rows_kernel<T, true><<<blocks, kThreads, 0, stream()>>>(n, d, x, norms, g);
  else
    project_rows_kernel<T, false><<<blocks, kThreads, 0, stream()>>>(n, d, x, norms, g);
  FF_CUDA_LAUNCH_CHECK("project_rows_kernel");
}

template <class T>
void margin_backward(int64_t B, int64_t C, int64_t d, const T* f, const double* f_norm, const T* w,
                     const double* w_norm, const T* buf, double grad_out, T* grad_f, T* grad_w, bool tf32) {
  check_sizes("margin_backward", B, C, d);
  backward_gemms(B, C, d, f, w, buf, grad_out, grad_f, grad_w, false, tf32);
  if (grad_f) project_rows(B, d, f, f_norm, grad_f);
  if (grad_w) project_rows(C, d, w, w_norm, grad_w);
}

// ---- the whole op ----

size_t margin_workspace_bytes(const MarginShape& s, size_t elem_size) { return carve(s, elem_size, nullptr).bytes; }

template <class T>
void margin_fused_forward(const MarginParams& p, const MarginShape& s, const int64_t* labels, const T* f, const T* w,
                          double grad_scale, void* workspace, const MarginOutputs& out) {
  check_shape(p, s);
  const Workspace ws = carve(s, sizeof(T), workspace);
  T* buf = static_cast<T*>(ws.buf);
  const int64_t block = s.chunk <= 0 || s.chunk >= s.C ? s.C : s.chunk;
  row_norms(s.B, s.d, f, ws.f_norm);
  row_norms(s.C, s.d, w, ws.w_norm);
  for (int64_t c0 = 0; c0 < s.C; c0 += block) {
    const int64_t n = s.C - c0 < block ? s.C - c0 : block;
    logits_gemm(s.B, n, s.d, f, w + c0 * s.d, buf, s.tf32);
    margin_row_stats(p, s.B, n, c0, labels, ws.f_norm, ws.w_norm + c0, buf, ws.rows, c0 > 0);
  }
  cuda::row_losses(p, s.B, ws.rows, out.loss, out.correct, out.loss_mean);
  if (out.target_cos)
    FF_CUDA_CHECK(cudaMemcpyAsync(out.target_cos, ws.rows.target_cos, (size_t)s.B * sizeof(double),
                                  cudaMemcpyDeviceToDevice, stream()));
  if (grad_scale != 0 && block == s.C)
    cuda::logits_to_grad(p, s.B, s.C, 0, labels, ws.rows, ws.f_norm, ws.w_norm, grad_scale, buf);
}

template <class T>
void margin_fused_backward(const MarginParams& p, const MarginShape& s, const int64_t* labels, const T* f, const T* w,
                           double grad_scale, double grad_out, void* workspace, T* grad_f, T* grad_w) {
  check_shape(p, s);
  FF_CHECK(grad_scale != 0, "margin_fused_backward: grad_scale is 0 (the forward pass computed no gradient)");
  const Workspace ws = carve(s, sizeof(T), workspace);
  T* buf = static_cast<T*>(ws.buf);
  const int64_t block = s.chunk <= 0 || s.chunk >= s.C ? s.C : s.chunk;
  if (block == s.C) {
    margin_backward(s.B, s.C, s.d, f, ws.f_norm, w, ws.w_norm, buf, grad_out, grad_f, grad_w, s.tf32);
    return;
  }
  for (int64_t c0 = 0; c0 < s.C; c0 += block) {
    const int64_t n = s.C - c0 < block ? s.C - c0 : block;
    logits_gemm(s.B, n, s.d, f, w + c0 * s.d, buf, s.tf32);
    cuda::logits_to_grad(p, s.B, n, c0, labels, ws.rows, ws.f_norm, ws.w_norm + c0, grad_scale, buf);
    T* gw = grad_w ? grad_w + c0 * s.d : nullptr;
    backward_gemms(s.B, n, s.d, f, w + c0 * s.d, buf, grad_out, grad_f, gw, c0 > 0, s.tf32);
    if (gw) project_rows(n, s.d, w + c0 * s.d, ws.w_norm + c0, gw);
  }
  if (grad_f) project_rows(s.B, s.d, f, ws.f_norm, grad_f);
}

#define FF_INSTANTIATE(T)                                                                                             \
  template void row_norms<T>(int64_t, int64_t, const T*, double*);                                                    \
  template void logits_gemm<T>(int64_t, int64_t, int64_t, const T*, const T*, T*, bool);                              \
  template void margin_row_stats<T>(const MarginParams&, int64_t, int64_t, int64_t, const int64_t*, const double*,    \
                                    const double*, const T*, const MarginRows&, bool);                                \
  template void logits_to_grad<T>(const MarginParams&, int64_t, int64_t, int64_t, const int64_t*, const MarginRows&,  \
                                  const double*, const double*, double, T*);                                          \
  template void margin_backward<T>(int64_t, int64_t, int64_t, const T*, const double*, const T*, const double*,       \
                                   const T*, double, T*, T*, bool);                                                   \
  template void project_rows<T>(int64_t, int64_t, const T*, const double*, T*);                                       \
  template void margin_fused_forward<T>(const MarginParams&, const MarginShape&, const int64_t*, const T*, const T*,  \
                                        double, void*, const MarginOutputs&);                                         \
  template void margin_fused_backward<T>(const MarginParams&, const MarginShape&, const int64_t*, const T*, const T*, \
                                         double, double, void*, T*, T*);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff::cuda
