// SGD update fused with the restore of perturbed weights, on the GPU: the twin of kernels/cpu/sgd
// (torch.optim.SGD semantics: momentum, dampening, weight decay, nesterov). One multi-tensor launch
// reads the saved original weight (or the parameter itself when there is no saved copy), the
// update-pass gradient and the momentum buffer, and writes the new weight and momentum.
// Minimum bytes moved per f32 element: reads saved w, g, momentum; writes w, momentum: 20 B (12 B
// without momentum). Results are bitwise equal to the CPU twin: the same operations in the same
// order, each rounded once (no FMA contraction). Benchmark: bench_cuda_kernels.
#include "kernels/cuda/fused.h"
#include "kernels/cuda/fused_util.cuh"

namespace ff::cuda {

using namespace fused;

namespace {

template <class T>
struct SgdOp {
  struct Params {
    T lr, mom, keep, wd;
    bool use_wd, use_mom, nesterov;
  };
  T* p;
  const T* src;
  const T* g;
  T* buf;
  bool init;
  Params h;
  bool vec;
  __device__ SgdOp(const Table& t, int64_t k, const Params& prm)
      : p(static_cast<T*>(t.col[0][k])),
        src(t.col[1][k] ? static_cast<const T*>(t.col[1][k]) : p),
        g(static_cast<const T*>(t.col[2][k])),
        buf(static_cast<T*>(t.col[3][k])),
        init(prm.use_mom && t.scalar[k] != 0),
        h(prm),
        vec(aligned4<T>(p) && aligned4<T>(src) && aligned4<T>(g) && (!prm.use_mom || aligned4<T>(buf))) {}
  template <int W>
  __device__ void step(int64_t i) {
    T w[W], d[W], b[W] = {}, out[W];
    load<W>(src + i, w);
    load<W>(g + i, d);
    if (h.use_mom && !init) load<W>(buf + i, b);
#pragma unroll
    for (int q = 0; q < W; ++q) {
      T dq = d[q];
      if (h.use_wd) dq = add(dq, mul(h.wd, w[q]));
      if (h.use_mom) {
        const T bq = init ? dq : add(mul(b[q], h.mom), mul(h.keep, dq));
        b[q] = bq;
        dq = h.nesterov ? add(dq, mul(h.mom, bq)) : bq;
      }
      out[q] = sub(w[q], mul(h.lr, dq));
    }
    if (h.use_mom) store<W>(buf + i, b);
    store<W>(p + i, out);
  }
};

template <class P>
const void* const* ptrs(P p) {
  return reinterpret_cast<const void* const*>(p);
}

}  // namespace

template <class T>
void sgd_update(int64_t count, T* const* param, const T* const* saved, const T* const* grad, T* const* momentum,
                const uint8_t* first, const int64_t* numel, const SgdHyper& h) {
  const bool use_mom = h.momentum != 0;
  TableBuilder tb(count, numel);
  tb.add_col(0, ptrs(param), "parameter");
  tb.add_col(1, ptrs(saved));
  tb.add_col(2, ptrs(grad), "gradient");
  if (use_mom) {
    FF_CHECK(first, "sgd_update: momentum ", h.momentum, " needs the per-tensor `first` flags");
    tb.add_col(3, ptrs(momentum), "momentum buffer");
    std::vector<double> f((size_t)count);
    for (int64_t k = 0; k < count; ++k) f[k] = first[k] ? 1.0 : 0.0;
    tb.set_scalars(std::move(f));
  }
  // Scalars rounded to T once, as the CPU twin (and PyTorch) do.
  const typename SgdOp<T>::Params prm{
      (T)h.lr, (T)h.momentum, (T)(1.0 - h.dampening), (T)h.weight_decay, h.weight_decay != 0, use_mom, h.nesterov};
  launch_table<SgdOp<T>>("sgd_update", tb, prm);
}

template void sgd_update<float>(int64_t, float* const*, const float* const*, const float* const*, float* const*,
                                const uint8_t*, const int64_t*, const SgdHyper&);
template void sgd_update<double>(int64_t, double* const*, const double* const*, const double* const*, double* const*,
                                 const uint8_t*, const int64_t*, const SgdHyper&);

}  // namespace ff::cuda
