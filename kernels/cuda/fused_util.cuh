// Device helpers shared by the fused kernels (margin_softmax.cu, perturb.cu, sgd.cu, adamw.cu):
// deterministic block reductions, 4-wide vector access, rounding-exact arithmetic, a per-device
// scratch arena and the multi-tensor table. The kernels, copies and GEMMs run on the backend's
// stream with its cuBLAS handle (kernels/cuda/context.h), ordered with every other op, so a block
// the caching allocator hands from one op to the next is never still in use.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"

namespace ff::cuda::fused {

constexpr int kThreads = 256;  // every fused kernel runs 256-thread blocks: the reductions assume it

// A grow-only device buffer per (device, slot), reused by consecutive launches: safe because all of
// them are ordered on one stream, and growing frees the old buffer with cudaFree, which waits for
// the device. Slots keep buffers that are alive at the same time apart.
enum class Slot : int { Table, Partials, Result, RowConsts };
void* scratch(Slot slot, size_t bytes);
// Copies `bytes` of host memory into scratch(slot) in stream order and returns the device copy
// (the host buffer may be reused at once: a pageable source is staged before the call returns).
void* upload(Slot slot, const void* host, size_t bytes);

// Number of multiprocessors of the current device (cached per device).
int sm_count();

inline unsigned div_up(int64_t a, int64_t b) { return (unsigned)((a + b - 1) / b); }

// ---- deterministic reductions: a fixed shuffle tree per warp, then the warps in index order ----

template <class Op>
__device__ inline double warp_reduce(double v, Op op) {
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Every thread of a kThreads block calls it; every thread gets the sum.
__device__ inline double block_sum(double v) {
  __shared__ double warp_vals[kThreads / 32];
  __shared__ double result;
  v = warp_reduce(v, [](double a, double b) { return a + b; });
  __syncthreads();  // a previous call's readers of `result` are done
  if ((threadIdx.x & 31) == 0) warp_vals[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double r = warp_vals[0];
    for (int w = 1; w < kThreads / 32; ++w) r += warp_vals[w];
    result = r;
  }
  __syncthreads();
  return result;
}

// ---- 4-wide access: one 16-byte (float) or two 16-byte (double) transactions per thread ----

template <class T>
struct alignas(4 * sizeof(T)) Vec4 {
  T v[4];
};

template <class T>
__device__ inline bool aligned4(const void* p) {
  return ((uintptr_t)p % (4 * sizeof(T))) == 0;
}

// W = 4: p must be 4·sizeof(T) aligned; W = 1: one element.
template <int W, class T>
__device__ inline void load(const T* p, T (&out)[W]) {
  if constexpr (W == 4) {
    Vec4<T> v = *reinterpret_cast<const Vec4<T>*>(p);
#pragma unroll
    for (int k = 0; k < 4; ++k) out[k] = v.v[k];
  } else {
    out[0] = *p;
  }
}
template <int W, class T>
__device__ inline void store(T* p, const T (&in)[W]) {
  if constexpr (W == 4) {
    Vec4<T> v;
#pragma unroll
    for (int k = 0; k < 4; ++k) v.v[k] = in[k];
    *reinterpret_cast<Vec4<T>*>(p) = v;
  } else {
    *p = in[0];
  }
}

// ---- arithmetic rounded once per operation and never contracted into an FMA, so a kernel that
// spells out the CPU twin's expression gives its bits (x86-64 builds have no FMA by default) ----

__device__ inline float add(float a, float b) { return __fadd_rn(a, b); }
__device__ inline float sub(float a, float b) { return __fsub_rn(a, b); }
__device__ inline float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ inline float div(float a, float b) { return __fdiv_rn(a, b); }
__device__ inline float sqrt_rn(float a) { return __fsqrt_rn(a); }
__device__ inline double add(double a, double b) { return __dadd_rn(a, b); }
__device__ inline double sub(double a, double b) { return __dsub_rn(a, b); }
__device__ inline double mul(double a, double b) { return __dmul_rn(a, b); }
__device__ inline double div(double a, double b) { return __ddiv_rn(a, b); }
__device__ inline double sqrt_rn(double a) { return __dsqrt_rn(a); }

// ---- multi-tensor table: the per-tensor arrays of one launch, in device memory ----

// Elements per chunk: every block works on whole chunks, and the per-chunk partial sums of the norm
// fix its summation order independently of the grid. A multiple of 4, so 4-wide access stays
// aligned inside a tensor whose pointers are aligned.
constexpr int64_t kChunk = 16384;
constexpr int kMaxCols = 5;

struct Table {
  const int64_t* numel = nullptr;
  const int64_t* chunk_start = nullptr;  // [count + 1]: first chunk of each tensor
  void* const* col[kMaxCols] = {};       // col[c][k]: the c-th pointer of tensor k (may be null)
  const double* scalar = nullptr;        // [count × nscalar] per-tensor values (optimizer constants)
  int64_t count = 0, nchunks = 0;
};

// Builds a Table on the host and uploads it to scratch(Slot::Table) in one copy.
class TableBuilder {
 public:
  TableBuilder(int64_t count, const int64_t* numel);
  // Column c: a host array of `count` device pointers (null: all null). When `required` names the
  // column, every tensor with elements must have a pointer in it.
  void add_col(int c, const void* const* ptrs, const char* required = nullptr);
  void set_scalars(std::vector<double> v) { scalars_ = std::move(v); }
  int64_t nchunks() const { return starts_.back(); }
  Table upload();

 private:
  int64_t count_;
  std::vector<int64_t> numel_, starts_;
  std::vector<const void*> cols_[kMaxCols];
  std::vector<double> scalars_;
};

// The tensor of chunk c and its element range [begin, end).
__device__ inline void chunk_range(const Table& t, int64_t c, int64_t& k, int64_t& begin, int64_t& end) {
  int64_t lo = 0, hi = t.count - 1;  // last k with chunk_start[k] <= c: skips empty tensors
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) >> 1;
    if (t.chunk_start[mid] <= c)
      lo = mid;
    else
      hi = mid - 1;
  }
  k = lo;
  begin = (c - t.chunk_start[k]) * kChunk;
  end = begin + kChunk < t.numel[k] ? begin + kChunk : t.numel[k];
}

// Calls f.template step<W>(i) for the elements [begin, end) of one chunk, W = 4 where `vec` (the
// tensor's pointers are all 16-byte aligned), else 1; consecutive threads take consecutive steps.
template <class F>
__device__ inline void for_chunk_elems(int64_t begin, int64_t end, bool vec, F& f) {
  int64_t i = begin;
  if (vec) {
    const int64_t vend = begin + ((end - begin) & ~int64_t(3));
#pragma unroll 4
    for (int64_t j = begin + 4 * (int64_t)threadIdx.x; j < vend; j += 4 * kThreads) f.template step<4>(j);
    i = vend;
  }
#pragma unroll 4
  for (int64_t j = i + threadIdx.x; j < end; j += kThreads) f.template step<1>(j);
}

// Persistent grid for a multi-tensor launch: enough blocks to fill the device, never more than chunks.
inline unsigned table_grid(int64_t nchunks) {
  int64_t b = (int64_t)sm_count() * 8;
  return (unsigned)(nchunks < b ? (nchunks < 1 ? 1 : nchunks) : b);
}

// One launch over every chunk of a table: Op(table, k, params) describes tensor k (its pointers and
// `vec`, whether all of them allow 4-wide access) and does the work in Op::step<W>(i).
template <class Op>
__global__ void __launch_bounds__(kThreads) table_kernel(Table t, typename Op::Params prm) {
  for (int64_t c = blockIdx.x; c < t.nchunks; c += gridDim.x) {
    int64_t k, begin, end;
    chunk_range(t, c, k, begin, end);
    Op op(t, k, prm);
    for_chunk_elems(begin, end, op.vec, op);
  }
}

template <class Op>
void launch_table(const char* name, TableBuilder& tb, const typename Op::Params& prm) {
  if (tb.nchunks() == 0) return;
  const Table t = tb.upload();
  table_kernel<Op><<<table_grid(t.nchunks), kThreads, 0, stream()>>>(t, prm);
  FF_CUDA_LAUNCH_CHECK(name);
}

}  // namespace ff::cuda::fused
