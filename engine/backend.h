// Helpers ops use to pick a backend for their tensors.
#pragma once

#include "engine/tensor.h"

namespace ff {

// Throws naming the op when `t` lives on a device this op has no kernel for in this build.
inline void require_cpu(const char* op, const Tensor& t) {
  FF_CHECK(t.device().is_cpu(), op, ": no kernel for ", t.str(), " in this build (CPU tensors only)");
}

}  // namespace ff
