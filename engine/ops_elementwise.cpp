// Elementwise ops with broadcasting, scalar ops, activations and clamp, with their backward.
#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "kernels/cpu/elementwise.h"

namespace ff {

namespace {

cpu::BroadcastPlan plan_broadcast(const char* op, const Tensor& a, const Tensor& b, Shape& out_shape) {
  const Shape &sa = a.shape(), &sb = b.shape();
  size_t nd = std::max(sa.size(), sb.size());
  cpu::BroadcastPlan p;
  out_shape.assign(nd, 1);
  p.extent.assign(nd, 1);
  p.stride_a.assign(nd, 0);
  p.stride_b.assign(nd, 0);
  int64_t st_a = 1, st_b = 1;
  for (size_t k = 0; k < nd; ++k) {
    size_t d = nd - 1 - k;
    int64_t ea = k < sa.size() ? sa[sa.size() - 1 - k] : 1;
    int64_t eb = k < sb.size() ? sb[sb.size() - 1 - k] : 1;
    FF_CHECK(ea == eb || ea == 1 || eb == 1, op, ": shapes ", a.str(), " and ", b.str(), " do not broadcast");
    int64_t e = std::max(ea, eb);
    if (ea == 0 || eb == 0) e = 0;
    out_shape[d] = p.extent[d] = e;
    p.stride_a[d] = ea == 1 ? 0 : st_a;
    p.stride_b[d] = eb == 1 ? 0 : st_b;
    st_a *= ea;
    st_b *= eb;
  }
  p.numel = shape_numel(out_shape);
  p.same_shape = sa == sb;
  return p;
}

// `f` is the CPU lambda; `cf` names the same function for the CUDA kernel, which cannot take a lambda.
template <class F>
Tensor binary(const char* op, const Tensor& a, const Tensor& b, cuda::BinaryFn cf, F f) {
  check_same_dtype(op, a, b);
  check_same_device(op, a, b);
  check_float(op, a);
  require_backend(op, a);
  Shape out_shape;
  cpu::BroadcastPlan p = plan_broadcast(op, a, b, out_shape);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  dispatch_float(op, a.dtype(), [&]<class T>() {
    if constexpr (kCudaBuild)
      if (a.device().is_cuda()) return cuda::binary_map<T>(p, a.data<T>(), b.data<T>(), out.data<T>(), cf);
    cpu::binary_map<T>(p, a.data<T>(), b.data<T>(), out.data<T>(), f);
  });
  return out;
}

template <class F>
Tensor unary(const char* op, const Tensor& x, cuda::UnaryFn cf, F f) {
  check_float(op, x);
  require_backend(op, x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(op, x.dtype(), [&]<class T>() {
    if constexpr (kCudaBuild)
      if (x.device().is_cuda()) return cuda::unary_map<T>(x.numel(), x.data<T>(), out.data<T>(), cf);
    cpu::unary_map<T>(x.numel(), x.data<T>(), out.data<T>(), f);
  });
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary("add", a, b, {cuda::BinaryOp::Add}, [](auto x, auto y) { return x + y; });
  Shape sa = a.shape(), sb = b.shape();
  return record("add", out, {a, b}, [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, sa), sum_to_shape(g, sb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary("sub", a, b, {cuda::BinaryOp::Sub}, [](auto x, auto y) { return x - y; });
  Shape sa = a.shape(), sb = b.shape();
  return record("sub", out, {a, b}, [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, sa), sum_to_shape(neg(g), sb)};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary("mul", a, b, {cuda::BinaryOp::Mul}, [](auto x, auto y) { return x * y; });
  Tensor ad = a.detach(), bd = b.detach();
  bool ga = a.requires_grad(), gb = b.requires_grad();
  return record("mul", out, {a, b}, [ad, bd, ga, gb](const Tensor& g) {
    return std::vector<Tensor>{ga ? sum_to_shape(mul(g, bd), ad.shape()) : Tensor(),
                               gb ? sum_to_shape(mul(g, ad), bd.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary("div", a, b, {cuda::BinaryOp::Div}, [](auto x, auto y) { return x / y; });
  Tensor ad = a.detach(), bd = b.detach();
  bool ga = a.requires_grad(), gb = b.requires_grad();
  return record("div", out, {a, b}, [ad, bd, ga, gb](const Tensor& g) {
    // d(a/b)/db = -a / b^2
    return std::vector<Tensor>{ga ? sum_to_shape(div(g, bd), ad.shape()) : Tensor(),
                               gb ? sum_to_shape(neg(div(mul(g, ad), square(bd))), bd.shape()) : Tensor()};
  });
}

Tensor add_scalar(const Tensor& a, double s) {
  Tensor out = unary("add_scalar", a, {cuda::UnaryOp::AddScalar, s}, [s](auto x) { return x + (decltype(x))s; });
  return record("add_scalar", out, {a}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor mul_scalar(const Tensor& a, double s) {
  Tensor out = unary("mul_scalar", a, {cuda::UnaryOp::MulScalar, s}, [s](auto x) { return x * (decltype(x))s; });
  return record("mul_scalar", out, {a}, [s](const Tensor& g) { return std::vector<Tensor>{mul_scalar(g, s)}; });
}

Tensor neg(const Tensor& a) { return mul_scalar(a, -1.0); }

Tensor square(const Tensor& a) {
  Tensor out = unary("square", a, {cuda::UnaryOp::Square}, [](auto x) { return x * x; });
  Tensor ad = a.detach();
  return record("square", out, {a}, [ad](const Tensor& g) { return std::vector<Tensor>{mul(g, mul_scalar(ad, 2.0))}; });
}

Tensor relu(const Tensor& x) {
  Tensor out = unary("relu", x, {cuda::UnaryOp::Relu}, [](auto v) { return v > 0 ? v : decltype(v)(0); });
  Tensor xd = x.detach();
  return record("relu", out, {x}, [xd](const Tensor& g) {
    return std::vector<Tensor>{binary("relu_backward", g, xd, {cuda::BinaryOp::ReluBackward},
                                      [](auto gv, auto v) { return v > 0 ? gv : decltype(gv)(0); })};
  });
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  FF_CHECK(lo <= hi, "clamp: lo ", lo, " > hi ", hi);
  Tensor out = unary("clamp", x, {cuda::UnaryOp::Clamp, lo, hi}, [lo, hi](auto v) {
    using T = decltype(v);
    return std::min(std::max(v, (T)lo), (T)hi);
  });
  Tensor xd = x.detach();
  return record("clamp", out, {x}, [xd, lo, hi](const Tensor& g) {
    return std::vector<Tensor>{
        binary("clamp_backward", g, xd, {cuda::BinaryOp::ClampBackward, lo, hi}, [lo, hi](auto gv, auto v) {
          using T = decltype(v);
          return v > (T)lo && v < (T)hi ? gv : T(0);
        })};
  });
}

void add_(Tensor& dst, const Tensor& src, double alpha) {
  check_same_dtype("add_", dst, src);
  check_same_device("add_", dst, src);
  FF_CHECK(dst.shape() == src.shape(), "add_: shapes ", dst.str(), " and ", src.str(), " differ");
  require_backend("add_", dst);
  dispatch_float("add_", dst.dtype(),
                 [&]<class T>() { FF_KERNEL(dst, add_<T>, dst.numel(), dst.data<T>(), src.data<T>(), alpha); });
}

void scale_(Tensor& t, double s) {
  require_backend("scale_", t);
  dispatch_float("scale_", t.dtype(), [&]<class T>() { FF_KERNEL(t, scale_<T>, t.numel(), t.data<T>(), s); });
}

Tensor randn(const Shape& shape, Rng& rng, double stddev, DType dtype) {
  Tensor t = Tensor::empty(shape, DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = stddev * rng.normal();
  return t.to(dtype);
}

Tensor rand_uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype) {
  Tensor t = Tensor::empty(shape, DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = rng.uniform(lo, hi);
  return t.to(dtype);
}

}  // namespace ff
