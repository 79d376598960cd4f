// CUDA launchers: the twin of each CPU kernel, with its name and (where one exists) its signature.
// Plain C++, no CUDA types, so g++-compiled engine code includes it; engine/backend.h's FF_KERNEL
// picks cpu:: or cuda:: by the tensor's device. Every pointer is a device pointer; every launcher is
// asynchronous on the device's one stream (synchronize() waits) and deterministic: no float atomics,
// reductions in a fixed order that depends on the shape only. Sums accumulate in double, as on the
// CPU. Kernels live in kernels/cuda/*.cu; GEMM and convolution call cuBLAS / cuDNN (gemm.cpp, conv.cpp).
#pragma once

#include <cstdint>

#include "kernels/cpu/conv2d.h"

#include "kernels/cpu/elementwise.h"

namespace ff::cuda {

// ---- device state (context.cpp) ----
void synchronize();  // waits for the current device's stream
// TensorFloat-32 for f32 GEMMs and convolutions (10-bit mantissa products, f32 sums). Off unless
// FLATFACE_TF32=1 is in the environment or set_allow_tf32(true) is called.
void set_allow_tf32(bool on);
bool allow_tf32();

// ---- elementwise (elementwise.cu) ----
// A CPU elementwise lambda becomes an op code plus its captured scalars on the device.
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, ReluBackward, ClampBackward };
struct BinaryFn {
  BinaryOp op;
  double lo = 0, hi = 0;  // ClampBackward: out = a where lo < b < hi
};
enum class UnaryOp : uint8_t { AddScalar, MulScalar, Square, Relu, Clamp };
struct UnaryFn {
  UnaryOp op;
  double a = 0, b = 0;  // AddScalar / MulScalar: the scalar a; Clamp: [a, b]
};
template <class T>
void binary_map(const cpu::BroadcastPlan& p, const T* a, const T* b, T* out, BinaryFn f);  // up to 8 dims
template <class T>
void unary_map(int64_t n, const T* x, T* out, UnaryFn f);
template <class T>
void add_(int64_t n, T* dst, const T* src, double alpha);  // dst += alpha * src
template <class T>
void scale_(int64_t n, T* t, double s);  // t *= s
template <class T>
void fill(int64_t n, T* t, double value);

// ---- reductions (elementwise.cu) ----
template <class T>
void sum_all(const T* x, int64_t n, double scale, T* out);  // out[0] = scale * sum(x)
// x viewed as [outer, n, inner]: out[o, i] = scale * sum_k x[o, k, i].
template <class T>
void reduce_middle(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale);

// ---- batch norm, PReLU, L2 normalisation (norm.cu); x viewed as [N, C, S] ----
template <class T>
void batch_norm_stats(const T* x, int64_t N, int64_t C, int64_t S, double* mean, double* var);
void batch_norm_invstd(int64_t C, double eps, const double* var, double* invstd);
template <class T>
void batch_norm_running_stats(int64_t C, double eps, const T* running_mean, const T* running_var, double* mean,
                              double* invstd);
template <class T>
void batch_norm_update_running(int64_t C, int64_t M, double momentum, const double* mean, const double* var,
                               T* running_mean, T* running_var);
template <class T>
void batch_norm_forward(const T* x, int64_t N, int64_t C, int64_t S, const double* mean, const double* invstd,
                        const T* weight, const T* bias, T* y);
template <class T>
void batch_norm_backward(const T* dy, const T* x, int64_t N, int64_t C, int64_t S, const double* mean,
                         const double* invstd, const T* weight, bool training, T* dx, T* dweight, T* dbias);
template <class T>
void prelu_forward(const T* x, int64_t N, int64_t C, int64_t S, const T* weight, T* y);
template <class T>
void prelu_backward(const T* dy, const T* x, int64_t N, int64_t C, int64_t S, const T* weight, T* dx, T* dweight);
template <class T>
void l2_normalize_forward(const T* x, int64_t N, int64_t D, double eps, T* y, double* norm);
template <class T>
void l2_normalize_backward(const T* dy, const T* x, int64_t N, int64_t D, double eps, const double* norm, T* dx);
// out[c] = sum over n and s of x[n, c, s] (the bias gradient of a convolution).
template <class T>
void channel_sum(const T* x, int64_t N, int64_t C, int64_t S, T* out);

// ---- log-softmax and cross-entropy over rows of x [N, C] (softmax.cu) ----
template <class T>
void logsumexp_rows(const T* x, int64_t N, int64_t C, double* lse);
template <class T>
void log_softmax_forward(const T* x, int64_t N, int64_t C, const double* lse, T* y);
template <class T>
void log_softmax_backward(const T* dy, const T* y, int64_t N, int64_t C, T* dx);
// loss[0] = mean_r (lse[r] - x[r, labels[r]]); the CPU twin returns the value instead (a host scalar).
template <class T>
void cross_entropy_forward(const T* x, const int64_t* labels, int64_t N, int64_t C, const double* lse, T* loss);
template <class T>
void cross_entropy_backward(const T* x, const int64_t* labels, int64_t N, int64_t C, const double* lse, const T* dloss,
                            T* dx);

// ---- GEMM through cuBLAS (gemm.cpp); the signature of cpu::gemm (kernels/cpu/gemm.h) ----
// Row-major C[M, N] = alpha * op(A) op(B) + beta * C; op(A) is [M, K]: A stored [M, K] (lda >= K) or,
// when trans_a, [K, M] (lda >= M); likewise B. f64 in f64; f32 in f32, or TF32 when allow_tf32().
// M, N, K and the leading dimensions must fit in int (cuBLAS), else ff::Error.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc);
// The GPU has one GEMM; this name mirrors cpu::gemm_parallel so FF_KERNEL(a, gemm_parallel<T>) works.
template <class T>
void gemm_parallel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                   const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  gemm<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// ---- 2-D convolution through cuDNN (conv.cpp), NCHW, cross-correlation like cpu::conv2d_* ----
using Conv2dShape = cpu::Conv2dShape;  // one shape struct for both backends, so FF_KERNEL works
// Algorithms are chosen once per shape, dtype and TF32 setting (cuDNN's heuristics, deterministic
// ones first) and cached; workspaces come from the caching allocator. Tensors above 2^31 - 1
// elements are refused (cuDNN's 4-D descriptors take int).
// y [n, cout, oh, ow] = conv(x, w) + bias; bias may be null.
template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);
// dx [n, cin, h, w], overwritten.
template <class T>
void conv2d_backward_input(const Conv2dShape& s, const T* dy, const T* w, T* dx);
// dw [cout, cin / groups, kh, kw] and dbias [cout] (either may be null), overwritten.
template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* dy, const T* x, T* dw, T* dbias);

}  // namespace ff::cuda
