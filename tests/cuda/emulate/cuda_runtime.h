// Stand-in for <cuda_runtime.h> in the CPU emulation of the fused kernels (tests/cuda/emulate/run.sh):
// the CUDA keywords, built-in variables and intrinsics the kernels use, and the runtime calls.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
typedef void* cudaStream_t;
typedef void* cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };

cudaError_t cudaMalloc(void** p, size_t n);
template <class T>
cudaError_t cudaMalloc(T** p, size_t n) {
  return cudaMalloc(reinterpret_cast<void**>(p), n);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind);
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t = 0);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = 0);
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int dev);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t);

namespace emu {
const uint3& tid();
const uint3& bid();
const dim3& bdim();
const dim3& gdim();
void syncthreads();
void warp_sync();
void* xchg_slot();                  // this thread's 8-byte exchange slot
void* xchg_slot_of(unsigned lane);  // lane of this thread's warp
void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t s, const std::function<void()>& body);
void check_aligned(const void* p, size_t a);
}  // namespace emu

#define threadIdx (::emu::tid())
#define blockIdx (::emu::bid())
#define blockDim (::emu::bdim())
#define gridDim (::emu::gdim())
inline void __syncthreads() { ::emu::syncthreads(); }

template <class T>
T __shfl_xor_sync(unsigned, T v, int off) {
  static_assert(sizeof(T) <= 8, "shuffle of > 8 bytes");
  std::memcpy(::emu::xchg_slot(), &v, sizeof(T));
  ::emu::warp_sync();
  T r;
  std::memcpy(&r, ::emu::xchg_slot_of((threadIdx.x & 31) ^ (unsigned)off), sizeof(T));
  ::emu::warp_sync();
  return r;
}

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float __expf(float x) { return std::exp(x); }
