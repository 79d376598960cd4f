// Per-device state shared by the CUDA launchers: the one stream, and cuBLAS / cuDNN handles bound to it.
// CUDA types inside: included by kernels/cuda/ sources only (engine code includes kernels/cuda/ops.h).
#pragma once

#include "engine/tensor.h"
#include "kernels/cuda/check.h"

namespace ff::cuda {

// The current device's stream. Every kernel, library call and copy of the backend runs on it, so
// work is ordered and the caching allocator may hand a block freed by one op to the next at once.
// Created with default flags: it also orders against the legacy default stream.
cudaStream_t stream();
cublasHandle_t cublas();  // bound to stream()
cudnnHandle_t cudnn();    // bound to stream(); created on first use (loading cuDNN takes a while)
int current_device();

// Scratch memory on the current device from the caching allocator. Freed when it goes out of scope,
// possibly before the kernels using it have run: safe, since the next user of the block is
// ordered after them on the same stream.
inline Storage scratch(size_t bytes) { return Storage(bytes, Device::cuda(current_device())); }

// Up to 65536 blocks of `threads` covering n items; kernels loop grid-stride over the rest.
inline unsigned blocks_for(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  return (unsigned)(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

}  // namespace ff::cuda
