// CPU steps of the margin softmax cross-entropy (see margin_softmax.h): the three B x C x d products
// through cpu::gemm (OpenBLAS, kept single-threaded: kernels/cpu/gemm.h), the per-row work OpenMP
// over rows. Every per-row loop is sequential within its row, so results do not depend on the
// thread count. The products run on one core: at hundreds of thousands of classes they dominate a
// CPU step (gemm_parallel would spread them, at the price of another summation order than the
// committed reference results and the CUDA twin's tests were made with).
#include "kernels/cpu/margin_softmax.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace ff::cpu {

namespace {

inline double inv_norm(double n) { return 1.0 / std::max(n, kNormEps); }

std::vector<double> inv_norms(int64_t n, const double* norms) {
  std::vector<double> r((size_t)n);
  for (int64_t i = 0; i < n; ++i) r[i] = inv_norm(norms[i]);
  return r;
}

// The column of the row's target in this shard, or -1 when another shard holds it.
inline int64_t local_target(const int64_t* labels, int64_t i, int64_t C, int64_t class_begin) {
  int64_t y = labels[i] - class_begin;
  return y >= 0 && y < C ? y : -1;
}

// log(exp(a) + exp(b)); NaN in either gives NaN, -inf in one gives the other.
inline double log_add_exp(double a, double b) {
  double hi = a > b ? a : b, lo = a > b ? b : a;
  if (hi == -std::numeric_limits<double>::infinity()) return hi;
  return hi + std::log1p(std::exp(lo - hi));
}

// log(1 + exp(x)) without overflow.
inline double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

inline double lse_other(const MarginRows& rows, int64_t i) { return rows.max_other[i] + std::log(rows.sum_other[i]); }

// g -= x (x·g) / |x|² for each row: the normalisation's Jacobian (rows below kNormEps were divided
// by the constant kNormEps, so nothing is projected out of them).
template <class T>
void project_rows(int64_t n, int64_t d, const T* x, const double* norms, T* g) {
#pragma omp parallel for schedule(static) if (n * d > 32768)
  for (int64_t i = 0; i < n; ++i) {
    if (!(norms[i] >= kNormEps)) continue;
    const T* xi = x + i * d;
    T* gi = g + i * d;
    double dot = 0;
    for (int64_t k = 0; k < d; ++k) dot += (double)xi[k] * gi[k];
    const T coef = (T)(dot / (norms[i] * norms[i]));
    for (int64_t k = 0; k < d; ++k) gi[k] -= coef * xi[k];
  }
}

}  // namespace

template <class T>
void row_norms(int64_t n, int64_t d, const T* x, double* norms) {
#pragma omp parallel for schedule(static) if (n * d > 32768)
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t k = 0; k < d; ++k) s += (double)x[i * d + k] * x[i * d + k];
    norms[i] = std::sqrt(s);
  }
}

template <class T>
void cosine_logits(int64_t B, int64_t C, int64_t d, const T* f, const double* f_norm, const T* w, const double* w_norm,
                   T* buf) {
  gemm(false, true, B, C, d, T(1), f, d, w, d, T(0), buf, C);
  std::vector<double> inv_w = inv_norms(C, w_norm);
#pragma omp parallel for schedule(static) if (B * C > 32768)
  for (int64_t i = 0; i < B; ++i) {
    const double inv_f = inv_norm(f_norm[i]);
    T* row = buf + i * C;
    for (int64_t j = 0; j < C; ++j) {
      double c = (double)row[j] * inv_f * inv_w[j];
      row[j] = (T)(c < -1 ? -1 : c > 1 ? 1 : c);  // NaN passes through
    }
  }
}

template <class T>
void apply_margin(const MarginParams& p, int64_t B, int64_t C, int64_t class_begin, const int64_t* labels, T* buf,
                  const MarginRows& rows) {
  const T s = (T)p.s;
#pragma omp parallel for schedule(static) if (B * C > 32768)
  for (int64_t i = 0; i < B; ++i) {
    T* z = buf + i * C;
    const int64_t y = local_target(labels, i, C, class_begin);
    T m = -std::numeric_limits<T>::infinity();
    auto scale_range = [&](int64_t from, int64_t to) {
      for (int64_t j = from; j < to; ++j) {
        z[j] *= s;
        m = z[j] > m ? z[j] : m;
      }
    };
    if (y < 0) {
      scale_range(0, C);
      rows.target_cos[i] = rows.target_logit[i] = 0;
    } else {
      scale_range(0, y);
      scale_range(y + 1, C);
      rows.target_cos[i] = (double)z[y];
      rows.target_logit[i] = p.s * margin_psi(p, (double)z[y]);
      z[y] = (T)rows.target_logit[i];
    }
    rows.max_other[i] = (double)m;
  }
}

template <class T>
void row_sum_other(int64_t B, int64_t C, int64_t class_begin, const int64_t* labels, const T* buf,
                   const MarginRows& rows) {
#pragma omp parallel for schedule(static) if (B * C > 32768)
  for (int64_t i = 0; i < B; ++i) {
    const T* z = buf + i * C;
    const int64_t y = local_target(labels, i, C, class_begin);
    const T m = (T)rows.max_other[i];
    double acc = 0;
    for (int64_t j = 0; j < C; ++j)
      if (j != y) acc += (double)std::exp(z[j] - m);
    rows.sum_other[i] = acc;
  }
}

void row_losses(const MarginParams& p, int64_t B, const MarginRows& rows, double* loss, int64_t* correct) {
  for (int64_t i = 0; i < B; ++i) {
    // log Σ_j exp(z_j) − z_y = log(1 + exp(lse_other − z_y)); AACE: log Σ_j exp z_j − log Σ_{j≠y} exp z_j.
    const double d = lse_other(rows, i) - rows.target_logit[i];
    loss[i] = p.loss == MarginLoss::Margin ? softplus(d) : softplus(-d);
    correct[i] = p.s * rows.target_cos[i] > rows.max_other[i];
  }
}

template <class T>
void logits_to_grad(const MarginParams& p, int64_t B, int64_t C, int64_t class_begin, const int64_t* labels,
                    const MarginRows& rows, const double* f_norm, const double* w_norm, double scale, T* buf) {
  std::vector<double> inv_w = inv_norms(C, w_norm);
  const double sin_floor = std::sqrt((double)std::numeric_limits<T>::epsilon());
  const bool aace = p.loss == MarginLoss::Aace;
#pragma omp parallel for schedule(static) if (B * C > 32768)
  for (int64_t i = 0; i < B; ++i) {
    T* z = buf + i * C;
    const int64_t y = local_target(labels, i, C, class_begin);
    const double lso = lse_other(rows, i), zy = rows.target_logit[i];
    const double lse = log_add_exp(zy, lso);
    // Non-targets: margin p_j = exp(z_j − lse); aace p_j − t_j with t_j = p_j / (1 − p_y) =
    // exp(z_j − lso), so p_j − t_j = −p_y·t_j with p_y = sigmoid(zy − lso): no overflow, and no
    // cancellation (expm1(lso − lse) would lose p_y to the rounding of lse once p_y < 1e-10).
    const T base = (T)(aace ? lso : lse);
    const T factor = (T)(aace ? -1.0 / (1.0 + std::exp(lso - zy)) : 1.0);
    const double row_scale = scale * p.s * inv_norm(f_norm[i]);
    for (int64_t j = 0; j < C; ++j) {
      if (j == y) continue;
      const T g = std::exp(z[j] - base) * factor;
      z[j] = (T)((double)g * row_scale * inv_w[j]);
    }
    if (y >= 0) {
      // Target: margin p_y − 1 = −Σ_{j≠y} p_j = −exp(lso − lse); aace p_y − t_y = p_y.
      const double g = aace ? std::exp(zy - lse) : -std::exp(lso - lse);
      const double dpsi = p.grad == MarginGrad::Exact ? margin_dpsi(p, rows.target_cos[i], sin_floor) : 1.0;
      z[y] = (T)(g * dpsi * row_scale * inv_w[y]);
    }
  }
}

template <class T>
void margin_backward(int64_t B, int64_t C, int64_t d, const T* f, const double* f_norm, const T* w,
                     const double* w_norm, const T* buf, double grad_out, T* grad_f, T* grad_w) {
  if (grad_f) {
    gemm(false, false, B, d, C, (T)grad_out, buf, C, w, d, T(0), grad_f, d);
    project_rows(B, d, f, f_norm, grad_f);
  }
  if (grad_w) {
    gemm(true, false, C, d, B, (T)grad_out, buf, C, f, d, T(0), grad_w, d);
    project_rows(C, d, w, w_norm, grad_w);
  }
}

#define FF_INSTANTIATE(T)                                                                                            \
  template void row_norms<T>(int64_t, int64_t, const T*, double*);                                                   \
  template void cosine_logits<T>(int64_t, int64_t, int64_t, const T*, const double*, const T*, const double*, T*);   \
  template void apply_margin<T>(const MarginParams&, int64_t, int64_t, int64_t, const int64_t*, T*,                  \
                                const MarginRows&);                                                                  \
  template void row_sum_other<T>(int64_t, int64_t, int64_t, const int64_t*, const T*, const MarginRows&);            \
  template void logits_to_grad<T>(const MarginParams&, int64_t, int64_t, int64_t, const int64_t*, const MarginRows&, \
                                  const double*, const double*, double, T*);                                         \
  template void margin_backward<T>(int64_t, int64_t, int64_t, const T*, const double*, const T*, const double*,      \
                                   const T*, double, T*, T*);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff::cpu
