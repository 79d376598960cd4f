// 2-D convolution with stride, padding and groups, and its backward, on kernels/cpu/conv2d.h.
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "kernels/cpu/conv2d.h"

namespace ff {

namespace {

std::string conv_str(const Conv2dOptions& o) {
  return msg("stride (", o.stride_h, ", ", o.stride_w, ") padding (", o.pad_h, ", ", o.pad_w, ") groups ", o.groups);
}

cpu::Conv2dShape conv_shape(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o) {
  const char* op = "conv2d";
  check_float(op, x);
  check_same_dtype(op, x, weight);
  check_same_device(op, x, weight);
  require_backend(op, x);
  FF_CHECK(x.dim() == 4, "conv2d: input must be 4-D [N, C, H, W], got ", x.str());
  FF_CHECK(weight.dim() == 4, "conv2d: weight must be 4-D [Cout, Cin/groups, KH, KW], got ", weight.str());
  FF_CHECK(o.stride_h >= 1 && o.stride_w >= 1 && o.pad_h >= 0 && o.pad_w >= 0 && o.groups >= 1,
           "conv2d: invalid options ", conv_str(o));
  cpu::Conv2dShape s{x.size(0),      x.size(1),  x.size(2),  x.size(3), weight.size(0), weight.size(2),
                     weight.size(3), o.stride_h, o.stride_w, o.pad_h,   o.pad_w,        o.groups};
  FF_CHECK(s.cin % o.groups == 0 && s.cout % o.groups == 0, "conv2d: input ", x.str(), " and weight ", weight.str(),
           ": channels must be divisible by groups ", o.groups);
  FF_CHECK(weight.size(1) == s.cin / o.groups, "conv2d: weight ", weight.str(), " does not fit input ", x.str(),
           " with groups ", o.groups, " (expected weight dim 1 = ", s.cin / o.groups, ")");
  FF_CHECK(s.kh >= 1 && s.kw >= 1 && s.h + 2 * s.pad_h >= s.kh && s.w + 2 * s.pad_w >= s.kw, "conv2d: kernel of ",
           weight.str(), " is larger than the padded input ", x.str(), " with ", conv_str(o));
  if (bias.defined()) {
    check_same_dtype(op, x, bias);
    check_same_device(op, x, bias);
    FF_CHECK(bias.dim() == 1 && bias.size(0) == s.cout, "conv2d: bias ", bias.str(), " does not match weight ",
             weight.str(), " (expected [", s.cout, "])");
  }
  return s;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt) {
  const cpu::Conv2dShape s = conv_shape(x, weight, bias, opt);
  Tensor out = Tensor::empty({s.n, s.cout, s.oh(), s.ow()}, x.dtype(), x.device());
  dispatch_float("conv2d", x.dtype(), [&]<class T>() {
    FF_KERNEL(x, conv2d_forward<T>, s, x.data<T>(), weight.data<T>(), bias.defined() ? bias.data<T>() : nullptr,
              out.data<T>());
  });
  Tensor xd = x.detach(), wd = weight.detach();
  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
  std::vector<Tensor> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  return record("conv2d", out, inputs, [s, xd, wd, gx, gw, gb, has_bias = bias.defined()](const Tensor& g) {
    Tensor dx = gx ? Tensor::empty(xd.shape(), g.dtype(), g.device()) : Tensor();
    Tensor dw = gw ? Tensor::empty(wd.shape(), g.dtype(), g.device()) : Tensor();
    Tensor db = gb ? Tensor::empty({s.cout}, g.dtype(), g.device()) : Tensor();
    dispatch_float("conv2d backward", g.dtype(), [&]<class T>() {
      if (gx) FF_KERNEL(g, conv2d_backward_input<T>, s, g.data<T>(), wd.data<T>(), dx.data<T>());
      if (gw || gb)
        FF_KERNEL(g, conv2d_backward_weight<T>, s, g.data<T>(), xd.data<T>(), gw ? dw.data<T>() : nullptr,
                  gb ? db.data<T>() : nullptr);
    });
    std::vector<Tensor> grads{dx, dw};
    if (has_bias) grads.push_back(db);
    return grads;
  });
}

}  // namespace ff
