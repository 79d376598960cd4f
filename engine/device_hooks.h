// What the engine needs from a device backend that is not an op: copies between devices.
// The CUDA backend (kernels/cuda/) defines these; a CPU-only build defines them to throw.
#pragma once

#include <cstddef>

#include "engine/tensor.h"

namespace ff {

// Copies `bytes` between any two devices (at least one is not the CPU). Synchronous when one side is
// the CPU; between devices it is ordered on the backend's stream.
void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
// Converts n elements between dtypes (f32, f64, i64) on the current CUDA device, like static_cast.
void device_convert(void* dst, DType dst_type, const void* src, DType src_type, int64_t n);
// True when this build has the CUDA backend and a GPU is visible.
bool cuda_available();
// Waits until the work queued on device d is done (nothing for the CPU): for timing.
void device_synchronize(Device d);

}  // namespace ff
