// CPU emulation of the CUDA runtime for tests/cuda/emulate/run.sh: each thread of a block is a ucontext
// fiber; __syncthreads and warp shuffles are barriers over the live threads of the block / warp;
// blocks run one after another; device memory is host memory; cuBLAS is OpenBLAS.
#include <cblas.h>
#include <setjmp.h>
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"
#include "engine/device_hooks.h"
#include "kernels/cuda/check.h"

namespace emu {
namespace {
// A fiber starts with makecontext / setcontext and then switches with _setjmp / _longjmp, which do
// not save the signal mask (swapcontext makes a system call per switch: 20x slower here).
struct Fiber {
  ucontext_t ctx;
  jmp_buf jb;
  uint3 tid;
  bool started = false, done = false;
  std::vector<char> stack;
};
struct Group {
  int live = 0, arrived = 0;
  unsigned gen = 0;
};
struct Block {
  uint3 bid;
  dim3 bdim, gdim;
  std::vector<Fiber> fibers;
  int cur = 0;
  jmp_buf sched;
  Group block;
  std::vector<Group> warps;
  std::vector<uint64_t> xchg;
  const std::function<void()>* body = nullptr;
  long yields = 0;
};
Block g_blk;

void yield() {
  ++g_blk.yields;
  if (g_blk.yields > 2000000000L) {
    std::fprintf(stderr, "emu: deadlock?\n");
    std::abort();
  }
  if (!_setjmp(g_blk.fibers[g_blk.cur].jb)) _longjmp(g_blk.sched, 1);
}

void arrive(Group& g) {
  unsigned gen = g.gen;
  if (++g.arrived == g.live) {
    g.arrived = 0;
    ++g.gen;
  } else {
    while (g.gen == gen) yield();
  }
}

void leave(Group& g) {
  --g.live;
  if (g.arrived > 0 && g.arrived == g.live) {
    g.arrived = 0;
    ++g.gen;
  }
}

void entry() {
  (*g_blk.body)();
  Fiber& f = g_blk.fibers[g_blk.cur];
  f.done = true;
  leave(g_blk.block);
  leave(g_blk.warps[f.tid.x / 32]);
  _longjmp(g_blk.sched, 1);
}
}  // namespace

const uint3& tid() { return g_blk.fibers[g_blk.cur].tid; }
const uint3& bid() { return g_blk.bid; }
const dim3& bdim() { return g_blk.bdim; }
const dim3& gdim() { return g_blk.gdim; }
void syncthreads() { arrive(g_blk.block); }
void warp_sync() { arrive(g_blk.warps[tid().x / 32]); }
void* xchg_slot() { return &g_blk.xchg[tid().x]; }
void* xchg_slot_of(unsigned lane) { return &g_blk.xchg[(tid().x & ~31u) | lane]; }

void launch(dim3 grid, dim3 block, size_t, cudaStream_t, const std::function<void()>& body) {
  if (block.y != 1 || block.z != 1 || block.x > 1024 || grid.z != 1) throw std::runtime_error("emu: launch shape");
  if (grid.x == 0 || grid.y == 0) throw std::runtime_error("emu: empty grid");
  const unsigned n = block.x;
  g_blk.fibers.resize(n);
  for (auto& f : g_blk.fibers)
    if (f.stack.size() < (1 << 18)) f.stack.resize(1 << 18);
  g_blk.xchg.assign(n, 0);
  g_blk.bdim = block;
  g_blk.gdim = grid;
  g_blk.body = &body;
  for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      g_blk.bid = {bx, by, 0};
      g_blk.block = Group{(int)n, 0, 0};
      g_blk.warps.assign((n + 31) / 32, Group{});
      for (unsigned t = 0; t < n; ++t) g_blk.warps[t / 32].live++;
      for (unsigned t = 0; t < n; ++t) {
        Fiber& f = g_blk.fibers[t];
        f.tid = {t, 0, 0};
        f.done = f.started = false;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = nullptr;  // entry() never returns: it jumps back to the scheduler
        makecontext(&f.ctx, entry, 0);
      }
      bool any = true;  // locals change only before each _setjmp: no volatile needed
      while (any) {
        any = false;
        for (unsigned t = 0; t < n; ++t) {
          Fiber& f = g_blk.fibers[t];
          if (f.done) continue;
          any = true;
          g_blk.cur = (int)t;
          if (!_setjmp(g_blk.sched)) {
            if (f.started) _longjmp(f.jb, 1);
            f.started = true;
            setcontext(&f.ctx);
          }
        }
      }
    }
}

void check_aligned(const void* p, size_t a) {
  if ((uintptr_t)p % a) {
    std::fprintf(stderr, "emu: misaligned %zu-byte vector access at %p\n", a, p);
    std::abort();
  }
}
}  // namespace emu

// ---- runtime ----
static std::map<void*, size_t> g_allocs;
cudaError_t cudaMalloc(void** p, size_t n) {
  *p = std::aligned_alloc(256, (n + 255) / 256 * 256 + 256);
  g_allocs[*p] = n;
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* p) {
  g_allocs.erase(p);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
  if (n) std::memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t) {
  return cudaMemcpy(d, s, n, k);
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) {
  std::memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) {
  *v = 4;  // few SMs: persistent grids loop over many chunks per block
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t) { return "emu error"; }

// ---- cuBLAS ----
cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = (void*)1;
  return 0;
}
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return 0; }
const char* cublasGetStatusString(cublasStatus_t) { return "emu cublas"; }
static CBLAS_TRANSPOSE tr(cublasOperation_t o) { return o == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; }
cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* al, const float* A, int lda, const float* B, int ldb, const float* be, float* C,
                           int ldc) {
  cblas_sgemm(CblasColMajor, tr(ta), tr(tb), m, n, k, *al, A, lda, B, ldb, *be, C, ldc);
  return 0;
}
cublasStatus_t cublasDgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const double* al, const double* A, int lda, const double* B, int ldb, const double* be,
                           double* C, int ldc) {
  cblas_dgemm(CblasColMajor, tr(ta), tr(tb), m, n, k, *al, A, lda, B, ldb, *be, C, ldc);
  return 0;
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* al, const void* A, cudaDataType, int lda, const void* B, cudaDataType, int ldb,
                            const void* be, void* C, cudaDataType, int ldc, cublasComputeType_t, cublasGemmAlgo_t) {
  return cublasSgemm(h, ta, tb, m, n, k, (const float*)al, (const float*)A, lda, (const float*)B, ldb, (const float*)be,
                     (float*)C, ldc);
}

namespace ff {
bool cuda_available() { return true; }
namespace cuda {
void check_launch(const char*, const char*, int) {}
// The backend context (kernels/cuda/context.cpp) of one emulated device: the legacy stream, one handle.
int current_device() { return 0; }
cudaStream_t stream() { return 0; }
cublasHandle_t cublas() { return (cublasHandle_t)1; }
}  // namespace cuda
}  // namespace ff
