// OpenBLAS calls behind kernels/cpu/gemm.h, and the OpenMP split of one GEMM into slabs.
#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <mutex>
#include <vector>

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

// Number of pieces for a dimension of length len: a power of two up to 16 (balanced on 1, 2, 4,
// 8 or 16 threads) keeping pieces at least min_len long (each one repacks what it shares with the
// others) and at least ~1 MFLOP. It depends on the shape only, never on the thread count.
int64_t piece_count(int64_t len, int64_t min_len, int64_t flops_per_unit) {
  int64_t pieces = 1;
  while (pieces < 16 && len / (2 * pieces) >= min_len && len / (2 * pieces) * flops_per_unit >= (int64_t)1 << 20)
    pieces *= 2;
  return pieces;
}

// Small C, deep K (a batch of 32 through an fc layer): the pieces are chunks of K, each a whole
// product into its own partial C; the partials are then added in chunk order.
template <class T>
void gemm_split_k(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t chunks, T alpha, const T* A,
                  int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const int64_t chunk = (K + chunks - 1) / chunks;
  std::vector<T> partials((size_t)(chunks * M * N));
#pragma omp parallel for schedule(dynamic, 1) if (!omp_in_parallel())
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t k0 = c * chunk, kc = std::min(K, k0 + chunk) - k0;
    const T* a = trans_a ? A + k0 * lda : A + k0;
    const T* b = trans_b ? B + k0 : B + k0 * ldb;
    gemm(trans_a, trans_b, M, N, std::max<int64_t>(kc, 0), T(1), a, lda, b, ldb, T(0), &partials[(size_t)(c * M * N)],
         N);
  }
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      T acc = partials[(size_t)(i * N + j)];
      for (int64_t c = 1; c < chunks; ++c) acc += partials[(size_t)((c * M + i) * N + j)];
      T& out = C[i * ldc + j];
      out = beta == T(0) ? alpha * acc : alpha * acc + beta * out;  // beta 0 ignores what C held
    }
}

}  // namespace

template <class T>
void gemm_parallel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                   const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M * N <= (int64_t)1 << 16) {
    const int64_t chunks = piece_count(K, 512, M * N);
    if (chunks > 1) return gemm_split_k(trans_a, trans_b, M, N, K, chunks, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  // Split the longer side of C into slabs of whole multiples of 16 (the micro-kernel widths).
  const bool split_n = N >= M;
  const int64_t len = split_n ? N : M;
  const int64_t slabs = piece_count(len, 256, (split_n ? M : N) * K);
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
