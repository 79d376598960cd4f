// What the engine needs from a device backend that is not an op: copies between devices.
// The CUDA backend (kernels/cuda/) defines these; a CPU-only build defines them to throw.
#pragma once

#include <cstddef>

#include "engine/tensor.h"

namespace ff {

// Copies `bytes` between any two devices (at least one is not the CPU); synchronous.
void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
// True when this build has the CUDA backend and a GPU is visible.
bool cuda_available();

}  // namespace ff
