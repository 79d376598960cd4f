// Error checks for CUDA, cuBLAS, cuDNN and NCCL calls: each names the call, file and line.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#ifdef FLATFACE_HAVE_NCCL
#include <nccl.h>
#endif

#include "engine/error.h"

#define FF_CUDA_CHECK(call)                                                                                      \
  do {                                                                                                           \
    cudaError_t _e = (call);                                                                                     \
    if (_e != cudaSuccess)                                                                                       \
      throw ::ff::Error(::ff::msg(#call, " failed: ", cudaGetErrorString(_e), " at ", __FILE__, ":", __LINE__)); \
  } while (0)

#define FF_CUBLAS_CHECK(call)                                                                                       \
  do {                                                                                                              \
    cublasStatus_t _s = (call);                                                                                     \
    if (_s != CUBLAS_STATUS_SUCCESS)                                                                                \
      throw ::ff::Error(::ff::msg(#call, " failed: ", cublasGetStatusString(_s), " at ", __FILE__, ":", __LINE__)); \
  } while (0)

#define FF_CUDNN_CHECK(call)                                                                                      \
  do {                                                                                                            \
    cudnnStatus_t _s = (call);                                                                                    \
    if (_s != CUDNN_STATUS_SUCCESS)                                                                               \
      throw ::ff::Error(::ff::msg(#call, " failed: ", cudnnGetErrorString(_s), " at ", __FILE__, ":", __LINE__)); \
  } while (0)

#ifdef FLATFACE_HAVE_NCCL
#define FF_NCCL_CHECK(call)                                                                                      \
  do {                                                                                                           \
    ncclResult_t _r = (call);                                                                                    \
    if (_r != ncclSuccess)                                                                                       \
      throw ::ff::Error(::ff::msg(#call, " failed: ", ncclGetErrorString(_r), " at ", __FILE__, ":", __LINE__)); \
  } while (0)
#endif

// After a kernel launch: reports a bad launch at once, and with FLATFACE_CUDA_SYNC=1 in the
// environment also synchronises, so an asynchronous fault is reported at the op that caused it.
namespace ff::cuda {
void check_launch(const char* kernel, const char* file, int line);
}
#define FF_CUDA_LAUNCH_CHECK(name) ::ff::cuda::check_launch(name, __FILE__, __LINE__)
