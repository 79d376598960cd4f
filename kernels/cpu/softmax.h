// CPU kernels of row-wise log-softmax and softmax cross-entropy over x [N, C], on raw pointers.
// Costs per element (f32): logsumexp reads x twice (max, then sum of exp: ~1 exp); log_softmax
// forward adds one read and one write (12 bytes in all); backward reads dy and y twice, writes dx
// (20 bytes, 1 exp); cross-entropy backward reads x once, writes dx once (8 bytes, 1 exp). Row sums
// run in double in a fixed order inside one thread, so results are bitwise identical for any
// thread count. Benchmarked as part of the model step (benchmarks/step).
#pragma once

#include <cmath>
#include <cstdint>

namespace ff::cpu {

inline constexpr int64_t kSoftmaxParallelMin = 32768;

// lse[r] = log(sum_j exp(x[r, j])), shifted by the row maximum so no exp overflows.
template <class T>
void logsumexp_rows(const T* x, int64_t N, int64_t C, double* lse) {
#pragma omp parallel for schedule(static) if (N * C > kSoftmaxParallelMin)
  for (int64_t r = 0; r < N; ++r) {
    const T* p = x + r * C;
    double mx = -INFINITY;
    for (int64_t j = 0; j < C; ++j) mx = std::fmax(mx, (double)p[j]);
    double s = 0;
    for (int64_t j = 0; j < C; ++j) s += std::exp((double)p[j] - mx);
    lse[r] = mx + std::log(s);
  }
}

// y[r, j] = x[r, j] - lse[r].
template <class T>
void log_softmax_forward(const T* x, int64_t N, int64_t C, const double* lse, T* y) {
#pragma omp parallel for schedule(static) if (N * C > kSoftmaxParallelMin)
  for (int64_t r = 0; r < N; ++r)
    for (int64_t j = 0; j < C; ++j) y[r * C + j] = (T)((double)x[r * C + j] - lse[r]);
}

// From the output y: dx = dy - exp(y) * sum_j dy (softmax rows sum to one).
template <class T>
void log_softmax_backward(const T* dy, const T* y, int64_t N, int64_t C, T* dx) {
#pragma omp parallel for schedule(static) if (N * C > kSoftmaxParallelMin)
  for (int64_t r = 0; r < N; ++r) {
    const T* g = dy + r * C;
    double s = 0;
    for (int64_t j = 0; j < C; ++j) s += (double)g[j];
    for (int64_t j = 0; j < C; ++j) dx[r * C + j] = (T)((double)g[j] - std::exp((double)y[r * C + j]) * s);
  }
}

// mean_r (lse[r] - x[r, labels[r]]); labels must already be checked to lie in [0, C). Sequential:
// N terms only, in a fixed order.
template <class T>
double cross_entropy_forward(const T* x, const int64_t* labels, int64_t N, int64_t C, const double* lse) {
  double s = 0;
  for (int64_t r = 0; r < N; ++r) s += lse[r] - (double)x[r * C + labels[r]];
  return s / (double)N;
}

// dx[r, j] = dloss / N * (softmax(x)[r, j] - [j == labels[r]]); dloss points at the scalar
// gradient of the loss (a pointer, so a device twin need not copy it to the host).
template <class T>
void cross_entropy_backward(const T* x, const int64_t* labels, int64_t N, int64_t C, const double* lse, const T* dloss,
                            T* dx) {
  const double k = (double)*dloss / (double)N;
#pragma omp parallel for schedule(static) if (N * C > kSoftmaxParallelMin)
  for (int64_t r = 0; r < N; ++r)
    for (int64_t j = 0; j < C; ++j) {
      const double pr = std::exp((double)x[r * C + j] - lse[r]);
      dx[r * C + j] = (T)(k * (pr - (j == labels[r] ? 1.0 : 0.0)));
    }
}

}  // namespace ff::cpu
