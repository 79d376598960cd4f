// CPU AdamW update: chunked, OpenMP-parallel loop over multi-tensor lists.
#include "kernels/cpu/adamw.h"

#include <cmath>

#include "kernels/cpu/multi_tensor.h"

namespace ff::cpu {

template <class T>
void adamw_update(int64_t count, T* const* param, const T* const* saved, const T* const* grad, T* const* exp_avg,
                  T* const* exp_avg_sq, const int64_t* step, const int64_t* numel, const AdamWHyper& h) {
  const T decay = (T)(1.0 - h.lr * h.weight_decay), w1 = (T)(1.0 - h.beta1), b2 = (T)h.beta2, w2 = (T)(1.0 - h.beta2),
          eps = (T)h.eps;
  const bool lerp_from_start = std::fabs(1.0 - h.beta1) < 0.5;
  for_each_chunk(make_chunks(count, numel), [&](int64_t, const Chunk& ch) {
    const int64_t k = ch.tensor;
    const double t = (double)step[k];
    const T step_size = (T)(h.lr / (1.0 - std::pow(h.beta1, t)));
    const T c2_sqrt = (T)std::sqrt(1.0 - std::pow(h.beta2, t));
    T* p = param[k];
    const T* src = saved && saved[k] ? saved[k] : p;
    const T* g = grad[k];
    T* m = exp_avg[k];
    T* v = exp_avg_sq[k];
    for (int64_t i = ch.begin; i < ch.end; ++i) {
      T w = src[i] * decay;
      T gi = g[i];
      // torch.lerp picks the formula by the weight, for accuracy at both ends.
      T mi = lerp_from_start ? m[i] + w1 * (gi - m[i]) : gi - (gi - m[i]) * (T(1) - w1);
      T vi = v[i] * b2 + w2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      T denom = std::sqrt(vi) / c2_sqrt + eps;
      p[i] = w - step_size * mi / denom;
    }
  });
}

template void adamw_update<float>(int64_t, float* const*, const float* const*, const float* const*, float* const*,
                                  float* const*, const int64_t*, const int64_t*, const AdamWHyper&);
template void adamw_update<double>(int64_t, double* const*, const double* const*, const double* const*, double* const*,
                                   double* const*, const int64_t*, const int64_t*, const AdamWHyper&);

}  // namespace ff::cpu
