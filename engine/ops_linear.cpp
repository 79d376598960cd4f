// Matrix product and the fully connected layer, with their backward, on kernels/cpu/gemm.h.
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "kernels/cpu/gemm.h"

namespace ff {

namespace {

// op(a) op(b) without recording; shapes already checked.
Tensor matmul_raw(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const int64_t M = a.size(ta ? 1 : 0), K = a.size(ta ? 0 : 1), N = b.size(tb ? 0 : 1);
  Tensor out = Tensor::empty({M, N}, a.dtype(), a.device());
  dispatch_float("matmul", a.dtype(), [&]<class T>() {
    FF_KERNEL(a, gemm_parallel<T>, ta, tb, M, N, K, T(1), a.data<T>(), a.size(1), b.data<T>(), b.size(1), T(0),
              out.data<T>(), N);
  });
  return out;
}

void check_matmul(const char* op, const Tensor& a, const Tensor& b) {
  check_float(op, a);
  check_same_dtype(op, a, b);
  check_same_device(op, a, b);
  require_backend(op, a);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_matmul("matmul", a, b);
  FF_CHECK(a.dim() == 2 && b.dim() == 2, "matmul: operands must be 2-D, got ", a.str(), " and ", b.str());
  const int64_t ka = a.size(trans_a ? 0 : 1), kb = b.size(trans_b ? 1 : 0);
  FF_CHECK(ka == kb, "matmul: inner dimensions differ: ", a.str(), (trans_a ? " (transposed)" : ""), " x ", b.str(),
           (trans_b ? " (transposed)" : ""));
  Tensor out = matmul_raw(a, b, trans_a, trans_b);
  Tensor ad = a.detach(), bd = b.detach();
  bool ga = a.requires_grad(), gb = b.requires_grad();
  return record("matmul", out, {a, b}, [ad, bd, ga, gb, trans_a, trans_b](const Tensor& g) {
    // C = op(A) op(B): dop(A) = dC op(B)^T and dop(B) = op(A)^T dC, transposed back where stored so.
    Tensor da, db;
    if (ga) da = trans_a ? matmul_raw(bd, g, trans_b, true) : matmul_raw(g, bd, false, !trans_b);
    if (gb) db = trans_b ? matmul_raw(g, ad, true, trans_a) : matmul_raw(ad, g, !trans_a, false);
    return std::vector<Tensor>{da, db};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_matmul("linear", x, weight);
  FF_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1), "linear: input ", x.str(), " and weight ",
           weight.str(), " do not fit (expected x [N, in] and weight [out, in])");
  const int64_t N = x.size(0), out_f = weight.size(0);
  if (bias.defined()) {
    check_same_dtype("linear", x, bias);
    check_same_device("linear", x, bias);
    FF_CHECK(bias.dim() == 1 && bias.size(0) == out_f, "linear: bias ", bias.str(), " does not match weight ",
             weight.str(), " (expected [", out_f, "])");
  }
  Tensor out;
  if (x.device().is_cuda()) {
    // Device memory: the product, then the bias broadcast over the rows.
    NoGradGuard no_grad;
    out = matmul_raw(x, weight, false, true);
    if (bias.defined()) out = add(out, bias);
  } else {
    out = Tensor::empty({N, out_f}, x.dtype(), x.device());
    dispatch_float("linear", x.dtype(), [&]<class T>() {
      T* y = out.data<T>();
      T beta = T(0);
      if (bias.defined()) {  // start C from the bias rows, then accumulate the product onto it
        const T* b = bias.data<T>();
        for (int64_t i = 0; i < N; ++i)
          for (int64_t j = 0; j < out_f; ++j) y[i * out_f + j] = b[j];
        beta = T(1);
      }
      cpu::gemm_parallel<T>(false, true, N, out_f, x.size(1), T(1), x.data<T>(), x.size(1), weight.data<T>(),
                            weight.size(1), beta, y, out_f);
    });
  }
  Tensor xd = x.detach(), wd = weight.detach();
  bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
  std::vector<Tensor> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  return record("linear", out, inputs, [xd, wd, gx, gw, gb, has_bias = bias.defined()](const Tensor& g) {
    std::vector<Tensor> grads{gx ? matmul_raw(g, wd, false, false) : Tensor(),
                              gw ? matmul_raw(g, xd, true, false) : Tensor()};
    if (has_bias) grads.push_back(gb ? sum_dim(g, 0) : Tensor());
    return grads;
  });
}

}  // namespace ff
