// Module: named parameters, buffers and children, with PyTorch-style state_dict names.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace ff {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;

  // Trainable tensors (requires_grad leaves), "a.b.weight" style names, registration order.
  NamedTensors named_parameters(bool include_frozen = false) const;
  // Non-trainable state (BatchNorm running statistics and num_batches_tracked, frozen parameters).
  NamedTensors named_buffers() const;
  // Everything a checkpoint holds, under the names PyTorch's state_dict uses.
  NamedTensors state_dict() const;
  // Copies values in; every name must exist with the same shape and dtype (the error names it).
  void load_state_dict(const std::map<std::string, Tensor>& tensors, const std::string& source = "state dict");

  // Training mode: BatchNorm uses batch statistics, dropout is active.
  void train(bool on = true);
  bool training() const { return training_; }
  // In training mode, whether BatchNorm folds batch statistics into its running statistics.
  // The FlatFace update pass turns this off.
  void set_bn_update_stats(bool on);
  bool bn_update_stats() const { return bn_update_stats_; }

  void visit(const std::function<void(Module&)>& fn);
  // Moves every float parameter and buffer to device d in place. Integer buffers (BatchNorm's
  // num_batches_tracked, a counter the host increments) stay on the CPU.
  void to(Device d);
  // Where the parameters live (the CPU for a module without any).
  Device device() const;
  int64_t parameter_count(bool include_frozen = true) const;

  // Registers a child; its tensors appear under "<name>." (a plain Module serves as a container,
  // like PyTorch's nn.Sequential with children "0", "1", ...).
  template <class M>
  std::shared_ptr<M> add_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 protected:
  Tensor& add_parameter(const std::string& name, Tensor t, bool trainable = true);
  Tensor& add_buffer(const std::string& name, Tensor t);

 private:
  void collect(const std::string& prefix, NamedTensors& out, int kind) const;
  struct Entry {
    std::string name;
    Tensor tensor;
    bool is_buffer;
  };
  std::vector<Entry> entries_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  bool bn_update_stats_ = true;
};

// ---- layers ----

class Conv2d : public Module {
 public:
  Conv2d(int64_t cin, int64_t cout, int64_t kernel, int64_t stride, int64_t pad, int64_t groups, bool bias, Rng& rng,
         double init_std);
  Tensor forward(const Tensor& x) const;

 private:
  Tensor weight_, bias_;
  int64_t stride_, pad_, groups_;
};

class BatchNorm : public Module {  // BatchNorm1d and BatchNorm2d (by input rank)
 public:
  explicit BatchNorm(int64_t channels, double eps = 1e-5, double momentum = 0.1, bool affine = true);
  Tensor forward(const Tensor& x) const;
  Tensor& weight() { return weight_; }

 private:
  Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
  double eps_, momentum_;
};

class PReLU : public Module {
 public:
  explicit PReLU(int64_t channels, double init = 0.25);
  Tensor forward(const Tensor& x) const;

 private:
  Tensor weight_;
};

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, Rng& rng);
  Tensor forward(const Tensor& x) const;

 private:
  Tensor weight_, bias_;
};

// Parameter initialisation shared by the layers.
Tensor init_normal(const Shape& shape, Rng& rng, double stddev);
Tensor init_uniform(const Shape& shape, Rng& rng, double bound);

}  // namespace ff
