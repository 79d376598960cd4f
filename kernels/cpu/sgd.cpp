// CPU SGD update: chunked, OpenMP-parallel loop over multi-tensor lists.
#include "kernels/cpu/sgd.h"

#include "kernels/cpu/multi_tensor.h"

namespace ff::cpu {

template <class T>
void sgd_update(int64_t count, T* const* param, const T* const* saved, const T* const* grad, T* const* momentum,
                const uint8_t* first, const int64_t* numel, const SgdHyper& h) {
  // Scalars rounded to T once, as PyTorch does with its Python-number arguments.
  const T lr = (T)h.lr, mom = (T)h.momentum, keep = (T)(1.0 - h.dampening), wd = (T)h.weight_decay;
  const bool use_wd = h.weight_decay != 0, use_mom = h.momentum != 0, nesterov = h.nesterov;
  for_each_chunk(make_chunks(count, numel), [&](int64_t, const Chunk& ch) {
    const int64_t k = ch.tensor;
    T* p = param[k];
    const T* src = saved && saved[k] ? saved[k] : p;
    const T* g = grad[k];
    T* buf = use_mom ? momentum[k] : nullptr;
    const bool init = use_mom && first[k];
    for (int64_t i = ch.begin; i < ch.end; ++i) {
      T w = src[i];
      T d = g[i];
      if (use_wd) d = d + wd * w;
      if (use_mom) {
        T b = init ? d : buf[i] * mom + keep * d;
        buf[i] = b;
        d = nesterov ? d + mom * b : b;
      }
      p[i] = w - lr * d;
    }
  });
}

template void sgd_update<float>(int64_t, float* const*, const float* const*, const float* const*, float* const*,
                                const uint8_t*, const int64_t*, const SgdHyper&);
template void sgd_update<double>(int64_t, double* const*, const double* const*, const double* const*, double* const*,
                                 const uint8_t*, const int64_t*, const SgdHyper&);

}  // namespace ff::cpu
