// Helpers ops use to pick a backend for their tensors.
#pragma once

#include "engine/tensor.h"
#include "kernels/cuda/ops.h"  // plain declarations; only a CUDA build defines them

namespace ff {

#ifdef FLATFACE_HAVE_CUDA
inline constexpr bool kCudaBuild = true;
#else
inline constexpr bool kCudaBuild = false;
#endif

// Throws naming the op when `t` lives on a device this op has no kernel for in this build.
inline void require_cpu(const char* op, const Tensor& t) {
  FF_CHECK(t.device().is_cpu(), op, ": no kernel for ", t.str(), " in this build (CPU tensors only)");
}

// For ops that have CUDA kernels: any device of this build is fine, a CUDA tensor in a CPU-only
// build is the error of require_cpu.
inline void require_backend(const char* op, const Tensor& t) {
  if constexpr (!kCudaBuild) require_cpu(op, t);
}

}  // namespace ff

// Calls the kernel `fn` for t's device with the given arguments: ff::cuda::fn for a CUDA tensor, else
// ff::cpu::fn. The two share name and signature (kernels/cuda/ops.h mirrors kernels/cpu/), e.g.
//   FF_KERNEL(x, prelu_forward<T>, x.data<T>(), N, C, S, w.data<T>(), y.data<T>());
// A build without CUDA discards the CUDA branch, so it needs no definition of the CUDA kernel.
#define FF_KERNEL(t, fn, ...)                                         \
  [&] {                                                               \
    if constexpr (::ff::kCudaBuild)                                   \
      if ((t).device().is_cuda()) return ::ff::cuda::fn(__VA_ARGS__); \
    return ::ff::cpu::fn(__VA_ARGS__);                                \
  }()
