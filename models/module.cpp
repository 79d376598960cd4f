// Module bookkeeping (names, state_dict, modes) and the basic layers built on the engine ops.
#include "models/module.h"

#include <cmath>
#include <set>

#include "engine/ops.h"

namespace ff {

namespace {
enum Kind { kTrainable = 1, kBuffer = 2, kFrozen = 4 };
}

Tensor& Module::add_parameter(const std::string& name, Tensor t, bool trainable) {
  t.set_requires_grad(trainable);
  entries_.push_back({name, std::move(t), false});
  return entries_.back().tensor;
}

Tensor& Module::add_buffer(const std::string& name, Tensor t) {
  entries_.push_back({name, std::move(t), true});
  return entries_.back().tensor;
}

void Module::collect(const std::string& prefix, NamedTensors& out, int kinds) const {
  for (const Entry& e : entries_) {
    int kind = e.is_buffer ? kBuffer : (e.tensor.requires_grad() ? kTrainable : kFrozen);
    if (kind & kinds) out.emplace_back(prefix + e.name, e.tensor);
  }
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out, kinds);
}

void Module::to(Device d) {
  for (auto& [name, t] : state_dict())
    if (t.dtype() != DType::I64) t.move_to_(d);
}

Device Module::device() const {
  NamedTensors p = named_parameters(true);
  return p.empty() ? Device::cpu() : p.front().second.device();
}

NamedTensors Module::named_parameters(bool include_frozen) const {
  NamedTensors out;
  collect("", out, kTrainable | (include_frozen ? kFrozen : 0));
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", out, kBuffer | kFrozen);
  return out;
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", out, kTrainable | kBuffer | kFrozen);
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& tensors, const std::string& source) {
  // Every check before the first copy, so a refused file leaves the model as it was.
  NamedTensors own = state_dict();
  std::set<std::string> used;
  for (auto& [name, t] : own) {
    auto it = tensors.find(name);
    FF_CHECK(it != tensors.end(), source, ": tensor '", name, "' is missing (expected ", dtype_name(t.dtype()),
             shape_str(t.shape()), ")");
    const Tensor& src = it->second;
    FF_CHECK(src.shape() == t.shape(), source, ": tensor '", name, "' has shape ", shape_str(src.shape()),
             ", the model expects ", shape_str(t.shape()));
    // Float tensors convert (an f32 checkpoint loads into an f64 model); integers must stay integers.
    bool convertible = src.dtype() == t.dtype() || (src.dtype() != DType::I64 && t.dtype() != DType::I64);
    FF_CHECK(convertible, source, ": tensor '", name, "' has dtype ", dtype_name(src.dtype()), ", the model expects ",
             dtype_name(t.dtype()));
    used.insert(name);
  }
  for (const auto& [name, t] : tensors)
    FF_CHECK(used.count(name), source, ": unexpected tensor '", name, "' (not part of this model)");
  for (auto& [name, t] : own) t.copy_from(tensors.at(name).to(t.dtype()));
}

void Module::train(bool on) {
  visit([on](Module& m) { m.training_ = on; });
}

void Module::set_bn_update_stats(bool on) {
  visit([on](Module& m) { m.bn_update_stats_ = on; });
}

void Module::visit(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (auto& [name, child] : children_) child->visit(fn);
}

int64_t Module::parameter_count(bool include_frozen) const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters(include_frozen)) n += t.numel();
  return n;
}

Tensor init_normal(const Shape& shape, Rng& rng, double stddev) { return randn(shape, rng, stddev); }

Tensor init_uniform(const Shape& shape, Rng& rng, double bound) { return rand_uniform(shape, rng, -bound, bound); }

Conv2d::Conv2d(int64_t cin, int64_t cout, int64_t kernel, int64_t stride, int64_t pad, int64_t groups, bool bias,
               Rng& rng, double init_std)
    : stride_(stride), pad_(pad), groups_(groups) {
  FF_CHECK(cin % groups == 0 && cout % groups == 0, "Conv2d: channels ", cin, "->", cout, " not divisible by groups ",
           groups);
  weight_ = add_parameter("weight", init_normal({cout, cin / groups, kernel, kernel}, rng, init_std));
  if (bias) bias_ = add_parameter("bias", Tensor::zeros({cout}));
}

Tensor Conv2d::forward(const Tensor& x) const {
  Conv2dOptions o;
  o.stride_h = o.stride_w = stride_;
  o.pad_h = o.pad_w = pad_;
  o.groups = groups_;
  return conv2d(x, weight_, bias_, o);
}

BatchNorm::BatchNorm(int64_t channels, double eps, double momentum, bool affine) : eps_(eps), momentum_(momentum) {
  if (affine) {
    weight_ = add_parameter("weight", Tensor::full({channels}, 1.0));
    bias_ = add_parameter("bias", Tensor::zeros({channels}));
  }
  running_mean_ = add_buffer("running_mean", Tensor::zeros({channels}));
  running_var_ = add_buffer("running_var", Tensor::full({channels}, 1.0));
  num_batches_tracked_ = add_buffer("num_batches_tracked", Tensor::zeros({}, DType::I64));
}

Tensor BatchNorm::forward(const Tensor& x) const {
  BatchNormOptions o;
  o.training = training();
  o.update_stats = training() && bn_update_stats();
  o.momentum = momentum_;
  o.eps = eps_;
  if (o.update_stats) num_batches_tracked_.data<int64_t>()[0] += 1;
  return batch_norm(x, weight_, bias_, running_mean_, running_var_, o);
}

PReLU::PReLU(int64_t channels, double init) { weight_ = add_parameter("weight", Tensor::full({channels}, init)); }

Tensor PReLU::forward(const Tensor& x) const { return prelu(x, weight_); }

Linear::Linear(int64_t in, int64_t out, bool bias, Rng& rng) {
  // PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
  double bound = 1.0 / std::sqrt((double)in);
  weight_ = add_parameter("weight", init_uniform({out, in}, rng, bound));
  if (bias) bias_ = add_parameter("bias", init_uniform({out}, rng, bound));
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight_, bias_); }

}  // namespace ff
