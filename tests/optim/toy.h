// Toy parameters and losses for the optimizer tests: named tensors with known gradients.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "optim/param_groups.h"
#include "tests/engine/gradcheck.h"

namespace ff::test {

// Seeded random parameter in [lo, hi) (never containing exact zeros), requiring a gradient.
inline Tensor rand_param(const Shape& s, Rng& rng, DType dt, double lo = -1.0, double hi = 1.0, const char* name = "") {
  Tensor t = rand_uniform(s, rng, lo, hi, dt);
  t.set_name(name);
  t.set_requires_grad(true);
  return t;
}

// Two backbone tensors ("a" [5, 7], "b" [13]) and class centres ("centres" [4, 6], is_head), or
// larger ones (several 64K-element chunks) when `big`.
struct Toy {
  std::vector<ParamRef> params;
  std::vector<Tensor> coef;  // positive weights c of the losses below, one per parameter
};

inline Toy make_toy(Rng& rng, DType dt, bool big = false) {
  std::vector<Shape> shapes =
      big ? std::vector<Shape>{{300, 701}, {1001}, {97, 1024}} : std::vector<Shape>{{5, 7}, {13}, {4, 6}};
  const char* names[] = {"a", "b", "centres"};
  Toy t;
  for (int i = 0; i < 3; ++i) {
    t.params.push_back({names[i], rand_param(shapes[i], rng, dt), i == 2, false});
    t.coef.push_back(rand_uniform(shapes[i], rng, 0.5, 2.0, dt));
  }
  return t;
}

// L = Σ c·w² over every parameter: ∂L/∂w = 2·c·w.
inline Tensor quadratic_loss(const Toy& t) {
  Tensor L;
  for (size_t i = 0; i < t.params.size(); ++i) {
    Tensor term = sum(mul(t.coef[i], square(t.params[i].param)));
    L = L.defined() ? add(L, term) : term;
  }
  return L;
}

// L = Σ c·w³: ∂L/∂w = 3·c·w², so the gradient at w + ε differs from the one at w.
inline Tensor cubic_loss(const Toy& t) {
  Tensor L;
  for (size_t i = 0; i < t.params.size(); ++i) {
    const Tensor& w = t.params[i].param;
    Tensor term = sum(mul(t.coef[i], mul(w, square(w))));
    L = L.defined() ? add(L, term) : term;
  }
  return L;
}

inline std::vector<Tensor> snapshot(const std::vector<ParamRef>& ps) {
  std::vector<Tensor> out;
  for (const ParamRef& p : ps) out.push_back(p.param.detach().clone());
  return out;
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

inline void expect_bitwise(const std::vector<ParamRef>& ps, const std::vector<Tensor>& before,
                           const std::string& what) {
  ASSERT_EQ(ps.size(), before.size());
  for (size_t i = 0; i < ps.size(); ++i)
    EXPECT_TRUE(bitwise_equal(ps[i].param, before[i])) << what << ": parameter '" << ps[i].name << "' changed";
}

}  // namespace ff::test
