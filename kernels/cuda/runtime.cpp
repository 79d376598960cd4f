// CUDA runtime glue: the caching device allocator, cross-device copies and launch checks (host code only).
#include <cstdlib>
#include <map>
#include <mutex>

#include "engine/device_hooks.h"
#include "kernels/cuda/context.h"

namespace ff {
namespace cuda {

void check_launch(const char* kernel, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) {
    static const bool sync = [] {
      const char* v = std::getenv("FLATFACE_CUDA_SYNC");
      return v && v[0] == '1';
    }();
    if (sync) e = cudaDeviceSynchronize();
  }
  if (e != cudaSuccess)
    throw Error(msg("CUDA kernel ", kernel, " failed: ", cudaGetErrorString(e), " at ", file, ":", line));
}

namespace {

// Keeps freed blocks by exact rounded size and hands them out again, so the steady state of
// training makes no cudaMalloc / cudaFree calls. Blocks are not keyed by device: a process drives
// one GPU (ranks are processes, ARCHITECTURE.md), so every block belongs to the current device.
class CachingAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    size_t size = round(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    void* p = nullptr;
    if (it != free_.end()) {
      p = it->second;
      free_.erase(it);
      cached_ -= size;
    } else {
      cudaError_t e = cudaMalloc(&p, size);
      if (e != cudaSuccess) {
        // The failed call left its error as the thread's last error; clear it, or the next launch
        // check would report this recovered failure against an unrelated kernel.
        (void)cudaGetLastError();
        release_cached();  // give the cache back and try once more before failing
        FF_CUDA_CHECK(cudaMalloc(&p, size));
      }
    }
    current_ += size;
    if (current_ > peak_) peak_ = current_;
    return p;
  }
  void deallocate(void* p, size_t bytes) override {
    size_t size = round(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    free_.emplace(size, p);
    current_ -= size;
    cached_ += size;
  }
  size_t current_bytes() const override { return current_; }
  size_t peak_bytes() const override { return peak_; }

 private:
  static size_t round(size_t b) { return b <= 512 ? 512 : (b + 4095) / 4096 * 4096; }
  void release_cached() {
    for (auto& [size, p] : free_) cudaFree(p);
    free_.clear();
    cached_ = 0;
  }
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  size_t current_ = 0, peak_ = 0, cached_ = 0;
};

CachingAllocator* g_allocator = [] {
  auto* a = new CachingAllocator();  // lives for the process: blocks may be freed at exit
  register_allocator(DeviceType::CUDA, a);
  return a;
}();

}  // namespace
}  // namespace cuda

bool cuda_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

void device_synchronize(Device d) {
  // Fused kernels queue on the legacy default stream, which the backend's blocking stream orders
  // against; waiting for the whole device covers both.
  if (d.is_cuda()) FF_CUDA_CHECK(cudaDeviceSynchronize());
}

void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  FF_CHECK(cuda_available(), "copy from ", src_dev.str(), " to ", dst_dev.str(), ": no CUDA device is visible");
  // On the backend's stream, so the copy is ordered after the kernels that wrote `src`. Unified
  // addressing tells the direction (and the devices) from the pointers.
  FF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cuda::stream()));
  // A host side may be reused (or freed) as soon as this returns; device-to-device copies stay async.
  if (dst_dev.is_cpu() || src_dev.is_cpu()) FF_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
}

}  // namespace ff
