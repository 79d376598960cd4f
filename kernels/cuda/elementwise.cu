// Elementwise maps, add_/scale_/fill, dtype casts, sums; min bytes per f32 element: binary 12, unary 8, sum 4.
//
// Also add_ 12, scale_ 8, fill 4, casts 8-12. Scalar grid-stride loops with 64-bit indices: these
// ops are memory-bound and simple beats clever until a benchmark says otherwise. Sums run in two
// fixed stages (per-block partials, then one block over them in order), never with float atomics,
// so they are bitwise reproducible. Checked against the CPU kernels by tests/cuda/ops_test.cpp;
// timed as part of the model step.
#include <algorithm>

#include "engine/device_hooks.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/context.h"
#include "kernels/cuda/ops.h"

namespace ff::cuda {

namespace {

constexpr int kMaxDims = 8;

struct Broadcast {
  int nd;
  int64_t extent[kMaxDims], stride_a[kMaxDims], stride_b[kMaxDims];
};

// The device side of BinaryFn; the expressions are those of the CPU lambdas in engine/ops_elementwise.cpp.
template <class T>
struct BinaryDev {
  BinaryOp op;
  T lo, hi;
  __device__ T operator()(T a, T b) const {
    switch (op) {
      case BinaryOp::Add:
        return a + b;
      case BinaryOp::Sub:
        return a - b;
      case BinaryOp::Mul:
        return a * b;
      case BinaryOp::Div:
        return a / b;
      case BinaryOp::ReluBackward:
        return b > T(0) ? a : T(0);
      case BinaryOp::ClampBackward:
        return b > lo && b < hi ? a : T(0);
    }
    return T(0);
  }
};

template <class T>
struct UnaryDev {
  UnaryOp op;
  T a, b;
  __device__ T operator()(T x) const {
    switch (op) {
      case UnaryOp::AddScalar:
        return x + a;
      case UnaryOp::MulScalar:
        return x * a;
      case UnaryOp::Square:
        return x * x;
      case UnaryOp::Relu:
        return x > T(0) ? x : T(0);
      case UnaryOp::Clamp: {  // std::min(std::max(x, a), b), NaN passing through as on the CPU
        T t = x < a ? a : x;
        return b < t ? b : t;
      }
    }
    return T(0);
  }
};

template <class T>
__global__ void binary_same_kernel(int64_t n, const T* a, const T* b, T* out, BinaryDev<T> f) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = f(a[i], b[i]);
}

template <class T>
__global__ void binary_broadcast_kernel(Broadcast p, int64_t n, const T* a, const T* b, T* out, BinaryDev<T> f) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    int64_t rem = i, oa = 0, ob = 0;
    for (int d = p.nd - 1; d >= 0; --d) {
      const int64_t k = rem % p.extent[d];
      rem /= p.extent[d];
      oa += k * p.stride_a[d];
      ob += k * p.stride_b[d];
    }
    out[i] = f(a[oa], b[ob]);
  }
}

template <class T>
__global__ void unary_kernel(int64_t n, const T* x, T* out, UnaryDev<T> f) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = f(x[i]);
}

template <class T>
__global__ void add_kernel(int64_t n, T* dst, const T* src, T alpha) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] += alpha * src[i];
}

template <class T>
__global__ void scale_kernel(int64_t n, T* t, T s) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) t[i] *= s;
}

template <class T>
__global__ void fill_kernel(int64_t n, T* t, T v) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) t[i] = v;
}

template <class D, class S>
__global__ void convert_kernel(int64_t n, D* dst, const S* src) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[i] = static_cast<D>(src[i]);
}

// Stage 1 of sum_all: block b sums its contiguous chunk of `per` elements.
template <class T>
__global__ void sum_partials_kernel(const T* x, int64_t n, int64_t per, double* partial) {
  const int64_t begin = (int64_t)blockIdx.x * per, end = min(n, begin + per);
  double s = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kBlock) s += (double)x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Stage 2: one block over the partials.
template <class T>
__global__ void sum_finish_kernel(const double* partial, int64_t count, double scale, T* out) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < count; i += kBlock) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) out[0] = (T)(s * scale);
}

// reduce_middle with inner == 1: one block per row of n contiguous values.
template <class T>
__global__ void reduce_rows_kernel(const T* x, T* out, int64_t outer, int64_t n, double scale) {
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    double s = 0;
    for (int64_t k = threadIdx.x; k < n; k += kBlock) s += (double)x[o * n + k];
    s = block_sum(s);
    if (threadIdx.x == 0) out[o] = (T)(s * scale);
  }
}

// reduce_middle with inner > 1: a 32 x 8 block covers 32 consecutive inner positions (coalesced
// reads); its 8 rows of threads split k, and row 0 adds their sums in order.
constexpr int kInnerX = 32, kInnerY = 8;
template <class T>
__global__ void reduce_middle_kernel(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale) {
  __shared__ double part[kInnerY][kInnerX];
  const int64_t i = (int64_t)blockIdx.x * kInnerX + threadIdx.x;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    double s = 0;
    if (i < inner)
      for (int64_t k = threadIdx.y; k < n; k += kInnerY) s += (double)x[(o * n + k) * inner + i];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && i < inner) {
      double t = part[0][threadIdx.x];
      for (int r = 1; r < kInnerY; ++r) t += part[r][threadIdx.x];
      out[o * inner + i] = (T)(t * scale);
    }
    __syncthreads();
  }
}

}  // namespace

template <class T>
void binary_map(const cpu::BroadcastPlan& p, const T* a, const T* b, T* out, BinaryFn f) {
  if (p.numel == 0) return;
  const BinaryDev<T> dev{f.op, (T)f.lo, (T)f.hi};
  if (p.same_shape) {
    binary_same_kernel<T><<<blocks_for(p.numel), kBlock, 0, stream()>>>(p.numel, a, b, out, dev);
    FF_CUDA_LAUNCH_CHECK("binary_same_kernel");
    return;
  }
  FF_CHECK(p.extent.size() <= (size_t)kMaxDims, "binary_map (CUDA): ", p.extent.size(),
           " broadcast dimensions, at most ", kMaxDims, " supported");
  Broadcast bc{};
  bc.nd = (int)p.extent.size();
  for (int d = 0; d < bc.nd; ++d) {
    bc.extent[d] = p.extent[d];
    bc.stride_a[d] = p.stride_a[d];
    bc.stride_b[d] = p.stride_b[d];
  }
  binary_broadcast_kernel<T><<<blocks_for(p.numel), kBlock, 0, stream()>>>(bc, p.numel, a, b, out, dev);
  FF_CUDA_LAUNCH_CHECK("binary_broadcast_kernel");
}

template <class T>
void unary_map(int64_t n, const T* x, T* out, UnaryFn f) {
  if (n == 0) return;
  unary_kernel<T><<<blocks_for(n), kBlock, 0, stream()>>>(n, x, out, UnaryDev<T>{f.op, (T)f.a, (T)f.b});
  FF_CUDA_LAUNCH_CHECK("unary_kernel");
}

template <class T>
void add_(int64_t n, T* dst, const T* src, double alpha) {
  if (n == 0) return;
  add_kernel<T><<<blocks_for(n), kBlock, 0, stream()>>>(n, dst, src, (T)alpha);
  FF_CUDA_LAUNCH_CHECK("add_kernel");
}

template <class T>
void scale_(int64_t n, T* t, double s) {
  if (n == 0) return;
  scale_kernel<T><<<blocks_for(n), kBlock, 0, stream()>>>(n, t, (T)s);
  FF_CUDA_LAUNCH_CHECK("scale_kernel");
}

template <class T>
void fill(int64_t n, T* t, double value) {
  if (n == 0) return;
  fill_kernel<T><<<blocks_for(n), kBlock, 0, stream()>>>(n, t, (T)value);
  FF_CUDA_LAUNCH_CHECK("fill_kernel");
}

template <class T>
void sum_all(const T* x, int64_t n, double scale, T* out) {
  // The number of partials depends on n alone, so the order of additions does too.
  const int64_t parts = std::clamp<int64_t>((n + 4095) / 4096, 1, 1024);
  const int64_t per = (n + parts - 1) / parts;
  Storage ws = scratch((size_t)parts * sizeof(double));
  double* partial = static_cast<double*>(ws.data);
  sum_partials_kernel<T><<<(unsigned)parts, kBlock, 0, stream()>>>(x, n, per, partial);
  FF_CUDA_LAUNCH_CHECK("sum_partials_kernel");
  sum_finish_kernel<T><<<1, kBlock, 0, stream()>>>(partial, parts, scale, out);
  FF_CUDA_LAUNCH_CHECK("sum_finish_kernel");
}

template <class T>
void reduce_middle(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale) {
  if (outer == 0 || inner == 0) return;
  if (inner == 1) {
    const unsigned grid = (unsigned)std::min<int64_t>(outer, 65536);
    reduce_rows_kernel<T><<<grid, kBlock, 0, stream()>>>(x, out, outer, n, scale);
    FF_CUDA_LAUNCH_CHECK("reduce_rows_kernel");
    return;
  }
  const int64_t gx = (inner + kInnerX - 1) / kInnerX;
  FF_CHECK(gx < (1LL << 31), "reduce_middle (CUDA): inner extent ", inner, " is too large");
  const dim3 grid((unsigned)gx, (unsigned)std::min<int64_t>(outer, 65535));
  reduce_middle_kernel<T><<<grid, dim3(kInnerX, kInnerY), 0, stream()>>>(x, out, outer, n, inner, scale);
  FF_CUDA_LAUNCH_CHECK("reduce_middle_kernel");
}

#define FF_INSTANTIATE(T)                                                                   \
  template void binary_map<T>(const cpu::BroadcastPlan&, const T*, const T*, T*, BinaryFn); \
  template void unary_map<T>(int64_t, const T*, T*, UnaryFn);                               \
  template void add_<T>(int64_t, T*, const T*, double);                                     \
  template void scale_<T>(int64_t, T*, double);                                             \
  template void fill<T>(int64_t, T*, double);                                               \
  template void sum_all<T>(const T*, int64_t, double, T*);                                  \
  template void reduce_middle<T>(const T*, T*, int64_t, int64_t, int64_t, double);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff::cuda

namespace ff {

void device_convert(void* dst, DType dst_type, const void* src, DType src_type, int64_t n) {
  if (n == 0) return;
  auto run = [&]<class D, class S>() {
    cuda::convert_kernel<D, S>
        <<<cuda::blocks_for(n), cuda::kBlock, 0, cuda::stream()>>>(n, static_cast<D*>(dst), static_cast<const S*>(src));
    FF_CUDA_LAUNCH_CHECK("convert_kernel");
  };
  using F = float;
  using G = double;
  using I = int64_t;
  const DType D = dst_type, S = src_type;
  if (D == DType::F32 && S == DType::F64) return run.template operator()<F, G>();
  if (D == DType::F64 && S == DType::F32) return run.template operator()<G, F>();
  if (D == DType::F32 && S == DType::I64) return run.template operator()<F, I>();
  if (D == DType::F64 && S == DType::I64) return run.template operator()<G, I>();
  if (D == DType::I64 && S == DType::F32) return run.template operator()<I, F>();
  if (D == DType::I64 && S == DType::F64) return run.template operator()<I, G>();
  throw Error(msg("device_convert: no conversion from ", dtype_name(S), " to ", dtype_name(D), " on CUDA"));
}

}  // namespace ff
