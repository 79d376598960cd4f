// Finite-difference gradient checks in f64, shared by every op test.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "engine/ops.h"

namespace ff::test {

// Seed for a test: FLATFACE_TEST_SEED overrides; printed so a failure can be replayed.
inline uint64_t test_seed(uint64_t fallback) {
  const char* env = std::getenv("FLATFACE_TEST_SEED");
  uint64_t s = env ? std::strtoull(env, nullptr, 10) : fallback;
  return s;
}

// Random f64 input with gradient on; values in [-1, 1] shifted away from kinks where asked.
inline Tensor rand_input(const Shape& s, Rng& rng, double lo = -1.0, double hi = 1.0) {
  Tensor t = rand_uniform(s, rng, lo, hi, DType::F64);
  t.set_requires_grad(true);
  return t;
}

struct GradCheckResult {
  double worst_ratio = 0;  // worst |analytic - numeric| / tolerance; < 1 passes
  std::string worst_where;
};

// Checks d(sum(f(inputs) * w))/d(input) for every input that requires a gradient, w a fixed
// random weighting (so every output element matters), against central differences.
// Tolerance per element: atol + rtol * |numeric|.
inline GradCheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                 std::vector<Tensor> inputs, uint64_t seed, double eps = 1e-6,
                                 double atol = 1e-6, double rtol = 1e-4) {
  Rng rng(seed ^ 0x5eedULL);
  Tensor out0 = f(inputs);
  Tensor w = rand_uniform(out0.shape(), rng, 0.5, 1.5, DType::F64);
  auto objective = [&](const std::vector<Tensor>& in) {
    NoGradGuard ng;
    Tensor o = f(in);
    double s = 0;
    for (int64_t i = 0; i < o.numel(); ++i) s += o.item(i) * w.item(i);
    return s;
  };
  for (auto& t : inputs)
    if (t.requires_grad()) t.zero_grad();
  Tensor o = f(inputs);
  sum(mul(o, w)).backward();
  GradCheckResult r;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& t = inputs[k];
    if (!t.requires_grad()) continue;
    Tensor g = t.grad();
    if (!g.defined()) g = Tensor::zeros(t.shape(), DType::F64);
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      double keep = p[i];
      p[i] = keep + eps;
      double up = objective(inputs);
      p[i] = keep - eps;
      double down = objective(inputs);
      p[i] = keep;
      double numeric = (up - down) / (2 * eps);
      double analytic = g.item(i);
      double ratio = std::fabs(analytic - numeric) / (atol + rtol * std::fabs(numeric));
      if (ratio > r.worst_ratio) {
        r.worst_ratio = ratio;
        r.worst_where = "input " + std::to_string(k) + " element " + std::to_string(i) + ": analytic " +
                        std::to_string(analytic) + " numeric " + std::to_string(numeric);
      }
    }
  }
  return r;
}

// gtest-friendly check: prints the seed and the worst error as a fraction of the tolerance.
inline void expect_gradcheck(const std::string& label, const std::function<Tensor(const std::vector<Tensor>&)>& f,
                             std::vector<Tensor> inputs, uint64_t seed, double eps = 1e-6, double atol = 1e-6,
                             double rtol = 1e-4) {
  GradCheckResult r = gradcheck(f, std::move(inputs), seed, eps, atol, rtol);
  std::printf("[gradcheck] %-48s seed %llu worst %.3f of tolerance\n", label.c_str(), (unsigned long long)seed,
              r.worst_ratio);
  EXPECT_LT(r.worst_ratio, 1.0) << label << " seed " << seed << " worst at " << r.worst_where;
}

}  // namespace ff::test
