// 2-D convolution on the CPU, NCHW, with groups: forward, gradient of the input, gradient of the
// weight and bias. 2*N*Cout*OH*OW*(Cin/groups)*KH*KW FLOPs for each of the three.
// Grouped convolutions with several input channels per group go through im2col + GEMM
// (kernels/cpu/gemm.h) on bands of output rows (or groups of small images); depthwise ones (one
// input channel per group) through direct loops. Every sum runs in an order fixed by the shape:
// results are the same bytes for any OpenMP thread count. Benchmark: bench_cpu_ops
// (benchmarks/cpu_ops.cpp).
#pragma once

#include <cstdint>

namespace ff::cpu {

struct Conv2dShape {
  int64_t n, cin, h, w;  // input
  int64_t cout, kh, kw;  // weight [cout, cin / groups, kh, kw]
  int64_t stride_h, stride_w, pad_h, pad_w, groups;
  int64_t oh() const { return (h + 2 * pad_h - kh) / stride_h + 1; }
  int64_t ow() const { return (w + 2 * pad_w - kw) / stride_w + 1; }
  double flops() const {
    return 2.0 * (double)n * (double)cout * (double)(oh() * ow()) * (double)(cin / groups * kh * kw);
  }
};

// y [n, cout, oh, ow] = conv(x, w) + bias; bias may be null.
template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);

// dx [n, cin, h, w] = gradient of the input for output gradient dy (overwritten, not accumulated).
template <class T>
void conv2d_backward_input(const Conv2dShape& s, const T* dy, const T* w, T* dx);

// dw [cout, cin / groups, kh, kw] and dbias [cout] (either may be null), overwritten.
template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* dy, const T* x, T* dw, T* dbias);

}  // namespace ff::cpu
