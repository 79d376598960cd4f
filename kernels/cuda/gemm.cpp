// Row-major GEMM on the GPU through cuBLAS: C[M, N] = alpha * op(A) op(B) + beta * C; 2*M*N*K FLOPs.
// cuBLAS is column-major: a row-major matrix is its transpose in column-major, so C^T = op(B)^T op(A)^T
// is computed with the operands swapped and the same transpose flags. f32 runs in f32 (CUBLAS_COMPUTE_32F)
// or, with allow_tf32(), on TF32 tensor cores; f64 in f64. Checked against a CPU loop by
// tests/cuda/ops_test.cpp.
#include <algorithm>
#include <climits>
#include <type_traits>

#include "kernels/cuda/context.h"
#include "kernels/cuda/ops.h"

namespace ff::cuda {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  // cuBLAS wants every leading dimension >= 1, also for an empty operand (K == 0).
  lda = std::max<int64_t>(lda, 1);
  ldb = std::max<int64_t>(ldb, 1);
  for (int64_t v : {M, N, K, lda, ldb, ldc})
    FF_CHECK(v <= INT_MAX, "gemm (CUDA): ", M, " x ", N, " x ", K, " with leading dimensions ", lda, ", ", ldb, ", ",
             ldc, " exceeds cuBLAS's int range");
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  constexpr bool f32 = std::is_same_v<T, float>;
  const cudaDataType_t type = f32 ? CUDA_R_32F : CUDA_R_64F;
  const cublasComputeType_t compute =
      f32 ? (allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F) : CUBLAS_COMPUTE_64F;
  FF_CUBLAS_CHECK(cublasGemmEx(cublas(), op_b, op_a, (int)N, (int)M, (int)K, &alpha, B, type, (int)ldb, A, type,
                               (int)lda, &beta, C, type, (int)ldc, compute, CUBLAS_GEMM_DEFAULT));
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);

}  // namespace ff::cuda
