// The SAM-family perturbation of FLATFACE.md: configuration (method presets and every option),
// and the perturb / restore of the parameters around the update pass.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "optim/param_groups.h"

namespace ff {

// The training methods compared in FLATFACE.md; each is a preset of PerturbConfig.
enum class Method { Sgd, Sam, Asam, Aace, FlatFace };
// Loss whose gradient defines the perturbation direction.
enum class PerturbLoss { Margin, Aace };
// Sign of ε: by the perturbation loss (+ for margin, − for AACE), or forced.
enum class SignRule { ByLoss, Plus, Minus };

struct PerturbConfig {
  Method method = Method::FlatFace;
  double rho = 0.05;                       // radius ρ [choice: 0.05 for normalised SAM]
  bool adaptive = false;                   // ASAM: ε = ρ·T²g / (‖Tg‖ + 1e-12), T = |w|
  bool normalize = true;                   // false: ε = ρ·(T²)g, no division by the norm (AACE)
  PerturbLoss loss = PerturbLoss::Margin;  // loss of the gradient pass
  bool head = true;                        // perturb the class centres too (FlatFace); false = backbone only
  SignRule sign = SignRule::ByLoss;
  // Multi-GPU [choice]: all-reduce the gradient-pass backbone gradients before computing ε.
  // Read by the distributed trainer (the step driver here runs on one process).
  bool sync = true;

  // The defaults of FLATFACE.md for each method:
  //   sgd: no perturbation.  sam: ρ 0.05, normalised, backbone only.  asam: sam + adaptive,
  //   ρ 0.5 [choice: the ASAM authors' default].  aace: AACE loss, unnormalised, ρ 0.2, backbone
  //   only, sign −.  flatface: ρ 0.05, normalised, backbone + class centres, margin loss.
  static PerturbConfig preset(Method m);
  // +1 or −1 after the sign rule.
  double sign_value() const;
  bool perturbs() const { return method != Method::Sgd; }
};

// Throws ff::Error naming the field when the configuration makes no sense.
void validate(const PerturbConfig& c);

Method parse_method(const std::string& s);             // sgd | sam | asam | aace | flatface
PerturbLoss parse_perturb_loss(const std::string& s);  // margin | aace
SignRule parse_sign_rule(const std::string& s);        // by_loss | plus | minus
const char* method_name(Method m);
const char* perturb_loss_name(PerturbLoss l);
const char* sign_rule_name(SignRule s);

// Perturbs and restores a fixed list of parameters (an optimizer's params(), in its order).
// Holds one saved copy per perturbable tensor, allocated once. A tensor is perturbed in a step
// when the configuration covers it (backbone always, class centres when `head`) and the
// gradient pass gave it a gradient.
class Perturbation {
 public:
  Perturbation(std::vector<ParamRef> params, const PerturbConfig& cfg);
  Perturbation(const Perturbation&) = delete;
  Perturbation& operator=(const Perturbation&) = delete;

  const PerturbConfig& config() const { return cfg_; }
  // Whether the configuration covers parameter k (whatever its gradient).
  bool covers(size_t k) const { return saved_[k].defined(); }
  // Names of the tensors a step would perturb now (covered and with a gradient).
  std::vector<std::string> perturbed_names() const;

  // Σ (s·g)² over the tensors a step would perturb, s = |w| when adaptive, else 1; in double, in a
  // fixed order. This rank's share only: a communicator sums it over ranks before the sqrt.
  double local_sq_norm() const;
  // Saves each perturbed tensor and adds ε = sign·ρ·s²·g / (norm + 1e-12) (or sign·ρ·s²·g when not
  // normalised), norm being the global ‖s·g‖. Throws if already applied.
  void apply(double norm);
  bool applied() const { return applied_; }
  // Copies the saved values back, bit for bit; nothing when not applied.
  void restore();
  // One entry per parameter: the saved unperturbed copy where applied, undefined elsewhere.
  // Hand it to Optimizer::step to restore and update in one pass, then call restored().
  std::span<const Tensor> saved_for_step() const { return step_saved_; }
  // Records that the fused optimizer step wrote the weights back.
  void restored();

 private:
  template <class T>
  struct Lists;
  template <class T>
  Lists<T> lists() const;  // the tensors a step would perturb now, of dtype T
  void check_grads() const;

  PerturbConfig cfg_;
  std::vector<ParamRef> params_;
  std::vector<Tensor> saved_;       // allocated for covered parameters, undefined elsewhere
  std::vector<Tensor> step_saved_;  // saved_ where applied in this step
  bool applied_ = false;
};

}  // namespace ff
