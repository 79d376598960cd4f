// Learning-rate schedules against their formulas: warm-up boundary, end value, milestones.
#include "optim/schedule.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/error.h"

namespace ff {
namespace {

ScheduleConfig config(ScheduleKind kind, double base_lr, int64_t total_steps = 0, int64_t warmup_steps = 0) {
  ScheduleConfig c;
  c.kind = kind;
  c.base_lr = base_lr;
  c.total_steps = total_steps;
  c.warmup_steps = warmup_steps;
  return c;
}

TEST(Schedule, PolyWithWarmup) {
  ScheduleConfig c = config(ScheduleKind::Poly, 0.1, 110, 10);
  EXPECT_EQ(lr_at(c, 0), 0.0);
  EXPECT_DOUBLE_EQ(lr_at(c, 5), 0.05);
  EXPECT_DOUBLE_EQ(lr_at(c, 9), 0.09);
  EXPECT_DOUBLE_EQ(lr_at(c, 10), 0.1);   // warm-up ends at the base rate
  EXPECT_DOUBLE_EQ(lr_at(c, 60), 0.05);  // halfway through the decay, power 1
  EXPECT_NEAR(lr_at(c, 109), 0.001, 1e-16);
  EXPECT_EQ(lr_at(c, 110), 0.0);
  EXPECT_EQ(lr_at(c, 500), 0.0);
  c.power = 2;
  EXPECT_DOUBLE_EQ(lr_at(c, 60), 0.025);
  c.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(lr_at(c, 0), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(c, 55), 0.1 * 0.5 * 0.5);
}

TEST(Schedule, CosineWithWarmup) {
  ScheduleConfig c = config(ScheduleKind::Cosine, 0.4, 104, 4);
  c.min_lr = 0.01;
  EXPECT_DOUBLE_EQ(lr_at(c, 2), 0.2);
  EXPECT_DOUBLE_EQ(lr_at(c, 4), 0.4);
  EXPECT_NEAR(lr_at(c, 54), 0.205, 1e-15);  // cos(π/2) = 0: the midpoint of base and min
  EXPECT_NEAR(lr_at(c, 29), 0.01 + 0.39 * 0.5 * (1 + std::sqrt(0.5)), 1e-15);
  EXPECT_DOUBLE_EQ(lr_at(c, 104), 0.01);
  EXPECT_DOUBLE_EQ(lr_at(c, 1000), 0.01);
}

TEST(Schedule, MultiStep) {
  ScheduleConfig c = config(ScheduleKind::MultiStep, 0.1);
  c.milestones = {3, 7};
  c.gamma = 0.1;
  EXPECT_DOUBLE_EQ(lr_at(c, 0), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(c, 2), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(c, 3), 0.01);
  EXPECT_DOUBLE_EQ(lr_at(c, 6), 0.01);
  EXPECT_DOUBLE_EQ(lr_at(c, 7), 0.001);
  EXPECT_DOUBLE_EQ(lr_at(c, 10000), 0.001);
  c.warmup_steps = 2;
  EXPECT_DOUBLE_EQ(lr_at(c, 1), 0.05);
  EXPECT_DOUBLE_EQ(lr_at(c, 2), 0.1);
}

TEST(Schedule, RejectsBadConfigs) {
  EXPECT_THROW(lr_at(config(ScheduleKind::Poly, 0.1, 10, 10), 0), Error);  // no decay phase
  EXPECT_THROW(lr_at(config(ScheduleKind::Poly, -0.1, 10, 0), 0), Error);
  EXPECT_THROW(lr_at(config(ScheduleKind::Poly, 0.1, 10, 0), -1), Error);
  ScheduleConfig m = config(ScheduleKind::MultiStep, 0.1);
  m.milestones = {5, 5};
  EXPECT_THROW(lr_at(m, 0), Error);
  ScheduleConfig cos = config(ScheduleKind::Cosine, 0.1, 10);
  cos.min_lr = 0.2;
  EXPECT_THROW(lr_at(cos, 0), Error);
  EXPECT_EQ(parse_schedule_kind("cosine"), ScheduleKind::Cosine);
  EXPECT_THROW(parse_schedule_kind("linear"), Error);
}

}  // namespace
}  // namespace ff
