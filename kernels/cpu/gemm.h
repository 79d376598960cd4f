// Row-major GEMM on the CPU through OpenBLAS: C[M,N] = alpha * op(A) op(B) + beta * C.
// 2*M*N*K FLOPs; benchmarked by bench_cpu_ops (matmul and every convolution).
// All parallelism is OpenMP: OpenBLAS is kept at one thread so that its own pool never fights the
// OpenMP one on a small machine, and gemm_parallel cuts one product into pieces that the OpenMP
// threads take in turn: column (or row) slabs of C, or, for a small C with a deep K, chunks of K
// whose partial products are then added in chunk order. The pieces depend on the shape only, so
// results are bitwise reproducible whatever the thread count.
#pragma once

#include <cstdint>

namespace ff::cpu {

// op(A) is [M, K]: A is stored [M, K] (lda >= K) or, when trans_a, [K, M] (lda >= M); same for B.
// Runs on the calling thread only (for use inside OpenMP regions).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc);

// Same, spread over the OpenMP threads when called outside a parallel region.
template <class T>
void gemm_parallel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                   const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace ff::cpu
