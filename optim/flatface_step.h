// One training step of FLATFACE.md: gradient pass, perturbation, update pass at the perturbed
// point, then restore fused with the base optimizer update. Plain SGD (method sgd) is one pass.
#pragma once

#include <cstdint>
#include <functional>

#include "optim/optimizer.h"
#include "optim/perturb.h"

namespace ff {

// Which pass of a step the loss closure runs.
enum class Pass {
  Gradient,  // at the unperturbed weights (the only pass of a plain step)
  Update,    // at the perturbed weights
};

// What the closure must do in a pass. The closure owner applies it to the model (loss choice,
// BatchNorm running-statistics update); the step itself never looks inside the model.
struct PassInfo {
  Pass pass;
  PerturbLoss loss;      // Gradient: perturb.loss (margin for sgd); Update: always margin
  bool update_bn_stats;  // Gradient: true; Update: false (batch statistics, running ones untouched)
};

// Runs forward and backward for the pass (gradients accumulate into the parameters' .grad, which
// the step has dropped beforehand) and returns the loss value.
using LossAndBackward = std::function<double(const PassInfo&)>;

struct StepResult {
  double loss = 0;          // margin loss of the update pass (of the only pass for sgd)
  double perturb_loss = 0;  // loss of the gradient pass (equal to loss for sgd)
  double grad_norm = 0;     // global ‖s·g‖ of the perturbed tensors (0 for sgd)
  bool perturbed = false;
};

class FlatFaceStep {
 public:
  // opt must outlive this object; its params() are the parameters stepped and perturbed.
  FlatFaceStep(Optimizer& opt, const PerturbConfig& cfg);

  // Multi-GPU hook: maps this rank's squared norm to the global one (an all-reduce sum).
  // Identity by default.
  void set_sq_norm_reducer(std::function<double(double)> reduce) { reduce_ = std::move(reduce); }

  // One step at learning rate lr; `step` only labels error messages. Throws ff::Error
  // ("non-finite loss ... at step N in the gradient pass", or the update pass, or a non-finite
  // gradient norm) with the weights as they were before the step; an exception from the closure
  // also leaves the weights restored.
  StepResult step(int64_t step, double lr, const LossAndBackward& loss_and_backward);

  const PerturbConfig& config() const { return pert_.config(); }
  const Perturbation& perturbation() const { return pert_; }

 private:
  void zero_grads();
  Optimizer& opt_;
  Perturbation pert_;
  std::function<double(double)> reduce_;
};

}  // namespace ff
