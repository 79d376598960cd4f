// Per-device CUDA state: the stream, cuBLAS and cuDNN handles, and the TF32 switch.
#include "kernels/cuda/context.h"

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "kernels/cuda/ops.h"

namespace ff::cuda {

namespace {

constexpr int kMaxDevices = 64;

struct DeviceState {
  std::once_flag stream_once, blas_once, dnn_once;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cudnnHandle_t dnn = nullptr;
};

DeviceState& state() {
  // Lives for the process: handles are never destroyed, since at exit the driver may be gone first.
  static auto* all = new DeviceState[kMaxDevices];
  int d = current_device();
  FF_CHECK(d >= 0 && d < kMaxDevices, "CUDA device ", d, " is beyond the ", kMaxDevices, " this backend handles");
  return all[d];
}

std::atomic<bool> g_tf32{[] {
  const char* v = std::getenv("FLATFACE_TF32");
  return v && v[0] == '1';
}()};

}  // namespace

int current_device() {
  int d = 0;
  FF_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

cudaStream_t stream() {
  DeviceState& s = state();
  std::call_once(s.stream_once, [&] { FF_CUDA_CHECK(cudaStreamCreate(&s.stream)); });
  return s.stream;
}

cublasHandle_t cublas() {
  DeviceState& s = state();
  std::call_once(s.blas_once, [&] {
    FF_CUBLAS_CHECK(cublasCreate(&s.blas));
    FF_CUBLAS_CHECK(cublasSetStream(s.blas, stream()));
  });
  return s.blas;
}

cudnnHandle_t cudnn() {
  DeviceState& s = state();
  std::call_once(s.dnn_once, [&] {
    FF_CUDNN_CHECK(cudnnCreate(&s.dnn));
    FF_CUDNN_CHECK(cudnnSetStream(s.dnn, stream()));
  });
  return s.dnn;
}

void synchronize() { FF_CUDA_CHECK(cudaStreamSynchronize(stream())); }

void set_allow_tf32(bool on) { g_tf32 = on; }
bool allow_tf32() { return g_tf32; }

}  // namespace ff::cuda
