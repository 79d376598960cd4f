// Perturbation configuration presets and the perturb / restore passes over named parameters.
#include "optim/perturb.h"

#include <cmath>

#include "engine/backend.h"
#include "kernels/cpu/perturb.h"
#include "kernels/cuda/fused.h"

namespace ff {

PerturbConfig PerturbConfig::preset(Method m) {
  PerturbConfig c;
  c.method = m;
  switch (m) {
    case Method::Sgd:
      c.rho = 0;
      c.head = false;
      break;
    case Method::Sam:
      c.head = false;
      break;
    case Method::Asam:
      c.head = false;
      c.adaptive = true;
      c.rho = 0.5;
      break;
    case Method::Aace:
      c.head = false;
      c.loss = PerturbLoss::Aace;
      c.normalize = false;
      c.rho = 0.2;
      break;
    case Method::FlatFace:
      break;
  }
  return c;
}

double PerturbConfig::sign_value() const {
  switch (sign) {
    case SignRule::Plus:
      return 1.0;
    case SignRule::Minus:
      return -1.0;
    case SignRule::ByLoss:
      return loss == PerturbLoss::Aace ? -1.0 : 1.0;
  }
  return 1.0;
}

void validate(const PerturbConfig& c) {
  FF_CHECK(std::isfinite(c.rho) && c.rho >= 0, "method.rho = ", c.rho, " must be finite and >= 0");
  FF_CHECK(c.perturbs() || c.loss == PerturbLoss::Margin, "method.loss = ", perturb_loss_name(c.loss),
           " has no effect with method sgd (no perturbation); use margin");
}

Method parse_method(const std::string& s) {
  for (Method m : {Method::Sgd, Method::Sam, Method::Asam, Method::Aace, Method::FlatFace})
    if (s == method_name(m)) return m;
  throw Error(msg("unknown method '", s, "' (expected sgd, sam, asam, aace or flatface)"));
}

PerturbLoss parse_perturb_loss(const std::string& s) {
  for (PerturbLoss l : {PerturbLoss::Margin, PerturbLoss::Aace})
    if (s == perturb_loss_name(l)) return l;
  throw Error(msg("unknown method.loss '", s, "' (expected margin or aace)"));
}

SignRule parse_sign_rule(const std::string& s) {
  for (SignRule r : {SignRule::ByLoss, SignRule::Plus, SignRule::Minus})
    if (s == sign_rule_name(r)) return r;
  throw Error(msg("unknown perturb.sign '", s, "' (expected by_loss, plus or minus)"));
}

const char* method_name(Method m) {
  switch (m) {
    case Method::Sgd:
      return "sgd";
    case Method::Sam:
      return "sam";
    case Method::Asam:
      return "asam";
    case Method::Aace:
      return "aace";
    case Method::FlatFace:
      return "flatface";
  }
  return "?";
}

const char* perturb_loss_name(PerturbLoss l) { return l == PerturbLoss::Aace ? "aace" : "margin"; }

const char* sign_rule_name(SignRule s) {
  switch (s) {
    case SignRule::ByLoss:
      return "by_loss";
    case SignRule::Plus:
      return "plus";
    case SignRule::Minus:
      return "minus";
  }
  return "?";
}

// ---- Perturbation ----

template <class T>
struct Perturbation::Lists {
  std::vector<T*> param, saved;
  std::vector<const T*> grad;
  std::vector<int64_t> numel;
  std::vector<size_t> index;
};

Perturbation::Perturbation(std::vector<ParamRef> params, const PerturbConfig& cfg)
    : cfg_(cfg), params_(std::move(params)) {
  validate(cfg_);
  for (const ParamRef& p : params_) {
    FF_CHECK(p.param.defined(), "perturbation: parameter '", p.name, "' is an undefined tensor");
    check_float("perturbation", p.param);
    require_backend("perturbation", p.param);
    FF_CHECK(p.param.device() == params_[0].param.device(), "perturbation: parameter '", p.name, "' is on ",
             p.param.device().str(), ", parameter '", params_[0].name, "' on ", params_[0].param.device().str(),
             " (one device for all)");
    bool covered = cfg_.perturbs() && (!p.is_head || cfg_.head);
    saved_.push_back(covered ? Tensor::empty(p.param.shape(), p.param.dtype(), p.param.device()) : Tensor());
  }
  step_saved_.resize(params_.size());
}

template <class T>
Perturbation::Lists<T> Perturbation::lists() const {
  Lists<T> l;
  for (size_t k = 0; k < params_.size(); ++k) {
    const Tensor& w = params_[k].param;
    if (!covers(k) || w.dtype() != dtype_of<T>()) continue;
    Tensor g = w.grad();
    if (!g.defined()) continue;
    l.param.push_back(w.data<T>());
    l.saved.push_back(saved_[k].data<T>());
    l.grad.push_back(g.data<T>());
    l.numel.push_back(w.numel());
    l.index.push_back(k);
  }
  return l;
}

void Perturbation::check_grads() const {
  for (size_t k = 0; k < params_.size(); ++k) {
    const Tensor& w = params_[k].param;
    Tensor g = w.grad();
    if (covers(k) && g.defined())
      FF_CHECK(g.shape() == w.shape() && g.dtype() == w.dtype() && g.device() == w.device(), "perturbation: gradient ",
               g.str(), " of parameter '", params_[k].name, "' ", w.str());
  }
}

std::vector<std::string> Perturbation::perturbed_names() const {
  std::vector<std::string> out;
  for (size_t k = 0; k < params_.size(); ++k)
    if (covers(k) && params_[k].param.grad().defined()) out.push_back(params_[k].name);
  return out;
}

double Perturbation::local_sq_norm() const {
  check_grads();
  // f32 tensors first, then f64: a fixed order, so the sum is reproducible.
  double total = 0;
  for (DType dt : {DType::F32, DType::F64}) {
    total += dispatch_float("perturbation", dt, [&]<class T>() {
      Lists<T> l = lists<T>();
      std::vector<const T*> w(l.param.begin(), l.param.end());
      if (l.grad.empty()) return 0.0;
      return FF_KERNEL(params_[l.index[0]].param, perturb_sq_norm<T>, (int64_t)l.grad.size(), l.grad.data(),
                       cfg_.adaptive ? w.data() : nullptr, l.numel.data());
    });
  }
  return total;
}

void Perturbation::apply(double norm) {
  FF_CHECK(!applied_, "perturbation: apply called twice without a restore");
  FF_CHECK(std::isfinite(norm) && norm >= 0, "perturbation: norm ", norm, " must be finite and >= 0");
  check_grads();
  const double scale = cfg_.sign_value() * cfg_.rho / (cfg_.normalize ? norm + 1e-12 : 1.0);
  std::fill(step_saved_.begin(), step_saved_.end(), Tensor());
  for (DType dt : {DType::F32, DType::F64}) {
    dispatch_float("perturbation", dt, [&]<class T>() {
      Lists<T> l = lists<T>();
      if (l.param.empty()) return;
      FF_KERNEL(params_[l.index[0]].param, perturb_apply<T>, (int64_t)l.param.size(), l.param.data(), l.saved.data(),
                l.grad.data(), l.numel.data(), scale, cfg_.adaptive);
      for (size_t k : l.index) step_saved_[k] = saved_[k];
    });
  }
  applied_ = true;
}

void Perturbation::restore() {
  if (!applied_) return;
  for (DType dt : {DType::F32, DType::F64}) {
    dispatch_float("perturbation", dt, [&]<class T>() {
      std::vector<T*> param;
      std::vector<const T*> saved;
      std::vector<int64_t> numel;
      for (size_t k = 0; k < params_.size(); ++k) {
        if (!step_saved_[k].defined() || step_saved_[k].dtype() != dt) continue;
        param.push_back(params_[k].param.data<T>());
        saved.push_back(step_saved_[k].data<T>());
        numel.push_back(params_[k].param.numel());
      }
      if (param.empty()) return;
      FF_KERNEL(params_[0].param, perturb_restore<T>, (int64_t)param.size(), param.data(), saved.data(), numel.data());
    });
  }
  restored();
}

void Perturbation::restored() {
  std::fill(step_saved_.begin(), step_saved_.end(), Tensor());
  applied_ = false;
}

}  // namespace ff
