// CPU kernels of the sums behind sum / mean (all elements, or over one dimension). Memory-bound: 4
// bytes read per f32 element. Sums run in double over a split into work items that does not depend
// on the thread count, so results are bitwise reproducible. Benchmarked as part of the model step.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace ff::cpu {

// x viewed as [outer, n, inner]: out[o, i] = scale * sum_k x[o, k, i].
template <class T>
void reduce_middle(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale) {
#pragma omp parallel for schedule(static) if (outer * n * inner > 32768)
  for (int64_t o = 0; o < outer; ++o) {
    std::vector<double> acc((size_t)inner, 0.0);
    for (int64_t k = 0; k < n; ++k) {
      const T* row = x + (o * n + k) * inner;
      for (int64_t i = 0; i < inner; ++i) acc[i] += row[i];
    }
    for (int64_t i = 0; i < inner; ++i) out[o * inner + i] = (T)(acc[i] * scale);
  }
}

// out[0] = scale * sum(x): fixed 256 chunks, each summed in double, then the partials in order.
template <class T>
void sum_all(const T* x, int64_t n, double scale, T* out) {
  constexpr int64_t kChunks = 256;
  double part[kChunks] = {};
  const int64_t per = (n + kChunks - 1) / kChunks;
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t c = 0; c < kChunks; ++c) {
    double s = 0;
    for (int64_t i = c * per, e = std::min(n, (c + 1) * per); i < e; ++i) s += x[i];
    part[c] = s;
  }
  double s = 0;
  for (double p : part) s += p;
  out[0] = (T)(s * scale);
}

}  // namespace ff::cpu
