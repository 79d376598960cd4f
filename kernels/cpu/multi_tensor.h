// Multi-tensor work split for the optimizer and perturbation kernels: many tensors of any size cut
// into fixed-size chunks, so OpenMP balances the work and reductions do not depend on thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace ff::cpu {

struct Chunk {
  int64_t tensor, begin, end;  // elements [begin, end) of tensor `tensor`
};

// 32K elements: large enough to amortise the scheduling, small enough to balance a few big tensors
// over the cores. Fixed (not derived from the thread count) to keep sums reproducible.
constexpr int64_t kChunkElems = int64_t(1) << 15;

inline std::vector<Chunk> make_chunks(int64_t count, const int64_t* numel) {
  std::vector<Chunk> chunks;
  for (int64_t k = 0; k < count; ++k)
    for (int64_t b = 0; b < numel[k]; b += kChunkElems) chunks.push_back({k, b, std::min(numel[k], b + kChunkElems)});
  return chunks;
}

// Calls f(chunk_index, chunk) for every chunk, in parallel from two chunks on (below that, waking
// the thread team costs more than the loop; the elementwise ops use the same 32K threshold).
template <class F>
void for_each_chunk(const std::vector<Chunk>& chunks, F&& f) {
  const int64_t n = (int64_t)chunks.size();
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
  for (int64_t c = 0; c < n; ++c) f(c, chunks[c]);
}

}  // namespace ff::cpu
