// The step driver: pass sequence, update at the perturbed point, bitwise restore, non-finite
// guards, the multi-GPU norm hook, and run-to-run determinism.
#include "optim/flatface_step.h"

#include <omp.h>

#include <cmath>
#include <memory>

#include "tests/optim/toy.h"

namespace ff::test {
namespace {

// L = Σ c·w³ with its backward; returns the loss.
LossAndBackward cubic_closure(const Toy& t) {
  return [&t](const PassInfo&) {
    Tensor L = cubic_loss(t);
    L.backward();
    return L.item();
  };
}

// ε of FLATFACE.md for L = Σ c·w³ (g = 3·c·w²) at the weights `w0`, written out per method:
// sign − for aace, class centres only for flatface, T = |w| for asam, unnormalised for aace.
struct HandEps {
  std::vector<std::vector<double>> eps;
  double norm = 0;
};
HandEps hand_eps(const Toy& t, const std::vector<Tensor>& w0, Method m, double rho) {
  const bool head = m == Method::FlatFace, adaptive = m == Method::Asam, normalize = m != Method::Aace;
  const double sign = m == Method::Aace ? -1.0 : 1.0;
  double sq = 0;
  for (size_t k = 0; k < t.params.size(); ++k)
    for (int64_t i = 0; i < w0[k].numel(); ++i) {
      double w = w0[k].item(i), g = 3 * t.coef[k].item(i) * w * w, s = adaptive ? std::fabs(w) : 1.0;
      if (!t.params[k].is_head || head) sq += s * g * s * g;
    }
  HandEps h;
  h.norm = std::sqrt(sq);
  const double scale = sign * rho / (normalize ? h.norm : 1.0);
  for (size_t k = 0; k < t.params.size(); ++k) {
    h.eps.emplace_back(w0[k].numel(), 0.0);
    if (t.params[k].is_head && !head) continue;
    for (int64_t i = 0; i < w0[k].numel(); ++i) {
      double w = w0[k].item(i);
      h.eps[k][i] = scale * (adaptive ? w * w : 1.0) * 3 * t.coef[k].item(i) * w * w;
    }
  }
  return h;
}

GroupingOptions decay(double wd) {
  GroupingOptions g;
  g.weight_decay = wd;
  return g;
}

PerturbConfig preset_with(Method m, PerturbLoss loss) {
  PerturbConfig c = PerturbConfig::preset(m);
  c.loss = loss;
  return c;
}

TEST(FlatFaceStep, PassSequenceAndWhatEachPassSees) {
  struct Case {
    PerturbConfig cfg;
    PerturbLoss first_loss;
    bool head_moves;
  };
  const Case cases[] = {{PerturbConfig::preset(Method::Sgd), PerturbLoss::Margin, false},
                        {PerturbConfig::preset(Method::Sam), PerturbLoss::Margin, false},
                        {PerturbConfig::preset(Method::Asam), PerturbLoss::Margin, false},
                        {PerturbConfig::preset(Method::Aace), PerturbLoss::Aace, false},
                        {PerturbConfig::preset(Method::FlatFace), PerturbLoss::Margin, true},
                        {preset_with(Method::FlatFace, PerturbLoss::Aace), PerturbLoss::Aace, true}};
  for (const Case& c : cases) {
    uint64_t seed = test_seed(600);
    SCOPED_TRACE(msg(method_name(c.cfg.method), " loss ", perturb_loss_name(c.cfg.loss), " seed ", seed));
    Rng rng(seed);
    Toy t = make_toy(rng, DType::F32);
    std::vector<Tensor> before = snapshot(t.params);
    Sgd opt(make_param_groups(t.params, decay(5e-4)), SgdOptions{});
    FlatFaceStep step(opt, c.cfg);
    std::vector<PassInfo> seen;
    auto closure = [&](const PassInfo& p) {
      seen.push_back(p);
      for (const ParamRef& q : t.params)
        EXPECT_FALSE(q.param.grad().defined()) << "gradients not dropped before a pass";
      if (p.pass == Pass::Gradient) {
        expect_bitwise(t.params, before, "gradient pass must see the unperturbed weights");
      } else {
        EXPECT_FALSE(bitwise_equal(t.params[0].param, before[0])) << "update pass must see perturbed weights";
        EXPECT_EQ(!bitwise_equal(t.params[2].param, before[2]), c.head_moves) << "class centres";
      }
      Tensor L = quadratic_loss(t);
      L.backward();
      return L.item();
    };
    StepResult r = step.step(0, 0.1, closure);
    bool perturbs = c.cfg.method != Method::Sgd;
    ASSERT_EQ(seen.size(), perturbs ? 2u : 1u);
    EXPECT_EQ(seen[0].pass, Pass::Gradient);
    EXPECT_EQ(seen[0].loss, c.first_loss);
    EXPECT_TRUE(seen[0].update_bn_stats);
    if (perturbs) {
      EXPECT_EQ(seen[1].pass, Pass::Update);
      EXPECT_EQ(seen[1].loss, PerturbLoss::Margin);
      EXPECT_FALSE(seen[1].update_bn_stats);
      // Ascent (+ε) raises the quadratic loss; the AACE sign (−ε) lowers it.
      if (c.first_loss == PerturbLoss::Margin) {
        EXPECT_GT(r.loss, r.perturb_loss);
      } else {
        EXPECT_LT(r.loss, r.perturb_loss);
      }
      EXPECT_GT(r.grad_norm, 0);
    } else {
      EXPECT_EQ(r.loss, r.perturb_loss);
    }
    EXPECT_EQ(r.perturbed, perturbs);
    EXPECT_EQ(opt.steps(), 1);
  }
}

// With lr 0 and no decay or momentum, the step is perturb + restore only: the weights must come
// back bit for bit, although w + ε − ε differs from w in floating point.
TEST(FlatFaceStep, RestoreIsBitwise) {
  for (Method m : {Method::Sam, Method::Asam, Method::Aace, Method::FlatFace}) {
    for (bool adam : {false, true}) {
      uint64_t seed = test_seed(610);
      SCOPED_TRACE(msg(method_name(m), adam ? " adamw" : " sgd", " seed ", seed));
      Rng rng(seed);
      Toy t = make_toy(rng, DType::F32);
      std::vector<Tensor> before = snapshot(t.params);
      auto groups = make_param_groups(t.params, decay(0.0));
      std::unique_ptr<Optimizer> opt;
      if (adam)
        opt = std::make_unique<AdamW>(groups, AdamWOptions{});
      else
        opt = std::make_unique<Sgd>(groups, SgdOptions{0.0, 0.0, false});
      PerturbConfig cfg = PerturbConfig::preset(m);
      cfg.rho *= 7;  // a large perturbation, so that subtracting it back would round
      FlatFaceStep step(*opt, cfg);
      step.step(0, 0.0, [&](const PassInfo&) {
        Tensor L = cubic_loss(t);
        L.backward();
        return L.item();
      });
      HandEps h = hand_eps(t, before, m, cfg.rho);
      int inexact = 0;
      for (size_t k = 0; k < t.params.size(); ++k)
        for (int64_t i = 0; i < before[k].numel(); ++i) {
          volatile float w = before[k].data<float>()[i], e = (float)h.eps[k][i];
          volatile float wp = w + e;
          volatile float back = wp - e;
          inexact += back != w;
        }
      EXPECT_GT(inexact, 0) << "the test needs a perturbation that subtraction cannot undo exactly";
      expect_bitwise(t.params, before, "after a step with lr 0");
    }
  }
}

// The update uses the gradient at w + ε: checked against ε, g(w + ε) and the optimizer rule
// computed by hand for L = Σ c·w³ (g = 3·c·w²).
TEST(FlatFaceStep, UpdateUsesGradientAtPerturbedPoint) {
  for (Method m : {Method::Sam, Method::Asam, Method::Aace, Method::FlatFace}) {
    for (bool adam : {false, true}) {
      uint64_t seed = test_seed(620);
      SCOPED_TRACE(msg(method_name(m), adam ? " adamw" : " sgd", " seed ", seed));
      Rng rng(seed);
      Toy t = make_toy(rng, DType::F64);
      std::vector<Tensor> before = snapshot(t.params);
      const double wd = 5e-4, lr = 0.1, rho = 0.2;
      auto groups = make_param_groups(t.params, decay(wd));
      std::unique_ptr<Optimizer> opt;
      if (adam)
        opt = std::make_unique<AdamW>(groups, AdamWOptions{0.9, 0.999, 1e-8});
      else
        opt = std::make_unique<Sgd>(groups, SgdOptions{0.9, 0.0, false});
      PerturbConfig cfg = PerturbConfig::preset(m);
      cfg.rho = rho;
      FlatFaceStep step(*opt, cfg);
      StepResult r = step.step(3, lr, cubic_closure(t));

      HandEps h = hand_eps(t, before, m, rho);
      double loss0 = 0, loss1 = 0;
      for (size_t k = 0; k < t.params.size(); ++k) {
        for (int64_t i = 0; i < before[k].numel(); ++i) {
          double w = before[k].item(i), c = t.coef[k].item(i);
          double wp = w + h.eps[k][i], g1 = 3 * c * wp * wp;
          loss0 += c * w * w * w;
          loss1 += c * wp * wp * wp;
          // First step: SGD sets the buffer to g + wd·w; AdamW's bias-corrected moments are g and g².
          double want = adam ? w * (1 - lr * wd) - lr * g1 / (std::fabs(g1) + 1e-8) : w - lr * (g1 + wd * w);
          ASSERT_NEAR(t.params[k].param.item(i), want, 1e-12) << t.params[k].name << "[" << i << "]";
        }
      }
      EXPECT_NEAR(r.perturb_loss, loss0, 1e-12 * (1 + std::fabs(loss0)));
      EXPECT_NEAR(r.loss, loss1, 1e-12 * (1 + std::fabs(loss1)));
      EXPECT_NEAR(r.grad_norm, h.norm, 1e-12 * h.norm);
    }
  }
}

TEST(FlatFaceStep, SgdMethodIsOnePlainStep) {
  uint64_t seed = test_seed(630);
  SCOPED_TRACE(msg("seed ", seed));
  Rng rng(seed);
  Toy t = make_toy(rng, DType::F64);
  std::vector<Tensor> before = snapshot(t.params);
  Sgd opt(make_param_groups(t.params, decay(5e-4)), SgdOptions{});
  FlatFaceStep step(opt, PerturbConfig::preset(Method::Sgd));
  int passes = 0;
  auto closure = cubic_closure(t);
  step.step(0, 0.05, [&](const PassInfo& p) {
    ++passes;
    return closure(p);
  });
  EXPECT_EQ(passes, 1);
  for (size_t k = 0; k < t.params.size(); ++k)
    for (int64_t i = 0; i < before[k].numel(); ++i) {
      double w = before[k].item(i), g = 3 * t.coef[k].item(i) * w * w;
      ASSERT_NEAR(t.params[k].param.item(i), w - 0.05 * (g + 5e-4 * w), 1e-14);
    }
}

// Each failure must name the step and the pass and leave weights and optimizer state as before.
TEST(FlatFaceStep, NonFiniteGuardsLeaveWeightsUnchanged) {
  struct Case {
    const char* label;
    Method method;
    Pass bad_pass;
    int kind;  // 0: NaN loss, 1: infinite gradient, 2: the closure throws
    const char* needle;
  };
  const Case cases[] = {
      {"nan loss, gradient pass", Method::FlatFace, Pass::Gradient, 0,
       "non-finite loss (nan) at step 7 in the gradient pass"},
      {"inf loss, update pass", Method::FlatFace, Pass::Update, 0, "at step 7 in the update pass"},
      {"inf gradient", Method::Sam, Pass::Gradient, 1, "non-finite gradient norm (inf) at step 7"},
      {"closure throws in the update pass", Method::Asam, Pass::Update, 2, "closure failed"},
      {"nan loss, plain sgd", Method::Sgd, Pass::Gradient, 0, "non-finite loss (nan) at step 7 in the gradient pass"},
  };
  for (const Case& c : cases) {
    uint64_t seed = test_seed(640);
    SCOPED_TRACE(msg(c.label, " seed ", seed));
    Rng rng(seed);
    Toy t = make_toy(rng, DType::F32);
    Sgd opt(make_param_groups(t.params, decay(5e-4)), SgdOptions{});
    FlatFaceStep step(opt, PerturbConfig::preset(c.method));
    step.step(6, 0.1, cubic_closure(t));  // a good step first: momentum buffers are live
    std::vector<Tensor> before = snapshot(t.params);
    NamedTensors state_before;
    for (auto& [n, s] : opt.state_tensors()) state_before.emplace_back(n, s.clone());
    auto closure = [&](const PassInfo& p) {
      Tensor L = cubic_loss(t);
      L.backward();
      double v = L.item();
      if (p.pass != c.bad_pass) return v;
      if (c.kind == 1) {
        t.params[1].param.grad().data<float>()[3] = INFINITY;
        return v;
      }
      if (c.kind == 2) throw Error("closure failed");
      return p.pass == Pass::Gradient ? (double)NAN : (double)INFINITY;
    };
    try {
      step.step(7, 0.1, closure);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.needle), std::string::npos) << e.what();
    }
    expect_bitwise(t.params, before, "after a failed step");
    EXPECT_EQ(opt.steps(), 1);
    auto state = opt.state_tensors();
    for (size_t k = 0; k < state.size(); ++k) EXPECT_TRUE(bitwise_equal(state[k].second, state_before[k].second));
    EXPECT_FALSE(step.perturbation().applied());
    // The driver recovers: the next good step runs.
    EXPECT_NO_THROW(step.step(8, 0.1, cubic_closure(t)));
  }
}

// Multi-GPU hook: the reducer receives this rank's squared norm; ε uses what it returns.
TEST(FlatFaceStep, NormReducerHook) {
  uint64_t seed = test_seed(650);
  SCOPED_TRACE(msg("seed ", seed));
  Rng rng(seed);
  Toy t = make_toy(rng, DType::F64);
  std::vector<Tensor> before = snapshot(t.params);
  Sgd opt(make_param_groups(t.params, decay(0.0)), SgdOptions{0.0, 0.0, false});
  FlatFaceStep step(opt, PerturbConfig::preset(Method::FlatFace));
  double local = -1;
  step.set_sq_norm_reducer([&](double sq) {
    local = sq;
    return 4 * sq;  // four ranks with the same gradient: the global norm doubles
  });
  double sq = 0;
  for (size_t k = 0; k < t.params.size(); ++k)
    for (int64_t i = 0; i < before[k].numel(); ++i)
      sq += std::pow(3 * t.coef[k].item(i) * std::pow(before[k].item(i), 2), 2);
  auto closure = cubic_closure(t);
  step.step(0, 0.0, [&](const PassInfo& p) {
    if (p.pass == Pass::Update) {
      for (size_t k = 0; k < t.params.size(); ++k)
        for (int64_t i = 0; i < before[k].numel(); ++i) {
          double w = before[k].item(i), g = 3 * t.coef[k].item(i) * w * w;
          EXPECT_NEAR(t.params[k].param.item(i) - w, 0.05 * g / (2 * std::sqrt(sq)), 1e-13);
        }
    }
    return closure(p);
  });
  EXPECT_NEAR(local, sq, 1e-12 * sq);
}

// Same inputs, different thread counts: bitwise the same weights and state after three steps.
TEST(FlatFaceStep, DeterministicAcrossRunsAndThreadCounts) {
  uint64_t seed = test_seed(660);
  SCOPED_TRACE(msg("seed ", seed));
  std::vector<std::vector<Tensor>> results;
  int saved_threads = omp_get_max_threads();
  for (int threads : {1, 3, 3}) {
    omp_set_num_threads(threads);
    Rng rng(seed);
    Toy t = make_toy(rng, DType::F32, /*big=*/true);
    Sgd opt(make_param_groups(t.params, decay(5e-4)), SgdOptions{0.9, 0.0, true});
    FlatFaceStep step(opt, PerturbConfig::preset(Method::FlatFace));
    for (int s = 0; s < 3; ++s) step.step(s, 0.05, cubic_closure(t));
    std::vector<Tensor> r = snapshot(t.params);
    for (auto& [n, x] : opt.state_tensors()) r.push_back(x.clone());
    results.push_back(r);
  }
  omp_set_num_threads(saved_threads);
  for (size_t run = 1; run < results.size(); ++run)
    for (size_t k = 0; k < results[0].size(); ++k)
      EXPECT_TRUE(bitwise_equal(results[0][k], results[run][k])) << "run " << run << " tensor " << k;
}

}  // namespace
}  // namespace ff::test
