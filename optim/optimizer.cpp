// The optimizer base (validation, state, batching by group and dtype) and the SGD and AdamW updates.
#include "optim/optimizer.h"

#include <cmath>
#include <map>
#include <set>

#include "engine/backend.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/sgd.h"
#include "kernels/cuda/fused.h"

namespace ff {

Optimizer::Optimizer(std::vector<ParamGroup> groups, std::vector<std::string> state_kinds)
    : groups_(std::move(groups)), state_kinds_(std::move(state_kinds)) {
  std::set<std::string> names;
  std::set<const TensorImpl*> tensors;
  for (const ParamGroup& g : groups_) {
    FF_CHECK(g.lr_mult >= 0 && std::isfinite(g.lr_mult), "optimizer: group '", g.name, "' has lr_mult ", g.lr_mult);
    FF_CHECK(g.weight_decay >= 0 && std::isfinite(g.weight_decay), "optimizer: group '", g.name, "' has weight_decay ",
             g.weight_decay);
    for (const ParamRef& p : g.params) {
      FF_CHECK(!p.name.empty(), "optimizer: a parameter of group '", g.name, "' has no name");
      FF_CHECK(p.param.defined(), "optimizer: parameter '", p.name, "' is an undefined tensor");
      FF_CHECK(names.insert(p.name).second, "optimizer: parameter name '", p.name, "' appears twice");
      FF_CHECK(tensors.insert(&p.param.impl()).second, "optimizer: parameter '", p.name,
               "' is a tensor already listed under another name");
      FF_CHECK(p.param.is_leaf() && p.param.requires_grad(), "optimizer: parameter '", p.name, "' (", p.param.str(),
               ") must be a leaf that requires a gradient");
      check_float("optimizer", p.param);
      require_backend("optimizer", p.param);
      // One device for all: each update is one multi-tensor kernel over the pointer lists.
      FF_CHECK(params_.empty() || p.param.device() == params_[0].param.device(), "optimizer: parameter '", p.name,
               "' is on ", p.param.device().str(), ", parameter '", params_[0].name, "' on ",
               params_[0].param.device().str(), " (one device per optimizer)");
      params_.push_back(p);
    }
  }
  for (const ParamRef& p : params_) {
    std::vector<Tensor> s;
    for (size_t k = 0; k < state_kinds_.size(); ++k)
      s.push_back(Tensor::zeros(p.param.shape(), p.param.dtype(), p.param.device()));
    state_.push_back(std::move(s));
  }
  param_steps_.assign(params_.size(), 0);
}

void Optimizer::step(double lr, std::span<const Tensor> restore_from) {
  FF_CHECK(std::isfinite(lr) && lr >= 0, kind(), " step: learning rate ", lr, " must be finite and >= 0");
  FF_CHECK(restore_from.empty() || restore_from.size() == params_.size(), kind(), " step: restore_from has ",
           restore_from.size(), " entries for ", params_.size(), " parameters");
  // Every check before the first write, so a failing step leaves the weights as they were.
  for (size_t k = 0; k < params_.size(); ++k) {
    const ParamRef& p = params_[k];
    Tensor g = p.param.grad();
    if (g.defined())
      FF_CHECK(g.shape() == p.param.shape() && g.dtype() == p.param.dtype() && g.device() == p.param.device(), kind(),
               " step: gradient ", g.str(), " of parameter '", p.name, "' ", p.param.str());
    if (!restore_from.empty() && restore_from[k].defined()) {
      const Tensor& s = restore_from[k];
      FF_CHECK(s.shape() == p.param.shape() && s.dtype() == p.param.dtype() && s.device() == p.param.device(), kind(),
               " step: saved copy ", s.str(), " of parameter '", p.name, "' ", p.param.str());
    }
  }
  size_t first = 0;
  for (const ParamGroup& g : groups_) {
    for (DType dt : {DType::F32, DType::F64}) {
      Batch b{&g, lr * g.lr_mult, {}};
      for (size_t k = first; k < first + g.params.size(); ++k) {
        const ParamRef& p = params_[k];
        if (p.param.dtype() != dt) continue;
        if (p.param.grad().defined()) {
          b.index.push_back(k);
          ++param_steps_[k];
        } else if (!restore_from.empty() && restore_from[k].defined()) {
          Tensor w = p.param;
          w.copy_from(restore_from[k]);
        }
      }
      if (!b.index.empty()) update(b, restore_from);
    }
    first += g.params.size();
  }
  ++steps_;
}

template <class T>
Optimizer::Lists<T> Optimizer::lists(const Batch& b, std::span<const Tensor> restore_from) const {
  Lists<T> l;
  for (size_t k : b.index) {
    const Tensor& w = params_[k].param;
    l.param.push_back(w.data<T>());
    l.saved.push_back(!restore_from.empty() && restore_from[k].defined() ? restore_from[k].data<T>() : nullptr);
    l.grad.push_back(w.grad().data<T>());
    l.numel.push_back(w.numel());
    l.step.push_back(param_steps_[k]);
  }
  return l;
}

template <class T>
std::vector<T*> Optimizer::state_list(const Batch& b, size_t kind) const {
  std::vector<T*> out;
  for (size_t k : b.index) out.push_back(state_[k][kind].data<T>());
  return out;
}

NamedTensors Optimizer::state_tensors() const {
  NamedTensors out;
  for (size_t k = 0; k < params_.size(); ++k)
    for (size_t j = 0; j < state_kinds_.size(); ++j)
      out.emplace_back(params_[k].name + "." + state_kinds_[j], state_[k][j]);
  return out;
}

NamedScalars Optimizer::state_scalars() const {
  NamedScalars out{{"steps", (double)steps_}};
  for (size_t k = 0; k < params_.size(); ++k) out.emplace_back(params_[k].name + ".step", (double)param_steps_[k]);
  return out;
}

void Optimizer::load_state(const NamedTensors& tensors, const NamedScalars& scalars) {
  const std::string who = std::string(kind()) + " load_state: ";
  std::map<std::string, const Tensor*> given_t;
  for (const auto& [name, t] : tensors) {
    FF_CHECK(given_t.emplace(name, &t).second, who, "state tensor '", name, "' appears twice");
  }
  std::map<std::string, double> given_s;
  for (const auto& [name, v] : scalars) {
    FF_CHECK(given_s.emplace(name, v).second, who, "state scalar '", name, "' appears twice");
  }
  auto count = [&](const std::string& name) {
    auto it = given_s.find(name);
    FF_CHECK(it != given_s.end(), who, "missing state scalar '", name, "'");
    double v = it->second;
    FF_CHECK(v >= 0 && v <= 9007199254740992.0 && v == std::floor(v), who, "state scalar '", name, "' = ", v,
             " is not a step count");
    return (int64_t)v;
  };
  // Check everything first, so a bad checkpoint changes nothing.
  int64_t steps = count("steps");
  std::vector<int64_t> param_steps;
  size_t expected_t = 0;
  for (size_t k = 0; k < params_.size(); ++k) {
    const ParamRef& p = params_[k];
    param_steps.push_back(count(p.name + ".step"));
    FF_CHECK(param_steps.back() <= steps, who, "'", p.name, ".step' = ", param_steps.back(),
             " exceeds steps = ", steps);
    for (const std::string& kind_name : state_kinds_) {
      std::string name = p.name + "." + kind_name;
      auto it = given_t.find(name);
      FF_CHECK(it != given_t.end(), who, "missing state tensor '", name, "'");
      const Tensor& t = *it->second;
      FF_CHECK(t.defined() && t.shape() == p.param.shape() && t.dtype() == p.param.dtype(), who, "state tensor '", name,
               "' is ", t.defined() ? t.str() : std::string("undefined"), " but parameter '", p.name, "' is ",
               p.param.str());
      ++expected_t;
    }
  }
  if (given_t.size() != expected_t || given_s.size() != params_.size() + 1) {
    std::set<std::string> known{"steps"};
    for (const ParamRef& p : params_) {
      known.insert(p.name + ".step");
      for (const std::string& kind_name : state_kinds_) known.insert(p.name + "." + kind_name);
    }
    for (const auto& [name, t] : given_t)
      FF_CHECK(known.count(name), who, "unknown state tensor '", name, "' (no such parameter state in this ", kind(),
               ")");
    for (const auto& [name, v] : given_s)
      FF_CHECK(known.count(name), who, "unknown state scalar '", name, "' (no such parameter state in this ", kind(),
               ")");
  }
  for (size_t k = 0; k < params_.size(); ++k)
    for (size_t j = 0; j < state_kinds_.size(); ++j)
      state_[k][j].copy_from(*given_t.at(params_[k].name + "." + state_kinds_[j]));
  param_steps_ = std::move(param_steps);
  steps_ = steps;
}

// ---- SGD ----

Sgd::Sgd(std::vector<ParamGroup> groups, const SgdOptions& opt)
    : Optimizer(std::move(groups),
                opt.momentum != 0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{}),
      opt_(opt) {
  FF_CHECK(opt.momentum >= 0 && std::isfinite(opt.momentum), "sgd: momentum ", opt.momentum, " must be >= 0");
  FF_CHECK(std::isfinite(opt.dampening), "sgd: dampening ", opt.dampening, " must be finite");
  FF_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0),
           "sgd: nesterov needs momentum > 0 and dampening 0 (momentum ", opt.momentum, ", dampening ", opt.dampening,
           ")");
}

void Sgd::update(const Batch& b, std::span<const Tensor> restore_from) {
  cpu::SgdHyper h{b.lr, opt_.momentum, opt_.dampening, b.group->weight_decay, opt_.nesterov};
  DType dt = params()[b.index[0]].param.dtype();
  dispatch_float("sgd", dt, [&]<class T>() {
    Lists<T> l = lists<T>(b, restore_from);
    std::vector<T*> buf;
    std::vector<uint8_t> first;
    if (opt_.momentum != 0) {
      buf = state_list<T>(b, 0);
      for (int64_t s : l.step) first.push_back(s == 1);
    }
    FF_KERNEL(params()[b.index[0]].param, sgd_update<T>, (int64_t)l.param.size(), l.param.data(), l.saved.data(),
              l.grad.data(), buf.empty() ? nullptr : buf.data(), first.empty() ? nullptr : first.data(), l.numel.data(),
              h);
  });
}

// ---- AdamW ----

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& opt)
    : Optimizer(std::move(groups), {"exp_avg", "exp_avg_sq"}), opt_(opt) {
  FF_CHECK(opt.beta1 >= 0 && opt.beta1 < 1, "adamw: beta1 ", opt.beta1, " must be in [0, 1)");
  FF_CHECK(opt.beta2 >= 0 && opt.beta2 < 1, "adamw: beta2 ", opt.beta2, " must be in [0, 1)");
  FF_CHECK(opt.eps >= 0 && std::isfinite(opt.eps), "adamw: eps ", opt.eps, " must be >= 0");
}

void AdamW::update(const Batch& b, std::span<const Tensor> restore_from) {
  cpu::AdamWHyper h{b.lr, opt_.beta1, opt_.beta2, opt_.eps, b.group->weight_decay};
  DType dt = params()[b.index[0]].param.dtype();
  dispatch_float("adamw", dt, [&]<class T>() {
    Lists<T> l = lists<T>(b, restore_from);
    std::vector<T*> m = state_list<T>(b, 0), v = state_list<T>(b, 1);
    FF_KERNEL(params()[b.index[0]].param, adamw_update<T>, (int64_t)l.param.size(), l.param.data(), l.saved.data(),
              l.grad.data(), m.data(), v.data(), l.step.data(), l.numel.data(), h);
  });
}

}  // namespace ff
