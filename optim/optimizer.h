// Base optimizers, SGD and AdamW with the semantics of torch.optim.SGD / torch.optim.AdamW,
// updating raw parameter data (no autograd), optionally fused with the restore of perturbed weights.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "optim/param_groups.h"

namespace ff {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using NamedScalars = std::vector<std::pair<std::string, double>>;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual const char* kind() const = 0;  // "sgd", "adamw"
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // Every parameter, group after group: the index space of step()'s restore_from.
  const std::vector<ParamRef>& params() const { return params_; }

  // One update at the scheduled rate `lr` (a group uses lr · lr_mult) from each parameter's
  // .grad. A parameter without a gradient is left alone and its state untouched, as in PyTorch.
  void step(double lr) { step(lr, {}); }
  // The same update fused with a restore: where restore_from[k] is defined (k indexes params()),
  // parameter k's old value is read from it (the saved unperturbed copy), never from the
  // parameter. A restored parameter without a gradient is copied back unchanged.
  // restore_from is empty or has one entry per parameter.
  void step(double lr, std::span<const Tensor> restore_from);

  // Completed step() calls.
  int64_t steps() const { return steps_; }

  // The state a checkpoint saves, named "<param>.<kind>" (tensors, sharing storage with the live
  // state) and "steps", "<param>.step" (scalars). Every parameter's state exists from construction
  // (zeros), so the names do not depend on how many steps ran.
  NamedTensors state_tensors() const;
  NamedScalars state_scalars() const;
  // Restores what state_tensors()/state_scalars() returned, exactly. Throws ff::Error, changing
  // nothing, on a missing, unknown or duplicate name, or a shape or dtype that does not match.
  void load_state(const NamedTensors& tensors, const NamedScalars& scalars);

 protected:
  // state_kinds: names of the per-parameter state tensors (each shaped like its parameter).
  Optimizer(std::vector<ParamGroup> groups, std::vector<std::string> state_kinds);

  // What update() gets: parameters of one group and one dtype, each with a gradient.
  struct Batch {
    const ParamGroup* group;
    double lr;                  // scheduled rate times the group's lr_mult
    std::vector<size_t> index;  // into params()
  };
  // Updates the parameters of `b`; their step counts already include this step.
  virtual void update(const Batch& b, std::span<const Tensor> restore_from) = 0;

  // Pointer lists of a batch, in the multi-tensor layout of the kernels.
  template <class T>
  struct Lists {
    std::vector<T*> param;
    std::vector<const T*> saved;  // null where not restored
    std::vector<const T*> grad;
    std::vector<int64_t> numel;
    std::vector<int64_t> step;
  };
  template <class T>
  Lists<T> lists(const Batch& b, std::span<const Tensor> restore_from) const;
  template <class T>
  std::vector<T*> state_list(const Batch& b, size_t kind) const;

 private:
  std::vector<ParamGroup> groups_;
  std::vector<ParamRef> params_;
  std::vector<std::string> state_kinds_;
  std::vector<std::vector<Tensor>> state_;  // [param][kind]
  std::vector<int64_t> param_steps_;        // updates each parameter received
  int64_t steps_ = 0;
};

struct SgdOptions {
  double momentum = 0.9;
  double dampening = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening 0, as in PyTorch
};

// torch.optim.SGD: weight decay added to the gradient; the first step sets the momentum buffer
// to the gradient (no dampening); param -= lr · (buf, or grad + momentum · buf with nesterov).
class Sgd final : public Optimizer {
 public:
  Sgd(std::vector<ParamGroup> groups, const SgdOptions& opt);
  const char* kind() const override { return "sgd"; }
  const SgdOptions& options() const { return opt_; }

 private:
  void update(const Batch& b, std::span<const Tensor> restore_from) override;
  SgdOptions opt_;
};

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

// torch.optim.AdamW (amsgrad off): decoupled weight decay w *= 1 − lr·wd, bias-corrected moments.
class AdamW final : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& opt);
  const char* kind() const override { return "adamw"; }
  const AdamWOptions& options() const { return opt_; }

 private:
  void update(const Batch& b, std::span<const Tensor> restore_from) override;
  AdamWOptions opt_;
};

}  // namespace ff
