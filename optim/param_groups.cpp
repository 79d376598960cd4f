// Grouping of named parameters by role (backbone, exempt from decay, class centres).
#include "optim/param_groups.h"

namespace ff {

std::vector<ParamGroup> make_param_groups(const std::vector<ParamRef>& params, const GroupingOptions& opt) {
  FF_CHECK(opt.weight_decay >= 0, "make_param_groups: weight_decay ", opt.weight_decay, " < 0");
  FF_CHECK(opt.head_lr_mult >= 0, "make_param_groups: head_lr_mult ", opt.head_lr_mult, " < 0");
  ParamGroup backbone{"backbone", {}, 1.0, opt.weight_decay};
  ParamGroup no_decay{"backbone_no_decay", {}, 1.0, 0.0};
  ParamGroup head{"head", {}, opt.head_lr_mult, opt.head_weight_decay.value_or(opt.weight_decay)};
  FF_CHECK(head.weight_decay >= 0, "make_param_groups: head_weight_decay ", head.weight_decay, " < 0");
  for (const ParamRef& p : params) {
    if (p.is_head)
      head.params.push_back(p);
    else if (p.no_weight_decay && opt.no_decay_on_flagged)
      no_decay.params.push_back(p);
    else
      backbone.params.push_back(p);
  }
  std::vector<ParamGroup> groups;
  for (ParamGroup* g : {&backbone, &no_decay, &head})
    if (!g->params.empty()) groups.push_back(std::move(*g));
  return groups;
}

}  // namespace ff
