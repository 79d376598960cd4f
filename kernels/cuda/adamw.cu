// AdamW update fused with the restore of perturbed weights, on the GPU: the twin of kernels/cpu/adamw
// (torch.optim.AdamW semantics, amsgrad off). One multi-tensor launch reads the saved original
// weight (or the parameter), the gradient and both moments, and writes weight and moments.
// Minimum bytes moved per f32 element: reads w, g, m, v; writes w, m, v: 28 B. Results are bitwise
// equal to the CPU twin: the same operations in the same order, each rounded once (no FMA), with
// the per-tensor bias corrections computed on the host exactly as the twin does. Benchmark:
// bench_cuda_kernels.
#include <cmath>

#include "kernels/cuda/fused.h"
#include "kernels/cuda/fused_util.cuh"

namespace ff::cuda {

using namespace fused;

namespace {

template <class T>
struct AdamWOp {
  struct Params {
    T decay, w1, one_minus_w1, b2, w2, eps;
    bool lerp_from_start;
  };
  T* p;
  const T* src;
  const T* g;
  T* m;
  T* v;
  T step_size, c2_sqrt;
  Params h;
  bool vec;
  __device__ AdamWOp(const Table& t, int64_t k, const Params& prm)
      : p(static_cast<T*>(t.col[0][k])),
        src(t.col[1][k] ? static_cast<const T*>(t.col[1][k]) : p),
        g(static_cast<const T*>(t.col[2][k])),
        m(static_cast<T*>(t.col[3][k])),
        v(static_cast<T*>(t.col[4][k])),
        step_size((T)t.scalar[2 * k]),
        c2_sqrt((T)t.scalar[2 * k + 1]),
        h(prm),
        vec(aligned4<T>(p) && aligned4<T>(src) && aligned4<T>(g) && aligned4<T>(m) && aligned4<T>(v)) {}
  template <int W>
  __device__ void step(int64_t i) {
    T w[W], gv[W], mv[W], vv[W];
    load<W>(src + i, w);
    load<W>(g + i, gv);
    load<W>(m + i, mv);
    load<W>(v + i, vv);
#pragma unroll
    for (int q = 0; q < W; ++q) {
      const T wq = mul(w[q], h.decay), gq = gv[q];
      // torch.lerp's two formulas, picked by the weight as the CPU twin does.
      const T mi =
          h.lerp_from_start ? add(mv[q], mul(h.w1, sub(gq, mv[q]))) : sub(gq, mul(sub(gq, mv[q]), h.one_minus_w1));
      const T vi = add(mul(vv[q], h.b2), mul(mul(h.w2, gq), gq));
      mv[q] = mi;
      vv[q] = vi;
      const T denom = add(div(sqrt_rn(vi), c2_sqrt), h.eps);
      w[q] = sub(wq, div(mul(step_size, mi), denom));
    }
    store<W>(m + i, mv);
    store<W>(v + i, vv);
    store<W>(p + i, w);
  }
};

template <class P>
const void* const* ptrs(P p) {
  return reinterpret_cast<const void* const*>(p);
}

}  // namespace

template <class T>
void adamw_update(int64_t count, T* const* param, const T* const* saved, const T* const* grad, T* const* exp_avg,
                  T* const* exp_avg_sq, const int64_t* step, const int64_t* numel, const AdamWHyper& h) {
  TableBuilder tb(count, numel);
  tb.add_col(0, ptrs(param), "parameter");
  tb.add_col(1, ptrs(saved));
  tb.add_col(2, ptrs(grad), "gradient");
  tb.add_col(3, ptrs(exp_avg), "first moment");
  tb.add_col(4, ptrs(exp_avg_sq), "second moment");
  // Per-tensor bias corrections in double, rounded to T, exactly as the CPU twin computes them.
  std::vector<double> sc(2 * (size_t)count);
  for (int64_t k = 0; k < count; ++k) {
    const double t = (double)step[k];
    sc[2 * k] = (double)(T)(h.lr / (1.0 - std::pow(h.beta1, t)));
    sc[2 * k + 1] = (double)(T)std::sqrt(1.0 - std::pow(h.beta2, t));
  }
  tb.set_scalars(std::move(sc));
  const T w1 = (T)(1.0 - h.beta1);
  const typename AdamWOp<T>::Params prm{
      (T)(1.0 - h.lr * h.weight_decay), w1, T(1) - w1, (T)h.beta2, (T)(1.0 - h.beta2), (T)h.eps,
      std::fabs(1.0 - h.beta1) < 0.5};
  launch_table<AdamWOp<T>>("adamw_update", tb, prm);
}

template void adamw_update<float>(int64_t, float* const*, const float* const*, const float* const*, float* const*,
                                  float* const*, const int64_t*, const int64_t*, const AdamWHyper&);
template void adamw_update<double>(int64_t, double* const*, const double* const*, const double* const*, double* const*,
                                   double* const*, const int64_t*, const int64_t*, const AdamWHyper&);

}  // namespace ff::cuda
