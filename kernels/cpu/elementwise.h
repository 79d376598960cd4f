// CPU kernels for elementwise maps with broadcasting. Memory-bound: 12 bytes moved per f32 output
// of a binary op. Benchmarked only as part of the model step (benchmarks/step).
#pragma once

#include <cstdint>
#include <vector>

namespace ff::cpu {

// Broadcast layout of a binary op: per output dimension, the output extent and each operand's
// element stride (0 where that operand is broadcast).
struct BroadcastPlan {
  std::vector<int64_t> extent, stride_a, stride_b;
  int64_t numel = 1;
  bool same_shape = true;  // both operands have the output's shape: a flat loop
};

template <class T, class F>
void binary_map(const BroadcastPlan& p, const T* a, const T* b, T* out, F f) {
  if (p.same_shape) {
#pragma omp parallel for schedule(static) if (p.numel > 32768)
    for (int64_t i = 0; i < p.numel; ++i) out[i] = f(a[i], b[i]);
    return;
  }
  const int64_t nd = (int64_t)p.extent.size();
  const int64_t inner = nd ? p.extent[nd - 1] : 1;
  const int64_t sa = nd ? p.stride_a[nd - 1] : 0, sb = nd ? p.stride_b[nd - 1] : 0;
  const int64_t rows = inner ? p.numel / inner : 0;
#pragma omp parallel for schedule(static) if (p.numel > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    // Offsets of this row from its multi-index over the outer dimensions.
    int64_t oa = 0, ob = 0, rem = r;
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t i = rem % p.extent[d];
      rem /= p.extent[d];
      oa += i * p.stride_a[d];
      ob += i * p.stride_b[d];
    }
    T* o = out + r * inner;
    for (int64_t j = 0; j < inner; ++j) o[j] = f(a[oa + j * sa], b[ob + j * sb]);
  }
}

template <class T, class F>
void unary_map(int64_t n, const T* x, T* out, F f) {
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) out[i] = f(x[i]);
}

// dst += alpha * src (gradient accumulation, optimizers).
template <class T>
void add_(int64_t n, T* dst, const T* src, double alpha) {
  const T a = (T)alpha;
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) dst[i] += a * src[i];
}

template <class T>
void scale_(int64_t n, T* t, double s) {
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) t[i] *= (T)s;
}

template <class T>
void fill(int64_t n, T* t, double value) {
  const T v = (T)value;
  for (int64_t i = 0; i < n; ++i) t[i] = v;
}

}  // namespace ff::cpu
