// CPU kernels of batch norm, PReLU, dropout masks and row-wise L2 normalisation, on raw pointers.
// Layout: x viewed as [N, C, S], S the spatial size (1 for [N, C]). Costs per element (f32):
// batch norm forward reads x three times (two statistics passes, one output pass) and writes y once
// (16 bytes, ~6 FLOPs); backward reads dy and x twice and writes dx (20 bytes, ~10 FLOPs); PReLU
// moves 8 bytes forward, 12 backward. Every per-channel or per-row sum runs in double, in a fixed
// order, inside one thread, so results are bitwise identical for any thread count. Benchmarked as
// part of the model step (benchmarks/step).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/rng.h"

namespace ff::cpu {

// Below this many elements a parallel region costs more than it saves.
inline constexpr int64_t kNormParallelMin = 32768;

// mean[c] and biased variance var[c] of x[:, c, :]. Two passes (mean, then squared deviations)
// avoid the cancellation of E[x^2] - E[x]^2.
template <class T>
void batch_norm_stats(const T* x, int64_t N, int64_t C, int64_t S, double* mean, double* var) {
  const double M = (double)(N * S);
#pragma omp parallel for schedule(static) if (N * C * S > kNormParallelMin)
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* p = x + (n * C + c) * S;
      for (int64_t i = 0; i < S; ++i) s += p[i];
    }
    const double m = s / M;
    double q = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* p = x + (n * C + c) * S;
      for (int64_t i = 0; i < S; ++i) {
        const double d = (double)p[i] - m;
        q += d * d;
      }
    }
    mean[c] = m;
    var[c] = q / M;
  }
}

// invstd[c] = 1 / sqrt(var[c] + eps).
inline void batch_norm_invstd(int64_t C, double eps, const double* var, double* invstd) {
  for (int64_t c = 0; c < C; ++c) invstd[c] = 1.0 / std::sqrt(var[c] + eps);
}

// Eval mode: the running statistics stand in for the batch ones.
template <class T>
void batch_norm_running_stats(int64_t C, double eps, const T* running_mean, const T* running_var, double* mean,
                              double* invstd) {
  for (int64_t c = 0; c < C; ++c) {
    mean[c] = (double)running_mean[c];
    invstd[c] = 1.0 / std::sqrt((double)running_var[c] + eps);
  }
}

// running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance
// (var * M / (M - 1), M = values per channel; M > 1), as PyTorch does.
template <class T>
void batch_norm_update_running(int64_t C, int64_t M, double momentum, const double* mean, const double* var,
                               T* running_mean, T* running_var) {
  const double unbias = (double)M / (double)(M - 1);
  for (int64_t c = 0; c < C; ++c) {
    running_mean[c] = (T)((1.0 - momentum) * (double)running_mean[c] + momentum * mean[c]);
    running_var[c] = (T)((1.0 - momentum) * (double)running_var[c] + momentum * var[c] * unbias);
  }
}

// y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]; weight and bias may be null (1 and 0).
template <class T>
void batch_norm_forward(const T* x, int64_t N, int64_t C, int64_t S, const double* mean, const double* invstd,
                        const T* weight, const T* bias, T* y) {
#pragma omp parallel for collapse(2) schedule(static) if (N * C * S > kNormParallelMin)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const T m = (T)mean[c];
      const T a = (T)(invstd[c] * (weight ? (double)weight[c] : 1.0));
      const T b = bias ? bias[c] : T(0);
      const T* p = x + (n * C + c) * S;
      T* q = y + (n * C + c) * S;
      for (int64_t i = 0; i < S; ++i) q[i] = (p[i] - m) * a + b;
    }
}

// Gradients of batch_norm_forward, a = invstd * weight, xhat = (x - mean) * invstd:
//   dweight = sum(dy * xhat), dbias = sum(dy) over the channel;
//   training (mean and invstd are functions of x): dx = a * (dy - sum(dy)/M - xhat * sum(dy*xhat)/M);
//   eval (they are constants): dx = a * dy.
// dx, dweight and dbias may each be null when not wanted.
template <class T>
void batch_norm_backward(const T* dy, const T* x, int64_t N, int64_t C, int64_t S, const double* mean,
                         const double* invstd, const T* weight, bool training, T* dx, T* dweight, T* dbias) {
  const double M = (double)(N * S);
  const bool need_sums = training || dweight || dbias;
#pragma omp parallel for schedule(static) if (N * C * S > kNormParallelMin)
  for (int64_t c = 0; c < C; ++c) {
    const double m = mean[c], is = invstd[c];
    double sdy = 0, sdyx = 0;  // sum(dy), sum(dy * (x - mean))
    if (need_sums)
      for (int64_t n = 0; n < N; ++n) {
        const T* g = dy + (n * C + c) * S;
        const T* p = x + (n * C + c) * S;
        for (int64_t i = 0; i < S; ++i) {
          sdy += (double)g[i];
          sdyx += (double)g[i] * ((double)p[i] - m);
        }
      }
    if (dweight) dweight[c] = (T)(sdyx * is);
    if (dbias) dbias[c] = (T)sdy;
    if (!dx) continue;
    const double a = is * (weight ? (double)weight[c] : 1.0);
    // dx = a*dy + (x - mean) * kx + k0 with kx = -a*is*is*sdyx/M and k0 = -a*sdy/M.
    const T ta = (T)a, tm = (T)m;
    const T kx = training ? (T)(-a * is * is * sdyx / M) : T(0);
    const T k0 = training ? (T)(-a * sdy / M) : T(0);
    for (int64_t n = 0; n < N; ++n) {
      const T* g = dy + (n * C + c) * S;
      const T* p = x + (n * C + c) * S;
      T* q = dx + (n * C + c) * S;
      for (int64_t i = 0; i < S; ++i) q[i] = g[i] * ta + (p[i] - tm) * kx + k0;
    }
  }
}

// y = x where x > 0, weight[c] * x elsewhere.
template <class T>
void prelu_forward(const T* x, int64_t N, int64_t C, int64_t S, const T* weight, T* y) {
#pragma omp parallel for collapse(2) schedule(static) if (N * C * S > kNormParallelMin)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const T w = weight[c];
      const T* p = x + (n * C + c) * S;
      T* q = y + (n * C + c) * S;
      for (int64_t i = 0; i < S; ++i) q[i] = p[i] > T(0) ? p[i] : w * p[i];
    }
}

// dx = dy where x > 0, weight[c] * dy elsewhere; dweight[c] = sum of dy * x where x <= 0.
// dx or dweight may be null.
template <class T>
void prelu_backward(const T* dy, const T* x, int64_t N, int64_t C, int64_t S, const T* weight, T* dx, T* dweight) {
#pragma omp parallel for schedule(static) if (N * C * S > kNormParallelMin)
  for (int64_t c = 0; c < C; ++c) {
    const T w = weight[c];
    double acc = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* g = dy + (n * C + c) * S;
      const T* p = x + (n * C + c) * S;
      T* q = dx ? dx + (n * C + c) * S : nullptr;
      for (int64_t i = 0; i < S; ++i) {
        const bool pos = p[i] > T(0);
        if (q) q[i] = pos ? g[i] : w * g[i];
        if (!pos) acc += (double)g[i] * (double)p[i];
      }
    }
    if (dweight) dweight[c] = (T)acc;
  }
}

// mask[i] = 0 with probability p, else 1/(1-p); one draw per element, in order, so the mask
// depends only on the generator's state (sequential on purpose: the stream is one sequence).
template <class T>
void dropout_mask(int64_t n, double p, Rng& rng, T* mask) {
  const T keep = (T)(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i) mask[i] = rng.uniform() < p ? T(0) : keep;
}

// y[r] = x[r] / max(|x[r]|, eps) for rows of x [N, D]; norm[r] = |x[r]| (kept for backward).
template <class T>
void l2_normalize_forward(const T* x, int64_t N, int64_t D, double eps, T* y, double* norm) {
#pragma omp parallel for schedule(static) if (N * D > kNormParallelMin)
  for (int64_t r = 0; r < N; ++r) {
    const T* p = x + r * D;
    double s = 0;
    for (int64_t j = 0; j < D; ++j) s += (double)p[j] * (double)p[j];
    const double nrm = std::sqrt(s), d = std::max(nrm, eps);
    norm[r] = nrm;
    T* q = y + r * D;
    for (int64_t j = 0; j < D; ++j) q[j] = (T)((double)p[j] / d);
  }
}

// Where |x| > eps: dx = dy/|x| - x * (x . dy)/|x|^3; elsewhere the divisor is the constant eps.
template <class T>
void l2_normalize_backward(const T* dy, const T* x, int64_t N, int64_t D, double eps, const double* norm, T* dx) {
#pragma omp parallel for schedule(static) if (N * D > kNormParallelMin)
  for (int64_t r = 0; r < N; ++r) {
    const T* g = dy + r * D;
    const T* p = x + r * D;
    T* q = dx + r * D;
    const double nrm = norm[r];
    if (nrm > eps) {
      double dot = 0;
      for (int64_t j = 0; j < D; ++j) dot += (double)p[j] * (double)g[j];
      const double k = dot / (nrm * nrm * nrm);
      for (int64_t j = 0; j < D; ++j) q[j] = (T)((double)g[j] / nrm - (double)p[j] * k);
    } else {
      for (int64_t j = 0; j < D; ++j) q[j] = (T)((double)g[j] / eps);
    }
  }
}

}  // namespace ff::cpu
