// The op set: every differentiable op of the engine, dispatched on the tensors' device.
// Each op validates shapes and dtypes (throwing ff::Error naming the op and the shapes), calls the
// kernel for the device (kernels/cpu/<group>.h, kernels/cuda/ when built), and records its backward.
// All ops take f32 or f64 (the same dtype for every input); labels are i64.
#pragma once

#include <cstdint>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace ff {

// ---- creation ----
Tensor randn(const Shape& shape, Rng& rng, double stddev = 1.0, DType dtype = DType::F32);
Tensor rand_uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype = DType::F32);

// ---- elementwise, with NumPy broadcasting of either operand (engine/ops_elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor neg(const Tensor& a);
Tensor square(const Tensor& a);
Tensor relu(const Tensor& x);
Tensor clamp(const Tensor& x, double lo, double hi);  // gradient passes where lo < x < hi

// In-place updates without autograd (gradient accumulation, optimizers): same shape and dtype.
void add_(Tensor& dst, const Tensor& src, double alpha = 1.0);  // dst += alpha * src
void scale_(Tensor& t, double s);                               // t *= s

// ---- reductions (engine/ops_reduce.cpp) ----
Tensor sum(const Tensor& x);                    // all elements -> shape []
Tensor mean(const Tensor& x);                   // all elements -> shape []
Tensor sum_dim(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor mean_dim(const Tensor& x, int64_t dim, bool keepdim = false);
// Sums a broadcast result back to `shape` (the gradient of broadcasting).
Tensor sum_to_shape(const Tensor& x, const Shape& shape);

// ---- linear algebra (engine/ops_linear.cpp) ----
// [M, K] x [K, N] -> [M, N]; trans_a / trans_b use the stored transpose.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x [N, in], weight [out, in], bias [out] or undefined -> [N, out]
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- convolution (engine/ops_conv.cpp) ----
struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t groups = 1;
};
// x [N, Cin, H, W], weight [Cout, Cin/groups, KH, KW], bias [Cout] or undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt);

// ---- normalisation and activations (engine/ops_norm.cpp) ----
struct BatchNormOptions {
  bool training = true;        // normalise with batch statistics
  bool update_stats = true;    // in training mode: fold batch statistics into the running ones
  double momentum = 0.1;       // running = (1 - momentum) * running + momentum * batch (unbiased var)
  double eps = 1e-5;
};
// x [N, C] or [N, C, H, W]; weight/bias [C] or undefined (not affine); running_mean/var [C]
// (may be undefined in training mode; required in eval mode). Running statistics are updated in
// place and are not differentiated.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                  Tensor running_var, const BatchNormOptions& opt);
// x [N, C, ...], weight [C]: x where x > 0, weight[c] * x elsewhere.
Tensor prelu(const Tensor& x, const Tensor& weight);
// Zeroes each element with probability p and scales the rest by 1/(1-p); identity when !training.
Tensor dropout(const Tensor& x, double p, bool training, Rng& rng);
// Rows of x [N, D] divided by max(|row|, eps).
Tensor l2_normalize(const Tensor& x, double eps = 1e-12);

// ---- softmax and losses (engine/ops_loss.cpp) ----
Tensor log_softmax(const Tensor& x);  // over the last dim of [N, C]
// Mean over rows of -log_softmax(logits)[i, labels[i]]; labels i64 [N] in [0, C).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);

}  // namespace ff
