// Row-wise log-softmax and softmax cross-entropy with integer labels, with their backward.
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "kernels/cpu/softmax.h"

namespace ff {

Tensor log_softmax(const Tensor& x) {
  const char* op = "log_softmax";
  check_float(op, x);
  require_backend(op, x);
  check_dim(op, x, 2, "input");
  const int64_t N = x.size(0), C = x.size(1);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor lse = Tensor::empty({N}, DType::F64, x.device());
  dispatch_float(op, x.dtype(), [&]<class T>() {
    FF_KERNEL(x, logsumexp_rows<T>, x.data<T>(), N, C, lse.data<double>());
    FF_KERNEL(x, log_softmax_forward<T>, x.data<T>(), N, C, lse.data<double>(), out.data<T>());
  });
  Tensor yd = out.detach();
  return record(op, out, {x}, [yd, N, C](const Tensor& g) {
    Tensor dx = Tensor::empty(yd.shape(), yd.dtype(), yd.device());
    dispatch_float("log_softmax_backward", yd.dtype(), [&]<class T>() {
      FF_KERNEL(yd, log_softmax_backward<T>, g.data<T>(), yd.data<T>(), N, C, dx.data<T>());
    });
    return std::vector<Tensor>{dx};
  });
}

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  const char* op = "cross_entropy";
  check_float(op, logits);
  require_backend(op, logits);
  check_dim(op, logits, 2, "logits");
  FF_CHECK(labels.defined() && labels.dtype() == DType::I64, op, ": labels must be i64, got ",
           labels.defined() ? labels.str() : std::string("undefined"));
  check_same_device(op, logits, labels);
  const int64_t N = logits.size(0), C = logits.size(1);
  FF_CHECK(labels.dim() == 1 && labels.size(0) == N, op, ": labels must be [", N, "] for logits ", logits.str(),
           ", got ", labels.str());
  FF_CHECK(N > 0, op, ": no rows to average over in logits ", logits.str());
  // Copied: the caller may refill its label buffer before backward runs. Checked on the host (a
  // copy back for CUDA labels: N integers), since an out-of-range label would read out of bounds.
  Tensor lab = labels.clone();
  Tensor lab_host = lab.to(Device::cpu());
  const int64_t* y = lab_host.data<int64_t>();
  for (int64_t r = 0; r < N; ++r)
    FF_CHECK(y[r] >= 0 && y[r] < C, op, ": label ", y[r], " at row ", r, " is out of range [0, ", C, ") for logits ",
             logits.str());

  Tensor lse = Tensor::empty({N}, DType::F64, logits.device());
  Tensor out = Tensor::empty({}, logits.dtype(), logits.device());
  dispatch_float(op, logits.dtype(), [&]<class T>() {
    FF_KERNEL(logits, logsumexp_rows<T>, logits.data<T>(), N, C, lse.data<double>());
    // The CUDA twin writes the loss where it lies; the CPU one returns it.
    if constexpr (kCudaBuild)
      if (logits.device().is_cuda())
        return cuda::cross_entropy_forward<T>(logits.data<T>(), lab.data<int64_t>(), N, C, lse.data<double>(),
                                              out.data<T>());
    *out.data<T>() = (T)cpu::cross_entropy_forward<T>(logits.data<T>(), y, N, C, lse.data<double>());
  });
  Tensor xd = logits.detach();
  return record(op, out, {logits}, [xd, lab, lse, N, C](const Tensor& g) {
    Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
    dispatch_float("cross_entropy_backward", xd.dtype(), [&]<class T>() {
      FF_KERNEL(xd, cross_entropy_backward<T>, xd.data<T>(), lab.data<int64_t>(), N, C, lse.data<double>(), g.data<T>(),
                dx.data<T>());
    });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace ff
