// Deterministic reductions inside one 256-thread block: a fixed shuffle tree per warp, then thread 0
// over the warp results in order, so the order of operations depends on the block size alone.
#pragma once

#include <cstdint>

namespace ff::cuda {

constexpr int kBlock = 256;

struct SumOp {
  __device__ double operator()(double a, double b) const { return a + b; }
};
// fmax ignores NaN, like std::fmax in the CPU kernels.
struct MaxOp {
  __device__ double operator()(double a, double b) const { return fmax(a, b); }
};

// Every thread of the block must call this with blockDim.x == kBlock; every thread gets the result.
template <class Op>
__device__ double block_reduce(double v, Op op) {
  __shared__ double warp_vals[kBlock / 32];
  __shared__ double result;
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
  __syncthreads();  // a previous call's readers of `result` are done
  if ((threadIdx.x & 31) == 0) warp_vals[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double r = warp_vals[0];
    for (int w = 1; w < kBlock / 32; ++w) r = op(r, warp_vals[w]);
    result = r;
  }
  __syncthreads();
  return result;
}

__device__ inline double block_sum(double v) { return block_reduce(v, SumOp{}); }

// Grid-stride loop bounds as 64-bit values.
__device__ inline int64_t global_thread() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ inline int64_t grid_threads() { return (int64_t)gridDim.x * blockDim.x; }

}  // namespace ff::cuda
