// OpenBLAS calls behind kernels/cpu/gemm.h, and the OpenMP split of one GEMM into slabs.
#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <mutex>

namespace ff::cpu {

namespace {

// OpenBLAS (pthread build) would otherwise start its own pool as large as the machine.
void single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  single_threaded_blas();
  if (K == 0) {  // BLAS leaves C alone for K = 0 only when beta = 1
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
    return;
  }
  blas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

namespace {

// Number of slabs for a side of length len: a power of two up to 16 (balanced on 1, 2, 4, 8 or
// 16 threads) keeping slabs at least 256 wide (each slab repacks the other operand) and at least
// ~1 MFLOP. It depends on the shape only, never on the thread count.
int64_t slab_count(int64_t len, int64_t flops_per_column) {
  int64_t slabs = 1;
  while (slabs < 16 && len / (2 * slabs) >= 256 && len / (2 * slabs) * flops_per_column >= (int64_t)1 << 20) slabs *= 2;
  return slabs;
}

}  // namespace

template <class T>
void gemm_parallel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                   const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  // Split the longer side of C into slabs of whole multiples of 16 (the micro-kernel widths).
  const bool split_n = N >= M;
  const int64_t len = split_n ? N : M;
  const int64_t slabs = slab_count(len, (split_n ? M : N) * K);
  if (slabs == 1) return gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const int64_t width = (len + slabs - 1) / slabs;
  const int64_t slab = (width + 15) / 16 * 16;
  // Dynamic: a slab's result does not depend on the thread that computes it, and a thread slowed
  // by other load on the machine simply takes fewer slabs.
#pragma omp parallel for schedule(dynamic, 1) if (!omp_in_parallel())
  for (int64_t s = 0; s < slabs; ++s) {
    const int64_t lo = s * slab, n = std::min(len, lo + slab) - lo;
    if (n <= 0) continue;
    if (split_n) {
      // Columns lo..lo+n of op(B) and of C.
      const T* b = trans_b ? B + lo * ldb : B + lo;
      gemm(trans_a, trans_b, M, n, K, alpha, A, lda, b, ldb, beta, C + lo, ldc);
    } else {
      const T* a = trans_a ? A + lo : A + lo * lda;
      gemm(trans_a, trans_b, n, N, K, alpha, a, lda, B, ldb, beta, C + lo * ldc, ldc);
    }
  }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);
template void gemm_parallel<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                                   int64_t, float, float*, int64_t);
template void gemm_parallel<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                                    const double*, int64_t, double, double*, int64_t);

}  // namespace ff::cpu
