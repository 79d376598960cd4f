// Learning-rate schedules as closed-form functions of the step.
#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/error.h"

namespace ff {

void validate(const ScheduleConfig& c) {
  const char* k = schedule_kind_name(c.kind);
  FF_CHECK(std::isfinite(c.base_lr) && c.base_lr >= 0, "schedule ", k, ": base_lr ", c.base_lr, " must be >= 0");
  FF_CHECK(c.warmup_steps >= 0, "schedule ", k, ": warmup_steps ", c.warmup_steps, " < 0");
  if (c.kind == ScheduleKind::Poly || c.kind == ScheduleKind::Cosine)
    FF_CHECK(c.total_steps > c.warmup_steps, "schedule ", k, ": total_steps ", c.total_steps,
             " must exceed warmup_steps ", c.warmup_steps);
  if (c.kind == ScheduleKind::Poly)
    FF_CHECK(std::isfinite(c.power) && c.power > 0, "schedule poly: power ", c.power, " must be > 0");
  if (c.kind == ScheduleKind::Cosine)
    FF_CHECK(std::isfinite(c.min_lr) && c.min_lr >= 0 && c.min_lr <= c.base_lr, "schedule cosine: min_lr ", c.min_lr,
             " must be in [0, base_lr ", c.base_lr, "]");
  if (c.kind == ScheduleKind::MultiStep) {
    FF_CHECK(std::isfinite(c.gamma) && c.gamma > 0, "schedule multistep: gamma ", c.gamma, " must be > 0");
    for (size_t i = 0; i < c.milestones.size(); ++i)
      FF_CHECK(c.milestones[i] >= 0 && (i == 0 || c.milestones[i] > c.milestones[i - 1]),
               "schedule multistep: milestones must be increasing and >= 0 (milestone ", i, " = ", c.milestones[i],
               ")");
  }
}

double lr_at(const ScheduleConfig& c, int64_t step) {
  validate(c);
  FF_CHECK(step >= 0, "lr_at: step ", step, " < 0");
  if (step < c.warmup_steps) return c.base_lr * (double)step / (double)c.warmup_steps;
  auto progress = [&] {
    return std::clamp((double)(step - c.warmup_steps) / (double)(c.total_steps - c.warmup_steps), 0.0, 1.0);
  };
  switch (c.kind) {
    case ScheduleKind::Poly:
      return c.base_lr * std::pow(1.0 - progress(), c.power);
    case ScheduleKind::Cosine:
      return c.min_lr + (c.base_lr - c.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress()));
    case ScheduleKind::MultiStep: {
      auto reached = std::upper_bound(c.milestones.begin(), c.milestones.end(), step) - c.milestones.begin();
      return c.base_lr * std::pow(c.gamma, (double)reached);
    }
  }
  throw Error("lr_at: unknown schedule kind");
}

ScheduleKind parse_schedule_kind(const std::string& s) {
  if (s == "poly") return ScheduleKind::Poly;
  if (s == "cosine") return ScheduleKind::Cosine;
  if (s == "multistep") return ScheduleKind::MultiStep;
  throw Error(msg("unknown lr schedule '", s, "' (expected poly, cosine or multistep)"));
}

const char* schedule_kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::Poly:
      return "poly";
    case ScheduleKind::Cosine:
      return "cosine";
    case ScheduleKind::MultiStep:
      return "multistep";
  }
  return "?";
}

}  // namespace ff
