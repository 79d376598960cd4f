// CUDA kernels and ops against their CPU twins: every launcher on awkward sizes with sentinel guard
// regions around its outputs, cuBLAS GEMM and cuDNN convolution against direct loops, and the ops
// (forward, and backward through autograd) on CUDA tensors against the same ops on CPU tensors.
// Each check prints its seed and its worst error as a fraction of the tolerance; FLATFACE_TEST_SEED
// replays a seed. Without a GPU every test skips with one line.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/device_hooks.h"
#include "tests/cuda/compare.h"
#include "tests/engine/gradcheck.h"

#define SKIP_WITHOUT_CUDA() \
  if (!::ff::cuda_available()) GTEST_SKIP() << "no CUDA device: skipping"

#ifndef FLATFACE_HAVE_CUDA

TEST(Cuda, Backend) {
  SKIP_WITHOUT_CUDA();
  FAIL() << "a build without the CUDA backend reports a CUDA device";
}

#else

#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/reduce.h"
#include "kernels/cpu/softmax.h"
#include "kernels/cuda/ops.h"

namespace ff::test {
namespace {

// ---------------------------------------------------------------------------------------------
// Harness: guarded device buffers, tolerances, comparisons.

// n elements in the middle of a device buffer whose kGuard elements either side hold a sentinel.
template <class T>
class Guarded {
 public:
  explicit Guarded(int64_t n) : Guarded(std::vector<T>((size_t)n, sentinel<T>())) {}
  explicit Guarded(const std::vector<T>& values) : n_((int64_t)values.size()) {
    std::vector<T> host((size_t)(n_ + 2 * kGuard), sentinel<T>());
    std::copy(values.begin(), values.end(), host.begin() + kGuard);
    buf_ = Tensor::from<T>({n_ + 2 * kGuard}, host).to(Device::cuda());
  }
  T* ptr() const { return buf_.data<T>() + kGuard; }
  int64_t size() const { return n_; }
  std::vector<T> host() const {
    Tensor h = buf_.to(Device::cpu());
    const T* p = h.data<T>() + kGuard;
    return std::vector<T>(p, p + n_);
  }
  // Fails when a write landed outside the n elements.
  void expect_guards(const std::string& label) const {
    Tensor h = buf_.to(Device::cpu());
    expect_guards_intact(std::vector<T>(h.data<T>(), h.data<T>() + n_ + 2 * kGuard), 0, n_, label);
  }

 private:
  int64_t n_;
  Tensor buf_;
};

template <class T>
Tol tol(double f32_abs, double f32_rel, double f64_abs = 1e-12, double f64_rel = 1e-12) {
  return std::is_same_v<T, float> ? Tol{f32_abs, f32_rel} : Tol{f64_abs, f64_rel};
}

// A CUDA output against its reference, guards included.
template <class T, class B>
void expect_output(const std::string& label, const Guarded<T>& out, const std::vector<B>& want, Tol t, uint64_t seed) {
  out.expect_guards(label);
  expect_close(label, seed, out.host(), want, t);
}

template <class T>
class CudaKernels : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CudaKernels, FloatTypes);

// ---------------------------------------------------------------------------------------------
// Elementwise and reductions.

// NumPy broadcasting of a and b, written here independently of the engine's planner.
cpu::BroadcastPlan make_plan(const Shape& a, const Shape& b, Shape& out) {
  const size_t nd = std::max(a.size(), b.size());
  cpu::BroadcastPlan p;
  p.extent.assign(nd, 1);
  p.stride_a.assign(nd, 0);
  p.stride_b.assign(nd, 0);
  out.assign(nd, 1);
  int64_t sa = 1, sb = 1;
  for (size_t k = 0; k < nd; ++k) {
    const size_t d = nd - 1 - k;
    const int64_t ea = k < a.size() ? a[a.size() - 1 - k] : 1, eb = k < b.size() ? b[b.size() - 1 - k] : 1;
    out[d] = p.extent[d] = std::max(ea, eb);
    p.stride_a[d] = ea == 1 ? 0 : sa;
    p.stride_b[d] = eb == 1 ? 0 : sb;
    sa *= ea;
    sb *= eb;
  }
  p.numel = shape_numel(out);
  p.same_shape = a == b;
  return p;
}

// The meaning of each op code (the spec the CUDA functor must meet).
template <class T>
T ref_binary(cuda::BinaryFn f, T a, T b) {
  switch (f.op) {
    case cuda::BinaryOp::Add:
      return a + b;
    case cuda::BinaryOp::Sub:
      return a - b;
    case cuda::BinaryOp::Mul:
      return a * b;
    case cuda::BinaryOp::Div:
      return a / b;
    case cuda::BinaryOp::ReluBackward:
      return b > 0 ? a : T(0);
    case cuda::BinaryOp::ClampBackward:
      return b > (T)f.lo && b < (T)f.hi ? a : T(0);
  }
  return T(0);
}

template <class T>
T ref_unary(cuda::UnaryFn f, T x) {
  switch (f.op) {
    case cuda::UnaryOp::AddScalar:
      return x + (T)f.a;
    case cuda::UnaryOp::MulScalar:
      return x * (T)f.a;
    case cuda::UnaryOp::Square:
      return x * x;
    case cuda::UnaryOp::Relu:
      return x > 0 ? x : T(0);
    case cuda::UnaryOp::Clamp:
      return std::min(std::max(x, (T)f.a), (T)f.b);
  }
  return T(0);
}

TYPED_TEST(CudaKernels, BinaryMapBroadcasts) {
  SKIP_WITHOUT_CUDA();
  using T = TypeParam;
  const uint64_t seed = test_seed(101);
  Rng rng(seed);
  const std::vector<std::pair<Shape, Shape> > shapes = {{{3, 5}, {3, 5}},
                                                        {{2, 3, 4}, {4}},
                                                        {{2, 3, 1, 5}, {3, 4, 1}},
                                                        {{1}, {2, 3}},
                                                        {{1, 67, 13, 11}, {1, 67, 1, 1}},
                                                        {{1}, {1}},
                                                        {{1000003}, {1000003}},
                                                        {{37, 1}, {1, 2049}}};
  const std::vector<cuda::BinaryFn> fns = {{cuda::BinaryOp::Add},          {cuda::BinaryOp::Sub},
                                           {cuda::BinaryOp::Mul},          {cuda::BinaryOp::Div},
                                           {cuda::BinaryOp::ReluBackward}, {cuda::BinaryOp::ClampBackward, -0.3, 0.6}};
  for (const auto& [sa, sb] : shapes)
    for (const auto& f : fns) {
      Shape so;
      const cpu::BroadcastPlan p = make_plan(sa, sb, so);
      auto a = rand_vec<T>(shape_numel(sa), rng), b = rand_vec<T>(shape_numel(sb), rng, 0.25, 1.5);
      if (f.op != cuda::BinaryOp::Div)
        for (auto& v : b) v -= (T)0.8;  // both signs for the backward masks
      std::vector<T> want((size_t)p.numel);
      cpu::binary_map<T>(p, a.data(), b.data(), want.data(), [&](T x, T y) { return ref_binary(f, x, y); });
      Guarded<T> ga(a), gb(b), out(p.numel);
      cuda::binary_map<T>(p, ga.ptr(), gb.ptr(), out.ptr(), f);
      expect_output(msg("binary_map ", type_name<T>(), " op ", (int)f.op, " ", shape_str(sa), " ", shape_str(sb)), out,
                    want, Tol{0, 0}, seed);
    }
}

TYPED_TEST(CudaKernels, UnaryMapAddScaleFill) {
  SKIP_WITHOUT_CUDA();
  using T = TypeParam;
  const uint64_t seed = test_seed(102);
  Rng rng(seed);
  const std::vector<cuda::UnaryFn> fns = {{cuda::UnaryOp::AddScalar, 0.37},
                                          {cuda::UnaryOp::MulScalar, -1.7},
                                          {cuda::UnaryOp::Square},
                                          {cuda::UnaryOp::Relu},
                                          {cuda::UnaryOp::Clamp, -0.5, 0.25}};
  for (int64_t n : {1, 7, 1000003}) {
    auto x = rand_vec<T>(n, rng);
    if (n >= 7) {  // special values: NaN passes through clamp and is zeroed by relu, as on the CPU
      x[1] = std::numeric_limits<T>::quiet_NaN();
      x[2] = std::numeric_limits<T>::infinity();
      x[3] = -std::numeric_limits<T>::infinity();
      x[4] = 0;
    }
    Guarded<T> gx(x);
    for (const auto& f : fns) {
      std::vector<T> want((size_t)n);
      cpu::unary_map<T>(n, x.data(), want.data(), [&](T v) { return ref_unary(f, v); });
      Guarded<T> out(n);
      cuda::unary_map<T>(n, gx.ptr(), out.ptr(), f);
      expect_output(msg("unary_map ", type_name<T>(), " op ", (int)f.op, " n ", n), out, want, Tol{0, 0}, seed);
    }
    // In place: dst += alpha * src, t *= s, fill (FMA contraction on the GPU: an ulp or so).
    auto d = rand_vec<T>(n, rng), s = rand_vec<T>(n, rng);
    Guarded<T> gd(d), gs(s);
    cpu::add_<T>(n, d.data(), s.data(), -0.3);
    cuda::add_<T>(n, gd.ptr(), gs.ptr(), -0.3);
    expect_output(msg("add_ ", type_name<T>(), " n ", n), gd, d, tol<T>(5e-7, 5e-7, 2e-15, 2e-15), seed);
    cpu::scale_<T>(n, d.data(), 1.37);
    cuda::scale_<T>(n, gd.ptr(), 1.37);
    expect_output(msg("scale_ ", type_name<T>(), " n ", n), gd, d, tol<T>(5e-7, 5e-7, 2e-15, 2e-15), seed);
    cpu::fill<T>(n, d.data(), -2.5);
    cuda::fill<T>(n, gd.ptr(), -2.5);
    expect_output(msg("fill ", type_name<T>(), " n ", n), gd, d, Tol{0, 0}, seed);
  }
}

TYPED_TEST(CudaKernels, SumAllAndReduceMiddle) {
  SKIP_WITHOUT_CUDA();
  using T = TypeParam;
  const uint64_t seed = test_seed(103);
  Rng rng(seed);
  // Sums of up to 10^6 terms: the GPU adds in another order (both in double), so allow a few ulps of
  // the output plus 1e-15 of the sum of |x| (cancellation).
  for (int64_t n : {0, 1, 7, 4096, 4097, 1000003}) {
    auto x = rand_vec<T>(n, rng, -0.5, 1.0);
    Guarded<T> gx(x);
    for (double scale : {1.0, 1.0 / std::max<int64_t>(n, 1)}) {
      T want = 0;
      cpu::sum_all<T>(x.data(), n, scale, &want);
      Guarded<T> out(1);
      cuda::sum_all<T>(gx.ptr(), n, scale, out.ptr());
      expect_output(msg("sum_all ", type_name<T>(), " n ", n, " scale ", scale), out, std::vector<T>{want},
                    tol<T>(1e-15 * n, 3e-7, 1e-15 * n, 1e-14), seed);
    }
  }
  struct Case {
    int64_t outer, n, inner;
  };
  for (Case c : {Case{1, 1, 1}, Case{3, 5, 1}, Case{1, 100003, 1}, Case{70000, 3, 2}, Case{2, 37, 33}, Case{5, 1, 67},
                 Case{1, 1000, 1000}, Case{3, 0, 5}, Case{100, 2000, 1}}) {
    auto x = rand_vec<T>(c.outer * c.n * c.inner, rng);
    Guarded<T> gx(x);
    for (double scale : {1.0, 1.0 / std::max<int64_t>(c.n, 1)}) {
      std::vector<T> want((size_t)(c.outer * c.inner));
      cpu::reduce_middle<T>(x.data(), want.data(), c.outer, c.n, c.inner, scale);
      Guarded<T> out(c.outer * c.inner);
      cuda::reduce_middle<T>(gx.ptr(), out.ptr(), c.outer, c.n, c.inner, scale);
      expect_output(msg("reduce_middle ", type_name<T>(), " [", c.outer, ", ", c.n, ", ", c.inner, "] scale ", scale),
                    out, want, tol<T>(1e-15 * c.n, 3e-7, 1e-15 * c.n, 1e-14), seed);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Batch norm, PReLU, L2 normalisation.

struct NCS {
  int64_t N, C, S;
};
// Batch 1, channels not multiples of 32, odd spatial sizes, [N, C] (S = 1), and channels long
// enough to be split into several blocks.
const std::vector<NCS> kNormShapes = {{1, 3, 1},     {2, 67, 35}, {1, 5, 143}, {7, 100, 1},
                                      {3, 4, 20011}, {1, 1, 1},   {64, 33, 49}};

TYPED_TEST(CudaKernels, BatchNorm) {
  SKIP_WITHOUT_CUDA();
  using T = TypeParam;
  const uint64_t seed = test_seed(104);
  Rng rng(seed);
  const double eps = 1e-5, momentum = 0.1;
  for (NCS v : kNormShapes) {
    const int64_t N = v.N, C = v.C, S = v.S, total = N * C * S, M = N * S;
    const std::string tag = msg(type_name<T>(), " [", N, ", ", C, ", ", S, "]");
    // Means far from zero: the statistics must not lose the variance to cancellation.
    auto x = rand_vec<T>(total, rng, 2.0, 4.0);
    auto w = rand_vec<T>(C, rng, 0.5, 1.5), b = rand_vec<T>(C, rng), dy = rand_vec<T>(total, rng);
    Guarded<T> gx(x), gw(w), gb(b), gdy(dy);

    std::vector<double> mean((size_t)C), var((size_t)C), invstd((size_t)C);
    cpu::batch_norm_stats<T>(x.data(), N, C, S, mean.data(), var.data());
    Guarded<double> gmean(C), gvar(C);
    cuda::batch_norm_stats<T>(gx.ptr(), N, C, S, gmean.ptr(), gvar.ptr());
    expect_output("batch_norm_stats mean " + tag, gmean, mean, tol<T>(1e-13, 1e-13, 1e-13, 1e-13), seed);
    // Variance relative to the mean's scale: sums of squares of shifted values, in double.
    expect_output("batch_norm_stats var " + tag, gvar, var, tol<T>(1e-11, 1e-10, 1e-11, 1e-10), seed);

    cpu::batch_norm_invstd(C, eps, var.data(), invstd.data());
    Guarded<double> gvar_exact(var), ginvstd(C);
    cuda::batch_norm_invstd(C, eps, gvar_exact.ptr(), ginvstd.ptr());
    expect_output("batch_norm_invstd " + tag, ginvstd, invstd, Tol{0, 1e-15}, seed);

    auto rm = rand_vec<T>(C, rng), rv = rand_vec<T>(C, rng, 0.5, 2.0);
    {
      std::vector<double> m2((size_t)C), i2((size_t)C);
      cpu::batch_norm_running_stats<T>(C, eps, rm.data(), rv.data(), m2.data(), i2.data());
      Guarded<T> grm(rm), grv(rv);
      Guarded<double> gm2(C), gi2(C);
      cuda::batch_norm_running_stats<T>(C, eps, grm.ptr(), grv.ptr(), gm2.ptr(), gi2.ptr());
      expect_output("batch_norm_running_stats mean " + tag, gm2, m2, Tol{0, 0}, seed);
      expect_output("batch_norm_running_stats invstd " + tag, gi2, i2, Tol{0, 1e-15}, seed);
    }
    if (M > 1) {
      Guarded<T> grm(rm), grv(rv);
      Guarded<double> gmean_exact(mean);
      cpu::batch_norm_update_running<T>(C, M, momentum, mean.data(), var.data(), rm.data(), rv.data());
      cuda::batch_norm_update_running<T>(C, M, momentum, gmean_exact.ptr(), gvar_exact.ptr(), grm.ptr(), grv.ptr());
      expect_output("batch_norm_update_running mean " + tag, grm, rm, tol<T>(0, 3e-7, 0, 1e-15), seed);
      expect_output("batch_norm_update_running var " + tag, grv, rv, tol<T>(0, 3e-7, 0, 1e-15), seed);
    }

    // Forward and backward get the CPU's statistics, so each kernel is judged on its own.
    Guarded<double> gm(mean), gi(invstd);
    for (bool affine : {true, false}) {
      std::vector<T> y((size_t)total);
      const T* pw = affine ? w.data() : nullptr;
      const T* pb = affine ? b.data() : nullptr;
      cpu::batch_norm_forward<T>(x.data(), N, C, S, mean.data(), invstd.data(), pw, pb, y.data());
      Guarded<T> gy(total);
      cuda::batch_norm_forward<T>(gx.ptr(), N, C, S, gm.ptr(), gi.ptr(), affine ? gw.ptr() : nullptr,
                                  affine ? gb.ptr() : nullptr, gy.ptr());
      expect_output(msg("batch_norm_forward affine ", affine, " ", tag), gy, y, tol<T>(1e-6, 1e-6, 1e-13, 1e-13), seed);
    }
    for (bool training : {true, false})
      for (int want_mask : {7, 1, 6, 2}) {  // which of dx (1), dweight (2), dbias (4) are asked for
        const bool wdx = want_mask & 1, wdw = want_mask & 2, wdb = want_mask & 4;
        std::vector<T> dx((size_t)total), dw((size_t)C), db((size_t)C);
        cpu::batch_norm_backward<T>(dy.data(), x.data(), N, C, S, mean.data(), invstd.data(), w.data(), training,
                                    wdx ? dx.data() : nullptr, wdw ? dw.data() : nullptr, wdb ? db.data() : nullptr);
        Guarded<T> gdx(total), gdw(C), gdb(C);
        cuda::batch_norm_backward<T>(gdy.ptr(), gx.ptr(), N, C, S, gm.ptr(), gi.ptr(), gw.ptr(), training,
                                     wdx ? gdx.ptr() : nullptr, wdw ? gdw.ptr() : nullptr, wdb ? gdb.ptr() : nullptr);
        const std::string t2 = msg(" training ", training, " mask ", want_mask, " ", tag);
        // dx = a*dy - a*mean(dy) - xhat*a*mean(dy*xhat): three terms of similar size cancel.
        if (wdx) expect_output("batch_norm_backward dx" + t2, gdx, dx, tol<T>(3e-6, 3e-6, 1e-12, 1e-12), seed);
        if (wdw) expect_output("batch_norm_backward dweight" + t2, gdw, dw, tol<T>(1e-6, 1e-6, 1e-12, 1e-12), seed);
        if (wdb) expect_output("batch_norm_backward dbias" + t2, gdb, db, tol<T>(1e-6, 1e-6, 1e-12, 1e-12), seed);
        if (!wdx) gdx.expect_guards("batch_norm_backward dx untouched" + t2);
      }
  }
}

TYPED_TEST(CudaKernels, PreluAndChannelSum) {
  SKIP_WITHOUT_CUDA();
  using T = TypeParam;
  const uint64_t seed = test_seed(105);
  Rng rng(seed);
  for (NCS v : kNormShapes) {
    const int64_t N = v.N, C = v.C, S = v.S, total = N * C * S;
    const std::string tag = msg(type_name<T>(), " [", N, ", ", C, ", ", S, "]");
    auto x = rand_vec<T>(total, rng), w = rand_vec<T>(C, rng, 0.05, 0.5), dy = rand_vec<T>(total, rng);
    for (int64_t i = 0; i < total; i += 11) x[(size_t)i] = 0;  // the boundary belongs to the negative side
    Guarded<T> gx(x), gw(w), gdy(dy);
    std::vector<T> y((size_t)total), dx((size_t)total), dw((size_t)C);
    cpu::prelu_forward<T>(x.data(), N, C, S, w.data(), y.data());
    cpu::prelu_backward<T>(dy.data(), x.data(), N, C, S, w.data(), dx.data(), dw.data());
    Guarded<T> gy(total), gdx(total), gdw(C);
    cuda::prelu_forward<T>(gx.ptr(), N, C, S, gw.ptr(), gy.ptr());
    cuda::prelu_backward<T>(gdy.ptr(), gx.ptr(), N, C, S, gw.ptr(), gdx.ptr(), gdw.ptr());
    expect_output("prelu_forward " + tag, gy, y, Tol{0, 0}, seed);
    expect_output("prelu_backward dx " + tag, gdx, dx, Tol{0, 0}, seed);
    expect_output("prelu_backward dweight " + tag, gdw, dw, tol<T>(1e-6, 1e-6, 1e-13, 1e-13), seed);

    std::vector<double> sums((size_t)C, 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t s = 0; s < S; ++s) sums[(size_t)c] += (double)x[(size_t)((n * C + c) * S + s)];
    Guarded<T> gsum(C);
    cuda::channel_sum<T>(gx.ptr(), N, C, S, gsum.ptr());
    expect_output("channel_sum " + tag, gsum, sums, tol<T>(1e-7, 3e-7, 1e-13, 1e-13), seed);
  }
}

TYPED_TEST(CudaKernels, L2Normalize) {
  SKIP_WITHOUT_CUDA();
  using T = TypeParam;
  const uint64_t seed = test_seed(106);
  Rng rng(seed);
  const double eps = 1e-12;
  for (auto [N, D] : std::vector<std::pair<int64_t, int64_t> >{{1, 1}, {3, 5}, {67, 512}, {2, 100003}, {70000, 3}}) {
    const std::string tag = msg(type_name<T>(), " [", N, ", ", D, "]");
    auto x = rand_vec<T>(N * D, rng), dy = rand_vec<T>(N * D, rng);
    if (N >= 3) {  // a zero row (the eps branch) and a tiny one
      for (int64_t j = 0; j < D; ++j) x[(size_t)(1 * D + j)] = 0;
      for (int64_t j = 0; j < D; ++j) x[(size_t)(2 * D + j)] *= (T)1e-20;
    }
    Guarded<T> gx(x), gdy(dy);
    std::vector<T> y((size_t)(N * D)), dx((size_t)(N * D));
    std::vector<double> norm((size_t)N);
    cpu::l2_normalize_forward<T>(x.data(), N, D, eps, y.data(), norm.data());
    cpu::l2_normalize_backward<T>(dy.data(), x.data(), N, D, eps, norm.data(), dx.data());
    Guarded<T> gy(N * D), gdx(N * D);
    Guarded<double> gnorm(N), gnorm_exact(norm);
    cuda::l2_normalize_forward<T>(gx.ptr(), N, D, eps, gy.ptr(), gnorm.ptr());
    cuda::l2_normalize_backward<T>(gdy.ptr(), gx.ptr(), N, D, eps, gnorm_exact.ptr(), gdx.ptr());
    expect_output("l2_normalize_forward norm " + tag, gnorm, norm, Tol{0, 1e-14}, seed);
    const Tol ty = tol<T>(2e-7, 2e-7, 1e-14, 1e-14);
    expect_output("l2_normalize_forward y " + tag, gy, y, Tol{ty.abs, ty.rel, D}, seed);
    // dx scales with 1/|x| (1e12 for the zero and the tiny row): each row on its own scale.
    const Tol tdx = tol<T>(1e-6, 1e-6, 1e-13, 1e-13);
    expect_output("l2_normalize_backward " + tag, gdx, dx, Tol{tdx.abs, tdx.rel, D}, seed);
  }
}

// ---------------------------------------------------------------------------------------------
// Log-softmax and cross-entropy, up to 100k classes per row.

TYPED_TEST(CudaKernels, SoftmaxAndCrossEntropy) {
  SKIP_WITHOUT_CUDA();
  using T = TypeParam;
  const uint64_t seed = test_seed(107);
  Rng rng(seed);
  for (auto [N, C] : std::vector<std::pair<int64_t, int64_t> >{{1, 1}, {1, 7}, {3, 100003}, {70, 1000}, {513, 33}}) {
    const std::string tag = msg(type_name<T>(), " [", N, ", ", C, "]");
    auto x = rand_vec<T>(N * C, rng, -30, 30);  // wide logits: the max shift matters
    auto dy = rand_vec<T>(N * C, rng);
    std::vector<int64_t> labels((size_t)N);
    for (auto& l : labels) l = (int64_t)rng.below((uint64_t)C);
    Guarded<T> gx(x), gdy(dy);
    Guarded<int64_t> glab(labels);

    std::vector<double> lse((size_t)N);
    cpu::logsumexp_rows<T>(x.data(), N, C, lse.data());
    Guarded<double> glse(N);
    cuda::logsumexp_rows<T>(gx.ptr(), N, C, glse.ptr());
    expect_output("logsumexp_rows " + tag, glse, lse, Tol{1e-15, 1e-14}, seed);

    Guarded<double> glse_exact(lse);
    std::vector<T> y((size_t)(N * C)), dx((size_t)(N * C));
    cpu::log_softmax_forward<T>(x.data(), N, C, lse.data(), y.data());
    Guarded<T> gy(N * C);
    cuda::log_softmax_forward<T>(gx.ptr(), N, C, glse_exact.ptr(), gy.ptr());
    expect_output("log_softmax_forward " + tag, gy, y, Tol{0, 0}, seed);

    Guarded<T> gy_exact(y), gdx(N * C);
    cpu::log_softmax_backward<T>(dy.data(), y.data(), N, C, dx.data());
    cuda::log_softmax_backward<T>(gdy.ptr(), gy_exact.ptr(), N, C, gdx.ptr());
    expect_output("log_softmax_backward " + tag, gdx, dx, tol<T>(1e-6, 1e-6, 1e-13, 1e-13), seed);

    const T loss = (T)cpu::cross_entropy_forward<T>(x.data(), labels.data(), N, C, lse.data());
    Guarded<T> gloss(1);
    cuda::cross_entropy_forward<T>(gx.ptr(), glab.ptr(), N, C, glse_exact.ptr(), gloss.ptr());
    expect_output("cross_entropy_forward " + tag, gloss, std::vector<T>{loss}, tol<T>(0, 3e-7, 0, 1e-14), seed);

    const T dloss = (T)0.7;
    Guarded<T> gdloss(std::vector<T>{dloss}), gdx2(N * C);
    std::vector<T> dx2((size_t)(N * C));
    cpu::cross_entropy_backward<T>(x.data(), labels.data(), N, C, lse.data(), &dloss, dx2.data());
    cuda::cross_entropy_backward<T>(gx.ptr(), glab.ptr(), N, C, glse_exact.ptr(), gdloss.ptr(), gdx2.ptr());
    expect_output("cross_entropy_backward " + tag, gdx2, dx2, tol<T>(1e-7, 1e-6, 1e-14, 1e-13), seed);
  }
}

// ---------------------------------------------------------------------------------------------
// cuBLAS GEMM against a double loop.

template <class T>
void check_gemm(bool tf32, uint64_t seed) {
  Rng rng(seed);
  cuda::set_allow_tf32(tf32);
  struct Case {
    int64_t M, N, K, pad;  // pad: extra leading-dimension elements
  };
  for (Case c : {Case{1, 1, 1, 0}, Case{1, 37, 129, 0}, Case{67, 1, 5, 0}, Case{33, 65, 17, 3}, Case{128, 96, 300, 0},
                 Case{5, 7, 0, 0}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (double beta : {0.0, 0.5}) {
          const int64_t M = c.M, N = c.N, K = c.K;
          const int64_t lda = (ta ? M : K) + c.pad, ldb = (tb ? K : N) + c.pad, ldc = N + c.pad;
          auto A = rand_vec<T>((ta ? K : M) * lda, rng), B = rand_vec<T>((tb ? N : K) * ldb, rng);
          auto C0 = rand_vec<T>(M * ldc, rng);
          const double alpha = 1.3;
          std::vector<double> want(C0.begin(), C0.end());
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
              double s = 0;
              for (int64_t k = 0; k < K; ++k)
                s += (double)A[(size_t)(ta ? k * lda + i : i * lda + k)] *
                     (double)B[(size_t)(tb ? j * ldb + k : k * ldb + j)];
              want[(size_t)(i * ldc + j)] = alpha * s + beta * (double)C0[(size_t)(i * ldc + j)];
            }
          Guarded<T> gA(A), gB(B), gC(C0);
          cuda::gemm<T>(ta, tb, M, N, K, (T)alpha, gA.ptr(), lda, gB.ptr(), ldb, (T)beta, gC.ptr(), ldc);
          // f32: K products summed in f32 against a double sum; TF32 rounds the inputs to 10 bits.
          const double f32_abs = tf32 ? 3e-3 : 1e-6 * (double)std::max<int64_t>(K, 1);
          expect_output(msg("gemm ", type_name<T>(), tf32 ? " tf32" : "", " M ", M, " N ", N, " K ", K, " ta ", ta,
                            " tb ", tb, " beta ", beta, " pad ", c.pad),
                        gC, want, tol<T>(f32_abs, f32_abs, 1e-14 * (double)std::max<int64_t>(K, 1), 1e-13), seed);
        }
  cuda::set_allow_tf32(false);
}

TEST(CudaGemm, AllTransposesOddSizes) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(108);
  check_gemm<float>(false, seed);
  check_gemm<double>(false, seed);
  check_gemm<float>(true, seed);
}

// ---------------------------------------------------------------------------------------------
// cuDNN convolution against a direct loop in double.

struct ConvCase {
  cuda::Conv2dShape s;
  const char* what;
};
const std::vector<ConvCase> kConvCases = {
    {{2, 3, 11, 9, 5, 3, 3, 2, 2, 1, 1, 1}, "3x3 stride 2 pad 1"},
    {{1, 4, 7, 8, 6, 3, 3, 1, 1, 1, 1, 2}, "groups 2, batch 1"},
    {{3, 8, 9, 9, 8, 3, 3, 2, 2, 1, 1, 8}, "depthwise stride 2"},
    {{2, 4, 6, 5, 8, 3, 3, 1, 1, 1, 1, 4}, "depthwise multiplier 2"},
    {{2, 16, 14, 14, 24, 1, 1, 2, 2, 0, 0, 1}, "1x1 stride 2"},
    {{1, 3, 13, 10, 7, 5, 3, 1, 2, 2, 0, 1}, "5x3 asymmetric stride and padding"},
    {{1, 67, 7, 7, 33, 3, 3, 1, 1, 1, 1, 1}, "67 -> 33 channels 7x7"},
};

// y = conv(x, w) + bias; dx, dw, dbias from dy: every (output, tap) pair visited once, in double.
struct ConvRef {
  std::vector<double> y, dx, dw, db;
};
template <class T>
ConvRef conv_reference(const cuda::Conv2dShape& s, const std::vector<T>& x, const std::vector<T>& w,
                       const std::vector<T>& bias, const std::vector<T>& dy) {
  const int64_t OH = s.oh(), OW = s.ow(), cig = s.cin / s.groups, cog = s.cout / s.groups;
  ConvRef r{std::vector<double>((size_t)(s.n * s.cout * OH * OW)), std::vector<double>(x.size()),
            std::vector<double>(w.size()), std::vector<double>((size_t)s.cout)};
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t co = 0; co < s.cout; ++co)
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          const size_t yi = (size_t)(((n * s.cout + co) * OH + oy) * OW + ox);
          double acc = bias[(size_t)co];
          const double g = dy[yi];
          r.db[(size_t)co] += g;
          const int64_t grp = co / cog;
          for (int64_t ci = 0; ci < cig; ++ci)
            for (int64_t ky = 0; ky < s.kh; ++ky)
              for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t iy = oy * s.stride_h - s.pad_h + ky, ix = ox * s.stride_w - s.pad_w + kx;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                const size_t xi = (size_t)(((n * s.cin + grp * cig + ci) * s.h + iy) * s.w + ix);
                const size_t wi = (size_t)(((co * cig + ci) * s.kh + ky) * s.kw + kx);
                acc += (double)x[xi] * (double)w[wi];
                r.dx[xi] += g * (double)w[wi];
                r.dw[wi] += g * (double)x[xi];
              }
          r.y[yi] = acc;
        }
  return r;
}

template <class T>
void check_conv(uint64_t seed) {
  Rng rng(seed);
  for (const ConvCase& c : kConvCases) {
    const cuda::Conv2dShape& s = c.s;
    const int64_t nx = s.n * s.cin * s.h * s.w, nw = s.cout * (s.cin / s.groups) * s.kh * s.kw,
                  ny = s.n * s.cout * s.oh() * s.ow();
    auto x = rand_vec<T>(nx, rng), w = rand_vec<T>(nw, rng), bias = rand_vec<T>(s.cout, rng), dy = rand_vec<T>(ny, rng);
    const ConvRef r = conv_reference(s, x, w, bias, dy);
    const std::vector<T> no_bias((size_t)s.cout, T(0));
    const ConvRef r0 = conv_reference(s, x, w, no_bias, dy);
    Guarded<T> gx(x), gw(w), gb(bias), gdy(dy);
    const std::string tag = msg(type_name<T>(), " ", c.what);
    // f32: cuDNN may pick Winograd or FFT algorithms, a few 1e-5 of the output's scale.
    const Tol t = tol<T>(1e-4, 1e-4, 1e-12, 1e-12);
    Guarded<T> gy(ny), gy0(ny), gdx(nx), gdw(nw), gdb(s.cout), gdw_only(nw), gdb_only(s.cout);
    cuda::conv2d_forward<T>(s, gx.ptr(), gw.ptr(), gb.ptr(), gy.ptr());
    expect_output("conv2d_forward bias " + tag, gy, r.y, t, seed);
    cuda::conv2d_forward<T>(s, gx.ptr(), gw.ptr(), nullptr, gy0.ptr());
    expect_output("conv2d_forward no bias " + tag, gy0, r0.y, t, seed);
    cuda::conv2d_backward_input<T>(s, gdy.ptr(), gw.ptr(), gdx.ptr());
    expect_output("conv2d_backward_input " + tag, gdx, r.dx, t, seed);
    cuda::conv2d_backward_weight<T>(s, gdy.ptr(), gx.ptr(), gdw.ptr(), gdb.ptr());
    expect_output("conv2d_backward_weight dw " + tag, gdw, r.dw, t, seed);
    expect_output("conv2d_backward_weight dbias " + tag, gdb, r.db, tol<T>(1e-6, 1e-6, 1e-13, 1e-13), seed);
    cuda::conv2d_backward_weight<T>(s, gdy.ptr(), gx.ptr(), gdw_only.ptr(), nullptr);
    expect_output("conv2d_backward_weight dw only " + tag, gdw_only, r.dw, t, seed);
    cuda::conv2d_backward_weight<T>(s, gdy.ptr(), gx.ptr(), nullptr, gdb_only.ptr());
    expect_output("conv2d_backward_weight dbias only " + tag, gdb_only, r.db, tol<T>(1e-6, 1e-6, 1e-13, 1e-13), seed);
  }
}

TEST(CudaConv, ForwardAndBackwardMatchDirectLoops) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(109);
  cuda::set_allow_tf32(false);
  check_conv<float>(seed);
  check_conv<double>(seed);
}

// Engine views (slice_batch) start anywhere: operands at an odd element offset must work too.
TEST(CudaConv, OperandsAtOddOffsets) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(110);
  Rng rng(seed);
  const cuda::Conv2dShape s{1, 3, 9, 7, 5, 3, 3, 1, 1, 1, 1, 1};
  const int64_t nx = s.n * s.cin * s.h * s.w, nw = s.cout * s.cin * s.kh * s.kw, ny = s.n * s.cout * s.oh() * s.ow();
  auto x = rand_vec<float>(nx + 1, rng), w = rand_vec<float>(nw + 1, rng), dy = rand_vec<float>(ny + 1, rng);
  const std::vector<float> xs(x.begin() + 1, x.end()), ws(w.begin() + 1, w.end()), dys(dy.begin() + 1, dy.end());
  const ConvRef r = conv_reference(s, xs, ws, std::vector<float>((size_t)s.cout, 0.f), dys);
  Guarded<float> gx(x), gw(w), gdy(dy), gy(ny + 1), gdx(nx + 1), gdw(nw + 1);
  cuda::conv2d_forward<float>(s, gx.ptr() + 1, gw.ptr() + 1, nullptr, gy.ptr() + 1);
  cuda::conv2d_backward_input<float>(s, gdy.ptr() + 1, gw.ptr() + 1, gdx.ptr() + 1);
  cuda::conv2d_backward_weight<float>(s, gdy.ptr() + 1, gx.ptr() + 1, gdw.ptr() + 1, nullptr);
  auto tail = [](const Guarded<float>& g) {
    g.expect_guards("odd offset");
    const auto h = g.host();
    EXPECT_EQ(h[0], sentinel<float>()) << "the element before the view was written";
    return std::vector<float>(h.begin() + 1, h.end());
  };
  expect_close("conv2d_forward odd offset", seed, tail(gy), r.y, Tol{1e-4, 1e-4});
  expect_close("conv2d_backward_input odd offset", seed, tail(gdx), r.dx, Tol{1e-4, 1e-4});
  expect_close("conv2d_backward_weight odd offset", seed, tail(gdw), r.dw, Tol{1e-4, 1e-4});
}

// ---------------------------------------------------------------------------------------------
// The ops on CUDA tensors against the same ops on CPU tensors: dispatch, autograd, views.

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Fresh leaves on `dev` with the values and requires_grad of `in`.
std::vector<Tensor> leaves_on(const std::vector<Tensor>& in, Device dev) {
  std::vector<Tensor> out;
  for (const Tensor& t : in) {
    Tensor c = t.detach().to(dev).clone();
    if (t.requires_grad()) c.set_requires_grad(true);
    out.push_back(c);
  }
  return out;
}

// f on CPU and on CUDA: outputs equal within `t`, and the gradients of sum(f(in) * w), w random.
void expect_op_matches(const std::string& label, const OpFn& f, const std::vector<Tensor>& in, uint64_t seed, Tol t) {
  std::vector<Tensor> cpu_in = leaves_on(in, Device::cpu()), gpu_in = leaves_on(in, Device::cuda());
  Tensor y_cpu = f(cpu_in), y_gpu = f(gpu_in);
  ASSERT_TRUE(y_gpu.device().is_cuda()) << label << " returned " << y_gpu.str();
  ASSERT_EQ(y_cpu.shape(), y_gpu.shape()) << label;
  expect_close(label + " forward", seed, y_gpu.to_vector(), y_cpu.to_vector(), t);
  if (!y_cpu.requires_grad()) return;
  Rng rng(seed ^ 0x77);
  Tensor w = rand_uniform(y_cpu.shape(), rng, 0.5, 1.5, y_cpu.dtype());
  sum(mul(y_cpu, w)).backward();
  sum(mul(y_gpu, w.to(Device::cuda()))).backward();
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i].requires_grad()) continue;
    const Tensor gc = cpu_in[i].grad(), gg = gpu_in[i].grad();
    ASSERT_EQ(gg.defined(), gc.defined()) << label << " input " << i << ": a gradient on one device only";
    if (!gc.defined()) continue;  // an input the op ignored (e.g. batch norm's weight when not affine)
    ASSERT_TRUE(gg.device().is_cuda()) << label << " input " << i << " has its gradient on " << gg.str();
    expect_close(msg(label, " grad ", i), seed, gg.to_vector(), gc.to_vector(), t);
  }
}

Tensor leaf(const Shape& s, Rng& rng, DType dt, double lo = -1, double hi = 1) {
  Tensor t = rand_uniform(s, rng, lo, hi, dt);
  t.set_requires_grad(true);
  return t;
}

TYPED_TEST(CudaKernels, OpsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  using T = TypeParam;
  const DType dt = dtype_of<T>();
  const uint64_t seed = test_seed(111);
  Rng rng(seed);
  const Tol t = tol<T>(2e-6, 2e-6, 1e-12, 1e-12);
  const std::string ty = type_name<T>() + " ";

  for (auto [sa, sb] : std::vector<std::pair<Shape, Shape> >{
           {{3, 5}, {3, 5}}, {{2, 3, 1, 5}, {3, 4, 1}}, {{1, 67, 13, 11}, {67, 1, 1}}}) {
    Tensor a = leaf(sa, rng, dt), b = leaf(sb, rng, dt, 0.5, 1.5);
    const std::string tag = ty + shape_str(sa) + " " + shape_str(sb);
    expect_op_matches(
        "add " + tag, [](const auto& in) { return add(in[0], in[1]); }, {a, b}, seed, t);
    expect_op_matches(
        "sub " + tag, [](const auto& in) { return sub(in[0], in[1]); }, {a, b}, seed, t);
    expect_op_matches(
        "mul " + tag, [](const auto& in) { return mul(in[0], in[1]); }, {a, b}, seed, t);
    expect_op_matches(
        "div " + tag, [](const auto& in) { return div(in[0], in[1]); }, {a, b}, seed, t);
  }
  {
    Tensor x = leaf({7, 1, 9, 5}, rng, dt);
    const std::string tag = ty + "[7, 1, 9, 5]";
    expect_op_matches(
        "add_scalar " + tag, [](const auto& in) { return add_scalar(in[0], 0.3); }, {x}, seed, t);
    expect_op_matches(
        "mul_scalar " + tag, [](const auto& in) { return mul_scalar(in[0], -1.7); }, {x}, seed, t);
    expect_op_matches(
        "neg " + tag, [](const auto& in) { return neg(in[0]); }, {x}, seed, t);
    expect_op_matches(
        "square " + tag, [](const auto& in) { return square(in[0]); }, {x}, seed, t);
    expect_op_matches(
        "relu " + tag, [](const auto& in) { return relu(in[0]); }, {x}, seed, t);
    expect_op_matches(
        "clamp " + tag, [](const auto& in) { return clamp(in[0], -0.4, 0.3); }, {x}, seed, t);
    const Tol ts = tol<T>(1e-6, 1e-6, 1e-13, 1e-13);
    expect_op_matches(
        "sum " + tag, [](const auto& in) { return sum(in[0]); }, {x}, seed, ts);
    expect_op_matches(
        "mean " + tag, [](const auto& in) { return mean(in[0]); }, {x}, seed, ts);
    for (int64_t d : {0, 1, 2, 3, -1})
      for (bool keep : {false, true}) {
        expect_op_matches(
            msg("sum_dim ", d, " keep ", keep, " ", tag), [d, keep](const auto& in) { return sum_dim(in[0], d, keep); },
            {x}, seed, ts);
        expect_op_matches(
            msg("mean_dim ", d, " keep ", keep, " ", tag),
            [d, keep](const auto& in) { return mean_dim(in[0], d, keep); }, {x}, seed, ts);
      }
    expect_op_matches(
        "sum_to_shape [9, 1] " + tag,
        [](const auto& in) {
          return sum_to_shape(in[0], {9, 1});
        },
        {x}, seed, ts);
    expect_op_matches(
        "slice_batch then square " + tag, [](const auto& in) { return square(in[0].slice_batch(2, 5)); }, {x}, seed, t);
  }
  // Batch norm in every mode, [N, C] and [N, C, H, W]; eval mode takes running statistics as inputs.
  for (Shape s : {Shape{5, 67}, Shape{1, 7, 5, 3}, Shape{4, 33, 7, 7}}) {
    const int64_t C = s[1];
    Tensor x = leaf(s, rng, dt, 1.0, 3.0), w = leaf({C}, rng, dt, 0.5, 1.5), b = leaf({C}, rng, dt);
    Tensor rm = rand_uniform({C}, rng, -1, 1, dt), rv = rand_uniform({C}, rng, 0.5, 2, dt);
    const std::string tag = ty + shape_str(s);
    const Tol tb = tol<T>(5e-6, 5e-6, 1e-11, 1e-11);
    for (bool affine : {true, false}) {
      expect_op_matches(
          msg("batch_norm train affine ", affine, " ", tag),
          [affine](const auto& in) {
            return batch_norm(in[0], affine ? in[1] : Tensor(), affine ? in[2] : Tensor(), Tensor(), Tensor(),
                              BatchNormOptions{});
          },
          {x, w, b}, seed, tb);
      expect_op_matches(
          msg("batch_norm eval affine ", affine, " ", tag),
          [affine](const auto& in) {
            BatchNormOptions o;
            o.training = false;
            return batch_norm(in[0], affine ? in[1] : Tensor(), affine ? in[2] : Tensor(), in[3], in[4], o);
          },
          {x, w, b, rm, rv}, seed, tb);
    }
    // Running statistics updated in place on each device.
    for (bool update : {true, false}) {
      BatchNormOptions o;
      o.update_stats = update;
      Tensor rm_c = rm.clone(), rv_c = rv.clone(), rm_g = rm.to(Device::cuda()), rv_g = rv.to(Device::cuda());
      NoGradGuard ng;
      batch_norm(x.detach(), w.detach(), b.detach(), rm_c, rv_c, o);
      batch_norm(x.detach().to(Device::cuda()), w.detach().to(Device::cuda()), b.detach().to(Device::cuda()), rm_g,
                 rv_g, o);
      expect_close(msg("batch_norm running_mean update ", update, " ", tag), seed, rm_g.to_vector(), rm_c.to_vector(),
                   tb);
      expect_close(msg("batch_norm running_var update ", update, " ", tag), seed, rv_g.to_vector(), rv_c.to_vector(),
                   tb);
    }
    expect_op_matches(
        "prelu " + tag, [](const auto& in) { return prelu(in[0], in[1]); },
        {leaf(s, rng, dt), leaf({C}, rng, dt, 0.05, 0.5)}, seed, t);
    expect_op_matches(
        "dropout p 0.3 " + tag,
        [seed](const auto& in) {
          Rng r(seed);  // the same generator state on both devices: the same mask
          return dropout(in[0], 0.3, true, r);
        },
        {x}, seed, t);
  }
  for (auto [N, D] : std::vector<std::pair<int64_t, int64_t> >{{1, 512}, {67, 5}}) {
    const std::string tag = msg(ty, "[", N, ", ", D, "]");
    expect_op_matches(
        "l2_normalize " + tag, [](const auto& in) { return l2_normalize(in[0]); }, {leaf({N, D}, rng, dt)}, seed,
        tol<T>(2e-6, 2e-6, 1e-12, 1e-12));
  }
  for (auto [N, C] : std::vector<std::pair<int64_t, int64_t> >{{1, 7}, {3, 100003}, {65, 100}}) {
    const std::string tag = msg(ty, "[", N, ", ", C, "]");
    Tensor x = leaf({N, C}, rng, dt, -20, 20);
    std::vector<int64_t> lab((size_t)N);
    for (auto& l : lab) l = (int64_t)rng.below((uint64_t)C);
    Tensor labels = Tensor::from<int64_t>({N}, lab);
    const Tol tl = tol<T>(2e-6, 2e-6, 1e-12, 1e-12);
    expect_op_matches(
        "log_softmax " + tag, [](const auto& in) { return log_softmax(in[0]); }, {x}, seed, tl);
    expect_op_matches(
        "cross_entropy " + tag, [](const auto& in) { return cross_entropy(in[0], in[1]); }, {x, labels}, seed, tl);
  }
}

TEST(CudaOps, InPlaceUpdatesConversionAndErrors) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(112);
  Rng rng(seed);
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor d = rand_uniform({1000003}, rng, -1, 1, dt), s = rand_uniform({1000003}, rng, -1, 1, dt);
    Tensor dg = d.to(Device::cuda()), sg = s.to(Device::cuda());
    add_(d, s, -0.7);
    add_(dg, sg, -0.7);
    scale_(d, 1.9);
    scale_(dg, 1.9);
    expect_close(msg("add_ then scale_ ", dtype_name(dt)), seed, dg.to_vector(), d.to_vector(),
                 dt == DType::F32 ? Tol{5e-7, 5e-7} : Tol{2e-15, 2e-15});
  }
  // Tensor::to(DType) on the device, every supported pair.
  Tensor x = rand_uniform({1001}, rng, -100, 100, DType::F64);
  for (DType from : {DType::F32, DType::F64, DType::I64})
    for (DType to : {DType::F32, DType::F64, DType::I64}) {
      Tensor src = x.to(from);
      Tensor on_gpu = src.to(Device::cuda()).to(to);
      ASSERT_TRUE(on_gpu.device().is_cuda());
      ASSERT_EQ(on_gpu.dtype(), to);
      expect_close(msg("to(", dtype_name(to), ") from ", dtype_name(from)), seed, on_gpu.to_vector(),
                   src.to(to).to_vector(), Tol{0, 0});
    }
  // Labels are validated on the host also when they live on the GPU.
  Tensor logits = Tensor::zeros({2, 5}, DType::F32, Device::cuda());
  Tensor bad = Tensor::from<int64_t>({2}, std::vector<int64_t>{1, 5}).to(Device::cuda());
  EXPECT_THROW(cross_entropy(logits, bad), Error);
  // Mixed devices are refused with the op's name.
  EXPECT_THROW(add(Tensor::zeros({3}), Tensor::zeros({3}, DType::F32, Device::cuda())), Error);
}

}  // namespace
}  // namespace ff::test

#endif  // FLATFACE_HAVE_CUDA
