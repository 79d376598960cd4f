// The fused margin softmax cross-entropy op: validation, the CPU steps in order, and its backward.
#include "models/margin_head.h"

#include <climits>
#include <cmath>
#include <memory>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "kernels/cuda/fused.h"

namespace ff {

MarginConfig arcface_config(double s, double m2) {
  MarginConfig c;
  c.type = MarginType::ArcFace;
  c.s = s;
  c.m1 = 1;
  c.m2 = m2;
  c.m3 = 0;
  return c;
}

MarginConfig cosface_config(double s, double m3) {
  MarginConfig c;
  c.type = MarginType::CosFace;
  c.s = s;
  c.m1 = 1;
  c.m2 = 0;
  c.m3 = m3;
  return c;
}

MarginConfig combined_config(double s, double m1, double m2, double m3) {
  MarginConfig c;
  c.type = MarginType::Combined;
  c.s = s;
  c.m1 = m1;
  c.m2 = m2;
  c.m3 = m3;
  return c;
}

namespace {

template <class E, size_t N>
E parse_name(const char* what, const std::string& name, const std::pair<const char*, E> (&table)[N]) {
  std::string valid;
  for (const auto& [n, e] : table) {
    if (name == n) return e;
    if (!valid.empty()) valid += '|';
    valid += n;
  }
  throw Error(msg("unknown ", what, " '", name, "' (expected ", valid, ")"));
}

template <class E, size_t N>
const char* name_of(E e, const std::pair<const char*, E> (&table)[N]) {
  for (const auto& [n, v] : table)
    if (v == e) return n;
  return "?";
}

constexpr std::pair<const char*, MarginType> kTypes[] = {
    {"arcface", MarginType::ArcFace}, {"cosface", MarginType::CosFace}, {"combined", MarginType::Combined}};
constexpr std::pair<const char*, MarginGrad> kGrads[] = {{"exact", MarginGrad::Exact},
                                                         {"straight_through", MarginGrad::StraightThrough}};
constexpr std::pair<const char*, MarginLoss> kLosses[] = {{"margin", MarginLoss::Margin}, {"aace", MarginLoss::Aace}};

}  // namespace

MarginType parse_margin_type(const std::string& name) { return parse_name("margin type", name, kTypes); }
MarginGrad parse_margin_grad(const std::string& name) { return parse_name("margin gradient", name, kGrads); }
MarginLoss parse_margin_loss(const std::string& name) { return parse_name("margin loss", name, kLosses); }
const char* margin_type_name(MarginType t) { return name_of(t, kTypes); }
const char* margin_grad_name(MarginGrad g) { return name_of(g, kGrads); }
const char* margin_loss_name(MarginLoss l) { return name_of(l, kLosses); }

void check_margin_config(const MarginConfig& c) {
  const char* t = margin_type_name(c.type);
  FF_CHECK(std::isfinite(c.s) && std::isfinite(c.m1) && std::isfinite(c.m2) && std::isfinite(c.m3), "margin config (",
           t, "): s, m1, m2, m3 must be finite, got ", c.s, ", ", c.m1, ", ", c.m2, ", ", c.m3);
  FF_CHECK(c.s > 0, "margin config (", t, "): scale s must be > 0, got ", c.s);
  FF_CHECK(c.m1 > 0, "margin config (", t, "): m1 must be > 0, got ", c.m1);
  FF_CHECK(c.m2 >= 0 && c.m2 < M_PI, "margin config (", t, "): m2 must be in [0, pi), got ", c.m2);
  if (c.type == MarginType::ArcFace)
    FF_CHECK(c.m1 == 1 && c.m3 == 0, "margin config (arcface): uses s and m2 only; m1 must be 1 and m3 0, got m1 ",
             c.m1, " m3 ", c.m3, " (use type combined)");
  if (c.type == MarginType::CosFace)
    FF_CHECK(c.m1 == 1 && c.m2 == 0, "margin config (cosface): uses s and m3 only; m1 must be 1 and m2 0, got m1 ",
             c.m1, " m2 ", c.m2, " (use type combined)");
}

namespace {

size_t g_logits_limit = size_t(1) << 30;  // set_margin_logits_limit

// What backward needs: the gradient buffer H and the inputs it is applied to.
struct SavedState {
  Tensor buf, f, w;
  std::vector<double> f_norm, w_norm;
};

// The CPU steps of kernels/cpu/margin_softmax.h in order.
MarginLossResult margin_cpu(const Tensor& embeddings, const Tensor& centres, const int64_t* y, const MarginConfig& cfg,
                            bool want_grad) {
  const char* op = "margin_softmax_cross_entropy";
  const int64_t B = embeddings.size(0), d = embeddings.size(1), C = centres.size(0);
  auto st = std::make_shared<SavedState>();
  st->buf = Tensor::empty({B, C}, embeddings.dtype());
  st->f = embeddings.detach();
  st->w = centres.detach();
  st->f_norm.resize(B);
  st->w_norm.resize(C);
  std::vector<double> target_cos(B), target_logit(B), max_other(B), sum_other(B), row_loss(B);
  cpu::MarginRows rows{target_cos.data(), target_logit.data(), max_other.data(), sum_other.data()};
  Tensor correct = Tensor::empty({B}, DType::I64);
  dispatch_float(op, embeddings.dtype(), [&]<class T>() {
    const T *f = st->f.data<T>(), *w = st->w.data<T>();
    T* buf = st->buf.data<T>();
    cpu::row_norms(B, d, f, st->f_norm.data());
    cpu::row_norms(C, d, w, st->w_norm.data());
    cpu::cosine_logits(B, C, d, f, st->f_norm.data(), w, st->w_norm.data(), buf);
    cpu::apply_margin(cfg, B, C, 0, y, buf, rows);
    cpu::row_sum_other(B, C, 0, y, buf, rows);
    cpu::row_losses(cfg, B, rows, row_loss.data(), correct.data<int64_t>());
    if (want_grad) cpu::logits_to_grad(cfg, B, C, 0, y, rows, st->f_norm.data(), st->w_norm.data(), 1.0 / B, buf);
  });
  double total = 0;
  for (double l : row_loss) total += l;

  MarginLossResult r;
  r.loss = Tensor::full({}, total / B, embeddings.dtype());
  r.target_cos = Tensor::from<double>({B}, target_cos).to(embeddings.dtype());
  r.correct = correct;
  if (!want_grad) return r;
  const bool need_f = embeddings.requires_grad(), need_w = centres.requires_grad();
  r.loss = record(op, r.loss, {embeddings, centres}, [st, need_f, need_w, B, C, d](const Tensor& g) {
    Tensor gf = need_f ? Tensor::empty(st->f.shape(), st->f.dtype()) : Tensor();
    Tensor gw = need_w ? Tensor::empty(st->w.shape(), st->w.dtype()) : Tensor();
    const double grad_out = g.item(0);
    dispatch_float("margin_softmax_cross_entropy backward", st->f.dtype(), [&]<class T>() {
      cpu::margin_backward(B, C, d, st->f.data<T>(), st->f_norm.data(), st->w.data<T>(), st->w_norm.data(),
                           st->buf.data<T>(), grad_out, need_f ? gf.data<T>() : nullptr,
                           need_w ? gw.data<T>() : nullptr);
    });
    return std::vector<Tensor>{gf, gw};
  });
  return r;
}

#ifdef FLATFACE_HAVE_CUDA
// The same op through the fused CUDA kernels (kernels/cuda/margin_softmax.cu): norms, row statistics
// and the one logits buffer live in a workspace kept for backward.
MarginLossResult margin_cuda(const Tensor& embeddings, const Tensor& centres, const Tensor& labels,
                             const MarginConfig& cfg, bool want_grad) {
  const char* op = "margin_softmax_cross_entropy";
  const Device dev = embeddings.device();
  const int64_t B = embeddings.size(0), d = embeddings.size(1), C = centres.size(0);
  const size_t elem = dtype_size(embeddings.dtype());
  cuda::MarginShape shape{B, C, d, 0, cuda::allow_tf32()};
  const int64_t fit = std::max<int64_t>(1, (int64_t)(g_logits_limit / ((size_t)B * elem)));
  if (fit < C) shape.chunk = fit;
  struct State {
    Tensor f, w, labels, workspace;
  };
  auto st = std::make_shared<State>();
  st->f = embeddings.detach();
  st->w = centres.detach();
  st->labels = labels.to(dev);
  const size_t ws_bytes = cuda::margin_workspace_bytes(shape, elem);
  st->workspace = Tensor::empty({(int64_t)((ws_bytes + 7) / 8)}, DType::F64, dev);
  Tensor loss = Tensor::empty({}, DType::F64, dev), target_cos = Tensor::empty({B}, DType::F64, dev);
  Tensor correct = Tensor::empty({B}, DType::I64, dev);
  cuda::MarginOutputs out;
  out.loss_mean = loss.data<double>();
  out.target_cos = target_cos.data<double>();
  out.correct = correct.data<int64_t>();
  const double grad_scale = want_grad ? 1.0 / B : 0.0;
  dispatch_float(op, embeddings.dtype(), [&]<class T>() {
    cuda::margin_fused_forward<T>(cfg, shape, st->labels.data<int64_t>(), st->f.data<T>(), st->w.data<T>(), grad_scale,
                                  st->workspace.raw(), out);
  });

  MarginLossResult r;
  r.loss = loss.to(embeddings.dtype());
  r.target_cos = target_cos.to(embeddings.dtype());
  r.correct = correct;
  if (!want_grad) return r;
  const bool need_f = embeddings.requires_grad(), need_w = centres.requires_grad();
  r.loss = record(op, r.loss, {embeddings, centres}, [st, cfg, shape, grad_scale, need_f, need_w](const Tensor& g) {
    const Device dev = st->f.device();
    Tensor gf = need_f ? Tensor::empty(st->f.shape(), st->f.dtype(), dev) : Tensor();
    Tensor gw = need_w ? Tensor::empty(st->w.shape(), st->w.dtype(), dev) : Tensor();
    const double grad_out = g.item(0);
    dispatch_float("margin_softmax_cross_entropy backward", st->f.dtype(), [&]<class T>() {
      cuda::margin_fused_backward<T>(cfg, shape, st->labels.data<int64_t>(), st->f.data<T>(), st->w.data<T>(),
                                     grad_scale, grad_out, st->workspace.raw(), need_f ? gf.data<T>() : nullptr,
                                     need_w ? gw.data<T>() : nullptr);
    });
    return std::vector<Tensor>{gf, gw};
  });
  return r;
}
#endif

}  // namespace

void set_margin_logits_limit(size_t bytes) {
  FF_CHECK(bytes > 0, "set_margin_logits_limit: the limit must be > 0 bytes");
  g_logits_limit = bytes;
}
size_t margin_logits_limit() { return g_logits_limit; }

MarginLossResult margin_softmax_cross_entropy(const Tensor& embeddings, const Tensor& centres, const Tensor& labels,
                                              const MarginConfig& cfg) {
  const char* op = "margin_softmax_cross_entropy";
  check_margin_config(cfg);
  check_dim(op, embeddings, 2, "embeddings");
  check_dim(op, centres, 2, "centres");
  check_dim(op, labels, 1, "labels");
  check_float(op, embeddings);
  check_same_dtype(op, embeddings, centres);
  check_same_device(op, embeddings, centres);
  require_backend(op, embeddings);
  FF_CHECK(labels.dtype() == DType::I64, op, ": labels must be i64, got ", labels.str());
  FF_CHECK(labels.device().is_cpu() || labels.device() == embeddings.device(), op, ": labels ", labels.str(),
           " must be on the CPU or with the embeddings ", embeddings.str());
  const int64_t B = embeddings.size(0), d = embeddings.size(1), C = centres.size(0);
  FF_CHECK(B > 0 && d > 0, op, ": empty embeddings ", embeddings.str());
  FF_CHECK(C > 0, op, ": no classes: centres ", centres.str());
  FF_CHECK(centres.size(1) == d, op, ": embeddings ", embeddings.str(), " and centres ", centres.str(),
           " differ in size d");
  FF_CHECK(labels.size(0) == B, op, ": ", labels.str(), " labels for ", B, " embeddings ", embeddings.str());
  FF_CHECK(B <= INT_MAX && C <= INT_MAX && d <= INT_MAX, op, ": sizes B ", B, ", C ", C, ", d ", d,
           " exceed the BLAS index range");
  FF_CHECK(cfg.loss != MarginLoss::Aace || C >= 2, op, ": aace needs at least 2 classes (the adversarial target ",
           "spreads over the non-target classes), got ", centres.str());
  // Labels are checked on the host (B values; the kernels take an out-of-range id for no class).
  const Tensor host_labels = labels.to(Device::cpu());
  const int64_t* y = host_labels.data<int64_t>();
  for (int64_t i = 0; i < B; ++i)
    FF_CHECK(y[i] >= 0 && y[i] < C, op, ": label ", y[i], " of row ", i, " is out of range [0, ", C, ")");

  const bool want_grad = grad_enabled() && (embeddings.requires_grad() || centres.requires_grad());
#ifdef FLATFACE_HAVE_CUDA
  if (embeddings.device().is_cuda()) return margin_cuda(embeddings, centres, labels, cfg, want_grad);
#endif
  return margin_cpu(embeddings, centres, y, cfg, want_grad);
}

}  // namespace ff
