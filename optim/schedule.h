// Learning-rate schedules stepped every iteration: pure functions of the step index, so a resumed
// run continues with exactly the rates of an uninterrupted one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ff {

enum class ScheduleKind { Poly, Cosine, MultiStep };

struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::Poly;
  double base_lr = 0.1;
  int64_t total_steps = 0;          // Poly and Cosine reach their end value here
  int64_t warmup_steps = 0;         // linear warm-up from 0 over the first warmup_steps steps (all kinds)
  double power = 1.0;               // Poly
  double min_lr = 0.0;              // Cosine: the end value
  std::vector<int64_t> milestones;  // MultiStep: increasing step indices
  double gamma = 0.1;               // MultiStep: factor applied at each milestone reached
};

// Throws ff::Error naming the field when the configuration makes no sense.
void validate(const ScheduleConfig& c);

// Rate of the update at step s (0-based count of completed steps), with W = warmup_steps,
// T = total_steps, u = (s − W) / (T − W) clamped to [0, 1]:
//   s < W:      base · s / W   (as insightface's PolyScheduler: the first step has rate 0)
//   Poly:       base · (1 − u)^power           (0 from s = T on)
//   Cosine:     min + (base − min) · (1 + cos(π u)) / 2
//   MultiStep:  base · gamma^(number of milestones ≤ s)
double lr_at(const ScheduleConfig& c, int64_t step);

ScheduleKind parse_schedule_kind(const std::string& s);  // "poly" | "cosine" | "multistep"
const char* schedule_kind_name(ScheduleKind k);

}  // namespace ff
