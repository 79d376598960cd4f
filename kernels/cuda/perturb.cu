// SAM-family perturbation on the GPU, the twin of kernels/cpu/perturb: the global squared norm of the
// perturbation direction over every perturbed tensor (plain or adaptive), save-and-apply of ε, and
// the restore. Each is one multi-tensor launch over a table of pointers and sizes in device memory.
// Minimum bytes moved per f32 element: norm reads 4 B (adaptive 8 B: g and w); apply reads w and g
// and writes saved and w, 16 B; restore reads saved and writes w, 8 B.
// Determinism: the norm is summed per fixed 16K-element chunk (one partial per chunk, whatever the
// grid), then one block adds the partials in chunk order: no atomics. apply and restore are exact
// elementwise operations, bitwise equal to the CPU twin. Benchmark: bench_cuda_kernels.
#include "kernels/cuda/fused.h"
#include "kernels/cuda/fused_util.cuh"

namespace ff::cuda {

using namespace fused;

namespace {

template <class T, bool kAdaptive>
struct SqNormOp {
  const T* g;
  const T* w;
  double acc;
  template <int W>
  __device__ void step(int64_t i) {
    T gv[W];
    load<W>(g + i, gv);
    if (kAdaptive) {
      T wv[W];
      load<W>(w + i, wv);
#pragma unroll
      for (int q = 0; q < W; ++q) {
        const double v = fabs((double)wv[q]) * (double)gv[q];
        acc += v * v;
      }
    } else {
#pragma unroll
      for (int q = 0; q < W; ++q) acc += (double)gv[q] * (double)gv[q];
    }
  }
};

// Per chunk c: partial[c] = its sum of squares (the block's threads, then a fixed tree).
template <class T, bool kAdaptive>
__global__ void __launch_bounds__(kThreads) sq_norm_kernel(Table t, double* partial) {
  for (int64_t c = blockIdx.x; c < t.nchunks; c += gridDim.x) {
    int64_t k, begin, end;
    chunk_range(t, c, k, begin, end);
    SqNormOp<T, kAdaptive> op{static_cast<const T*>(t.col[0][k]), static_cast<const T*>(t.col[1][k]), 0.0};
    const bool vec = aligned4<T>(op.g) && (!kAdaptive || aligned4<T>(op.w));
    for_chunk_elems(begin, end, vec, op);
    const double s = block_sum(op.acc);
    if (threadIdx.x == 0) partial[c] = s;
  }
}

// One block: the partials in chunk order.
__global__ void __launch_bounds__(kThreads) sum_partials_kernel(int64_t n, const double* partial, double* out) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) *out = s;
}

template <class T, bool kAdaptive>
struct ApplyOp {
  struct Params {
    T scale;
  };
  T* w;
  T* saved;
  const T* g;
  T s;
  bool vec;
  __device__ ApplyOp(const Table& t, int64_t k, const Params& p)
      : w(static_cast<T*>(t.col[0][k])),
        saved(static_cast<T*>(t.col[1][k])),
        g(static_cast<const T*>(t.col[2][k])),
        s(p.scale),
        vec(aligned4<T>(w) && aligned4<T>(saved) && aligned4<T>(g)) {}
  template <int W>
  __device__ void step(int64_t i) {
    T wv[W], gv[W], out[W];
    load<W>(w + i, wv);
    load<W>(g + i, gv);
    store<W>(saved + i, wv);
#pragma unroll
    for (int q = 0; q < W; ++q)  // the CPU twin's order: v + ((v·v)·g)·s, or v + g·s
      out[q] = kAdaptive ? add(wv[q], mul(mul(mul(wv[q], wv[q]), gv[q]), s)) : add(wv[q], mul(gv[q], s));
    store<W>(w + i, out);
  }
};

template <class T>
struct RestoreOp {
  struct Params {};
  T* w;
  const T* saved;
  bool vec;
  __device__ RestoreOp(const Table& t, int64_t k, const Params&)
      : w(static_cast<T*>(t.col[0][k])),
        saved(static_cast<const T*>(t.col[1][k])),
        vec(aligned4<T>(w) && aligned4<T>(saved)) {}
  template <int W>
  __device__ void step(int64_t i) {
    T v[W];
    load<W>(saved + i, v);
    store<W>(w + i, v);
  }
};

template <class P>
const void* const* ptrs(P p) {
  return reinterpret_cast<const void* const*>(p);
}

}  // namespace

template <class T>
void perturb_sq_norm_to(int64_t count, const T* const* grad, const T* const* param, const int64_t* numel,
                        double* result) {
  TableBuilder tb(count, numel);
  tb.add_col(0, ptrs(grad), "gradient");
  if (param) tb.add_col(1, ptrs(param), "parameter");
  const int64_t n = tb.nchunks();
  if (n == 0) {
    FF_CUDA_CHECK(cudaMemsetAsync(result, 0, sizeof(double), stream()));
    return;
  }
  const Table t = tb.upload();
  auto* partial = static_cast<double*>(scratch(Slot::Partials, (size_t)n * sizeof(double)));
  if (param)
    sq_norm_kernel<T, true><<<table_grid(n), kThreads, 0, stream()>>>(t, partial);
  else
    sq_norm_kernel<T, false><<<table_grid(n), kThreads, 0, stream()>>>(t, partial);
  FF_CUDA_LAUNCH_CHECK("sq_norm_kernel");
  sum_partials_kernel<<<1, kThreads, 0, stream()>>>(n, partial, result);
  FF_CUDA_LAUNCH_CHECK("sum_partials_kernel");
}

template <class T>
double perturb_sq_norm(int64_t count, const T* const* grad, const T* const* param, const int64_t* numel) {
  auto* result = static_cast<double*>(scratch(Slot::Result, sizeof(double)));
  perturb_sq_norm_to(count, grad, param, numel, result);
  double host = 0;
  FF_CUDA_CHECK(cudaMemcpyAsync(&host, result, sizeof(double), cudaMemcpyDeviceToHost, stream()));
  FF_CUDA_CHECK(cudaStreamSynchronize(stream()));
  return host;
}

template <class T>
void perturb_apply(int64_t count, T* const* param, T* const* saved, const T* const* grad, const int64_t* numel,
                   double scale, bool adaptive) {
  TableBuilder tb(count, numel);
  tb.add_col(0, ptrs(param), "parameter");
  tb.add_col(1, ptrs(saved), "saved copy");
  tb.add_col(2, ptrs(grad), "gradient");
  if (adaptive)
    launch_table<ApplyOp<T, true>>("perturb_apply", tb, {(T)scale});
  else
    launch_table<ApplyOp<T, false>>("perturb_apply", tb, {(T)scale});
}

template <class T>
void perturb_restore(int64_t count, T* const* param, const T* const* saved, const int64_t* numel) {
  TableBuilder tb(count, numel);
  tb.add_col(0, ptrs(param), "parameter");
  tb.add_col(1, ptrs(saved), "saved copy");
  launch_table<RestoreOp<T>>("perturb_restore", tb, {});
}

#define FF_INSTANTIATE(T)                                                                                       \
  template double perturb_sq_norm<T>(int64_t, const T* const*, const T* const*, const int64_t*);                \
  template void perturb_sq_norm_to<T>(int64_t, const T* const*, const T* const*, const int64_t*, double*);      \
  template void perturb_apply<T>(int64_t, T* const*, T* const*, const T* const*, const int64_t*, double, bool); \
  template void perturb_restore<T>(int64_t, T* const*, const T* const*, const int64_t*);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff::cuda
