// CPU perturbation kernels: chunked, OpenMP-parallel loops over multi-tensor lists.
#include "kernels/cpu/perturb.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/multi_tensor.h"

namespace ff::cpu {

template <class T>
double perturb_sq_norm(int64_t count, const T* const* grad, const T* const* param, const int64_t* numel) {
  std::vector<Chunk> chunks = make_chunks(count, numel);
  std::vector<double> part(chunks.size(), 0.0);
  for_each_chunk(chunks, [&](int64_t c, const Chunk& ch) {
    const T* g = grad[ch.tensor];
    const T* w = param ? param[ch.tensor] : nullptr;
    double s = 0;
    if (w) {
      for (int64_t i = ch.begin; i < ch.end; ++i) {
        double v = std::fabs((double)w[i]) * (double)g[i];
        s += v * v;
      }
    } else {
      for (int64_t i = ch.begin; i < ch.end; ++i) s += (double)g[i] * (double)g[i];
    }
    part[c] = s;
  });
  double total = 0;
  for (double p : part) total += p;
  return total;
}

template <class T>
void perturb_apply(int64_t count, T* const* param, T* const* saved, const T* const* grad, const int64_t* numel,
                   double scale, bool adaptive) {
  const T s = (T)scale;
  for_each_chunk(make_chunks(count, numel), [&](int64_t, const Chunk& ch) {
    T* w = param[ch.tensor];
    T* keep = saved[ch.tensor];
    const T* g = grad[ch.tensor];
    // Same operation order as the usual PyTorch SAM code: (w² · g) · scale.
    if (adaptive) {
      for (int64_t i = ch.begin; i < ch.end; ++i) {
        T v = w[i];
        keep[i] = v;
        w[i] = v + v * v * g[i] * s;
      }
    } else {
      for (int64_t i = ch.begin; i < ch.end; ++i) {
        T v = w[i];
        keep[i] = v;
        w[i] = v + g[i] * s;
      }
    }
  });
}

template <class T>
void perturb_restore(int64_t count, T* const* param, const T* const* saved, const int64_t* numel) {
  for_each_chunk(make_chunks(count, numel), [&](int64_t, const Chunk& ch) {
    std::memcpy(param[ch.tensor] + ch.begin, saved[ch.tensor] + ch.begin, (size_t)(ch.end - ch.begin) * sizeof(T));
  });
}

#define FF_INSTANTIATE(T)                                                                                       \
  template double perturb_sq_norm<T>(int64_t, const T* const*, const T* const*, const int64_t*);                \
  template void perturb_apply<T>(int64_t, T* const*, T* const*, const T* const*, const int64_t*, double, bool); \
  template void perturb_restore<T>(int64_t, T* const*, const T* const*, const int64_t*);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff::cpu
