// Device hooks of a build without the CUDA backend: every cross-device request is a clear error.
#ifndef FLATFACE_HAVE_CUDA
#include "engine/device_hooks.h"

namespace ff {

void device_copy(void*, Device dst_dev, const void*, Device src_dev, size_t) {
  throw Error(msg("copy from ", src_dev.str(), " to ", dst_dev.str(), ": this build has no CUDA backend"));
}

void device_convert(void*, DType dst_type, const void*, DType src_type, int64_t) {
  throw Error(msg("conversion from ", dtype_name(src_type), " to ", dtype_name(dst_type),
                  " on a device: this build has no CUDA backend"));
}

bool cuda_available() { return false; }

void device_synchronize(Device) {}

}  // namespace ff
#endif
