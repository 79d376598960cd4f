// Named trainable tensors and the groups an optimizer updates with per-group options.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace ff {

// One trainable tensor as the model hands it to the optimizer.
struct ParamRef {
  std::string name;              // unique; the checkpoint key of its optimizer state
  Tensor param;                  // a leaf that requires a gradient
  bool is_head = false;          // class centres: perturbed only when perturb.head is on
  bool no_weight_decay = false;  // BatchNorm and PReLU tensors (see GroupingOptions)
};

// Tensors sharing options. The learning rate of the group is the scheduled rate times lr_mult.
struct ParamGroup {
  std::string name;
  std::vector<ParamRef> params;
  double lr_mult = 1.0;
  double weight_decay = 0.0;
};

struct GroupingOptions {
  double weight_decay = 5e-4;
  // Off by default, as in the common face-recognition recipe: BN and PReLU tensors decay too.
  bool no_decay_on_flagged = false;
  double head_lr_mult = 1.0;
  std::optional<double> head_weight_decay;  // unset: the backbone's weight_decay
};

// Splits params, keeping their order, into the groups "backbone", "backbone_no_decay" (only with
// no_decay_on_flagged) and "head"; empty groups are left out.
std::vector<ParamGroup> make_param_groups(const std::vector<ParamRef>& params, const GroupingOptions& opt);

}  // namespace ff
