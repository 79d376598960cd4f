// The FlatFace / SAM-family step driver.
#include "optim/flatface_step.h"

#include <cmath>

namespace ff {

namespace {

// Restores the perturbed weights when the update pass does not complete (exception, bad loss).
class RestoreOnExit {
 public:
  explicit RestoreOnExit(Perturbation& p) : p_(p) {}
  ~RestoreOnExit() { p_.restore(); }
  RestoreOnExit(const RestoreOnExit&) = delete;
  RestoreOnExit& operator=(const RestoreOnExit&) = delete;

 private:
  Perturbation& p_;
};

void check_loss(double loss, int64_t step, const char* pass, const char* weights) {
  FF_CHECK(std::isfinite(loss), "non-finite loss (", loss, ") at step ", step, " in the ", pass, "; weights ", weights);
}

}  // namespace

FlatFaceStep::FlatFaceStep(Optimizer& opt, const PerturbConfig& cfg) : opt_(opt), pert_(opt.params(), cfg) {}

void FlatFaceStep::zero_grads() {
  for (const ParamRef& p : opt_.params()) {
    Tensor t = p.param;
    t.zero_grad();
  }
}

StepResult FlatFaceStep::step(int64_t step, double lr, const LossAndBackward& loss_and_backward) {
  const PerturbConfig& cfg = pert_.config();
  StepResult r;
  zero_grads();
  r.perturb_loss = loss_and_backward(PassInfo{Pass::Gradient, cfg.loss, true});
  check_loss(r.perturb_loss, step, "gradient pass", "left unchanged");
  if (!cfg.perturbs()) {
    r.loss = r.perturb_loss;
    opt_.step(lr);
    return r;
  }
  double sq = pert_.local_sq_norm();
  if (reduce_) sq = reduce_(sq);
  r.grad_norm = std::sqrt(sq);
  FF_CHECK(std::isfinite(r.grad_norm), "non-finite gradient norm (", r.grad_norm, ") at step ", step,
           " in the gradient pass; weights left unchanged");
  pert_.apply(r.grad_norm);
  RestoreOnExit guard(pert_);  // a no-op once the fused step below has restored the weights
  zero_grads();
  r.loss = loss_and_backward(PassInfo{Pass::Update, PerturbLoss::Margin, false});
  check_loss(r.loss, step, "update pass", "restored to their values before the step");
  opt_.step(lr, pert_.saved_for_step());
  pert_.restored();
  r.perturbed = true;
  return r;
}

}  // namespace ff
