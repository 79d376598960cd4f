// Error checks for CUDA, cuBLAS, cuDNN and NCCL calls: each names the call, file and line.
#pragma once

#include <cuda_runtime.h>

#include "engine/error.h"

#define FF_CUDA_CHECK(call)                                                                         \
  do {                                                                                              \
    cudaError_t _e = (call);                                                                        \
    if (_e != cudaSuccess)                                                                          \
      throw ::ff::Error(::ff::msg(#call, " failed: ", cudaGetErrorString(_e), " at ", __FILE__, ":", \
                                  __LINE__));                                                       \
  } while (0)

// After a kernel launch: reports a bad launch at once, and with FLATFACE_CUDA_SYNC=1 in the
// environment also synchronises, so an asynchronous fault is reported at the op that caused it.
namespace ff::cuda {
void check_launch(const char* kernel, const char* file, int line);
}
#define FF_CUDA_LAUNCH_CHECK(name) ::ff::cuda::check_launch(name, __FILE__, __LINE__)
