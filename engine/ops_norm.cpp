// Batch norm (train, eval, no-update), PReLU, dropout and row L2 normalisation, with their backward.
#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "kernels/cpu/norm.h"

namespace ff {

namespace {

// x [N, C, d2, d3, ...] viewed as [N, C, S].
struct NCS {
  int64_t N, C, S;
};
NCS view_ncs(const Tensor& x) {
  NCS v{x.size(0), x.size(1), 1};
  for (int64_t d = 2; d < x.dim(); ++d) v.S *= x.size(d);
  return v;
}

// A per-channel parameter: undefined, or [C] with x's dtype and device.
void check_channel_param(const char* op, const Tensor& x, const Tensor& t, const char* what) {
  if (!t.defined()) return;
  check_same_dtype(op, x, t);
  check_same_device(op, x, t);
  FF_CHECK(t.dim() == 1 && t.size(0) == x.size(1), op, ": ", what, " must be [", x.size(1), "] for input ", x.str(),
           ", got ", t.str());
}

template <class T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean, Tensor running_var,
                  const BatchNormOptions& opt) {
  const char* op = "batch_norm";
  check_float(op, x);
  require_backend(op, x);
  FF_CHECK(x.dim() == 2 || x.dim() == 4, op, ": input must be [N, C] or [N, C, H, W], got ", x.str());
  check_channel_param(op, x, weight, "weight");
  check_channel_param(op, x, bias, "bias");
  check_channel_param(op, x, running_mean, "running_mean");
  check_channel_param(op, x, running_var, "running_var");
  FF_CHECK(running_mean.defined() == running_var.defined(), op,
           ": running_mean and running_var must both be given or both be undefined");
  FF_CHECK(opt.training || running_mean.defined(), op, ": eval mode needs running statistics, input ", x.str());
  FF_CHECK(opt.eps > 0, op, ": eps must be positive, got ", opt.eps);
  FF_CHECK(opt.momentum >= 0 && opt.momentum <= 1, op, ": momentum must be in [0, 1], got ", opt.momentum);
  const NCS v = view_ncs(x);
  const int64_t N = v.N, C = v.C, S = v.S, M = N * S;
  // As in PyTorch: one value per channel has no variance to normalise by.
  FF_CHECK(!opt.training || M > 1, op, ": expected more than 1 value per channel when training, got input ", x.str());

  // Per-channel statistics in f64 on x's device, kept for backward.
  Tensor mean = Tensor::empty({C}, DType::F64, x.device()), invstd = Tensor::empty({C}, DType::F64, x.device());
  double* pm = mean.data<double>();
  double* pi = invstd.data<double>();
  dispatch_float(op, x.dtype(), [&]<class T>() {
    if (opt.training) {
      Tensor var = Tensor::empty({C}, DType::F64, x.device());
      FF_KERNEL(x, batch_norm_stats<T>, x.data<T>(), N, C, S, pm, var.data<double>());
      FF_KERNEL(x, batch_norm_invstd, C, opt.eps, var.data<double>(), pi);
      if (opt.update_stats && running_mean.defined())
        FF_KERNEL(x, batch_norm_update_running<T>, C, M, opt.momentum, pm, var.data<double>(), running_mean.data<T>(),
                  running_var.data<T>());
    } else {
      FF_KERNEL(x, batch_norm_running_stats<T>, C, opt.eps, running_mean.data<T>(), running_var.data<T>(), pm, pi);
    }
  });

  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(op, x.dtype(), [&]<class T>() {
    FF_KERNEL(x, batch_norm_forward<T>, x.data<T>(), N, C, S, pm, pi, data_or_null<T>(weight), data_or_null<T>(bias),
              out.data<T>());
  });

  const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(),
             gb = bias.defined() && bias.requires_grad();
  const bool training = opt.training;
  Tensor xd = x.detach(), wd = weight.defined() ? weight.detach() : Tensor();
  return record(op, out, {x, weight, bias}, [=](const Tensor& g) {
    Tensor dx = gx ? Tensor::empty(xd.shape(), xd.dtype(), xd.device()) : Tensor();
    Tensor dw = gw ? Tensor::empty({C}, xd.dtype(), xd.device()) : Tensor();
    Tensor db = gb ? Tensor::empty({C}, xd.dtype(), xd.device()) : Tensor();
    dispatch_float("batch_norm_backward", xd.dtype(), [&]<class T>() {
      FF_KERNEL(xd, batch_norm_backward<T>, g.data<T>(), xd.data<T>(), N, C, S, mean.data<double>(),
                invstd.data<double>(), data_or_null<T>(wd), training, gx ? dx.data<T>() : nullptr,
                gw ? dw.data<T>() : nullptr, gb ? db.data<T>() : nullptr);
    });
    return std::vector<Tensor>{dx, dw, db};
  });
}

Tensor prelu(const Tensor& x, const Tensor& weight) {
  const char* op = "prelu";
  check_float(op, x);
  require_backend(op, x);
  FF_CHECK(x.dim() >= 2, op, ": input must be [N, C, ...], got ", x.str());
  FF_CHECK(weight.defined(), op, ": weight is undefined for input ", x.str());
  check_channel_param(op, x, weight, "weight");
  const NCS v = view_ncs(x);
  const int64_t N = v.N, C = v.C, S = v.S;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(op, x.dtype(), [&]<class T>() {
    FF_KERNEL(x, prelu_forward<T>, x.data<T>(), N, C, S, weight.data<T>(), out.data<T>());
  });
  const bool gx = x.requires_grad(), gw = weight.requires_grad();
  Tensor xd = x.detach(), wd = weight.detach();
  return record(op, out, {x, weight}, [=](const Tensor& g) {
    Tensor dx = gx ? Tensor::empty(xd.shape(), xd.dtype(), xd.device()) : Tensor();
    Tensor dw = gw ? Tensor::empty({C}, xd.dtype(), xd.device()) : Tensor();
    dispatch_float("prelu_backward", xd.dtype(), [&]<class T>() {
      FF_KERNEL(xd, prelu_backward<T>, g.data<T>(), xd.data<T>(), N, C, S, wd.data<T>(), gx ? dx.data<T>() : nullptr,
                gw ? dw.data<T>() : nullptr);
    });
    return std::vector<Tensor>{dx, dw};
  });
}

Tensor dropout(const Tensor& x, double p, bool training, Rng& rng) {
  const char* op = "dropout";
  check_float(op, x);
  FF_CHECK(p >= 0 && p < 1, op, ": p must be in [0, 1), got ", p, " for input ", x.str());
  if (!training || p == 0) return x;
  require_backend(op, x);
  // The scaled keep-mask is the whole op: forward and backward are both a product with it. It is
  // drawn on the host from the one Rng stream and copied to x's device, so a CUDA run drops exactly
  // the elements a CPU run with the same generator state drops.
  Tensor mask = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(op, x.dtype(), [&]<class T>() { cpu::dropout_mask<T>(x.numel(), p, rng, mask.data<T>()); });
  mask = mask.to(x.device());
  Tensor out;
  {
    NoGradGuard no_grad;
    out = mul(x, mask);
  }
  return record(op, out, {x}, [mask](const Tensor& g) { return std::vector<Tensor>{mul(g, mask)}; });
}

Tensor l2_normalize(const Tensor& x, double eps) {
  const char* op = "l2_normalize";
  check_float(op, x);
  require_backend(op, x);
  check_dim(op, x, 2, "input");
  FF_CHECK(eps > 0, op, ": eps must be positive, got ", eps);
  const int64_t N = x.size(0), D = x.size(1);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor norm = Tensor::empty({N}, DType::F64, x.device());
  dispatch_float(op, x.dtype(), [&]<class T>() {
    FF_KERNEL(x, l2_normalize_forward<T>, x.data<T>(), N, D, eps, out.data<T>(), norm.data<double>());
  });
  Tensor xd = x.detach();
  return record(op, out, {x}, [xd, norm, N, D, eps](const Tensor& g) {
    Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
    dispatch_float("l2_normalize_backward", xd.dtype(), [&]<class T>() {
      FF_KERNEL(xd, l2_normalize_backward<T>, g.data<T>(), xd.data<T>(), N, D, eps, norm.data<double>(), dx.data<T>());
    });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace ff
