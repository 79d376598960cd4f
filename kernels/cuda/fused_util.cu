// Host side of the fused kernels' helpers (fused_util.cuh): scratch arena, tables.
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "kernels/cuda/fused_util.cuh"

namespace ff::cuda::fused {

namespace {

std::mutex g_mu;

}  // namespace

void* scratch(Slot slot, size_t bytes) {
  struct Buf {
    void* p = nullptr;
    size_t size = 0;
  };
  static std::map<std::pair<int, int>, Buf> bufs;
  std::lock_guard<std::mutex> lock(g_mu);
  Buf& b = bufs[{current_device(), (int)slot}];
  if (b.size < bytes) {
    if (b.p) FF_CUDA_CHECK(cudaFree(b.p));  // waits for the launches still reading it
    b.p = nullptr;
    const size_t size = bytes < 4096 ? 4096 : bytes + bytes / 2;
    FF_CUDA_CHECK(cudaMalloc(&b.p, size));
    b.size = size;
  }
  return b.p;
}

void* upload(Slot slot, const void* host, size_t bytes) {
  void* d = scratch(slot, bytes);
  if (bytes) FF_CUDA_CHECK(cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, stream()));
  return d;
}

int sm_count() {
  static std::map<int, int> counts;
  std::lock_guard<std::mutex> lock(g_mu);
  const int dev = current_device();
  auto it = counts.find(dev);
  if (it != counts.end()) return it->second;
  int n = 0;
  FF_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  counts.emplace(dev, n);
  return n;
}

TableBuilder::TableBuilder(int64_t count, const int64_t* numel) : count_(count), numel_(numel, numel + count) {
  starts_.reserve((size_t)count + 1);
  starts_.push_back(0);
  for (int64_t k = 0; k < count; ++k) {
    FF_CHECK(numel[k] >= 0, "multi-tensor launch: tensor ", k, " has ", numel[k], " elements");
    starts_.push_back(starts_.back() + (numel[k] + kChunk - 1) / kChunk);
  }
}

void TableBuilder::add_col(int c, const void* const* ptrs, const char* required) {
  cols_[c].assign((size_t)count_, nullptr);
  if (required)
    for (int64_t k = 0; k < count_; ++k)
      FF_CHECK(numel_[k] == 0 || (ptrs && ptrs[k]), "multi-tensor launch: ", required, " of tensor ", k, " (",
               numel_[k], " elements) is null");
  if (ptrs)
    for (int64_t k = 0; k < count_; ++k) cols_[c][k] = ptrs[k];
}

Table TableBuilder::upload() {
  // One host image of every array (all 8-byte items), one copy.
  const size_t n = (size_t)count_;
  std::vector<uint64_t> img;
  img.reserve(n * (2 + kMaxCols) + 1 + scalars_.size());
  auto append = [&](const void* src, size_t items) {
    const size_t at = img.size();
    img.resize(at + items);
    if (items) std::memcpy(img.data() + at, src, items * 8);
    return at;
  };
  const size_t o_numel = append(numel_.data(), n);
  const size_t o_start = append(starts_.data(), n + 1);
  size_t o_col[kMaxCols];
  for (int c = 0; c < kMaxCols; ++c) {
    if (cols_[c].empty()) cols_[c].assign(n, nullptr);
    o_col[c] = append(cols_[c].data(), n);
  }
  const size_t o_scalar = append(scalars_.data(), scalars_.size());
  auto* d = static_cast<uint64_t*>(fused::upload(Slot::Table, img.data(), img.size() * 8));
  Table t;
  t.numel = reinterpret_cast<const int64_t*>(d + o_numel);
  t.chunk_start = reinterpret_cast<const int64_t*>(d + o_start);
  for (int c = 0; c < kMaxCols; ++c) t.col[c] = reinterpret_cast<void* const*>(d + o_col[c]);
  t.scalar = reinterpret_cast<const double*>(d + o_scalar);
  t.count = count_;
  t.nchunks = nchunks();
  return t;
}

}  // namespace ff::cuda::fused
