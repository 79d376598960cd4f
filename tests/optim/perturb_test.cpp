// The perturbation ε of each method against its formula, which tensors it covers, the norm
// kernel's determinism, and the fused restore + optimizer update against the separate passes.
#include "kernels/cpu/perturb.h"

#include <omp.h>

#include <cmath>

#include "optim/optimizer.h"
#include "optim/perturb.h"
#include "tests/optim/toy.h"

namespace ff::test {
namespace {

void backward_quadratic(const Toy& t) {
  for (const ParamRef& p : t.params) {
    Tensor w = p.param;
    w.zero_grad();
  }
  quadratic_loss(t).backward();
}

struct EpsCase {
  const char* label;
  PerturbConfig cfg;
  // What FLATFACE.md says, written out here rather than read back from the code.
  double sign;
  bool head;
  bool adaptive;
  bool normalize;
  double rho;
};

void PrintTo(const EpsCase& c, std::ostream* os) { *os << c.label; }

class EpsMatchesFormula : public ::testing::TestWithParam<EpsCase> {};

PerturbConfig with_loss(PerturbConfig c, PerturbLoss l) {
  c.loss = l;
  return c;
}
PerturbConfig custom(PerturbLoss loss, SignRule sign, bool adaptive, bool normalize, bool head) {
  PerturbConfig c;
  c.rho = 0.3;
  c.loss = loss;
  c.sign = sign;
  c.adaptive = adaptive;
  c.normalize = normalize;
  c.head = head;
  return c;
}

TEST_P(EpsMatchesFormula, OnQuadraticLoss) {
  const EpsCase& c = GetParam();
  for (DType dt : {DType::F64, DType::F32}) {
    uint64_t seed = test_seed(500);
    SCOPED_TRACE(msg(c.label, " seed ", seed, " ", dtype_name(dt)));
    Rng rng(seed);
    Toy t = make_toy(rng, dt);
    std::vector<Tensor> before = snapshot(t.params);
    backward_quadratic(t);
    Perturbation pert(t.params, c.cfg);
    double sq = pert.local_sq_norm();
    pert.apply(std::sqrt(sq));
    // Reference: g = 2·c·w, s = |w| (adaptive) or 1, over exactly the covered tensors.
    double sq_ref = 0;
    for (size_t k = 0; k < t.params.size(); ++k) {
      if (t.params[k].is_head && !c.head) continue;
      for (int64_t i = 0; i < before[k].numel(); ++i) {
        double w = before[k].item(i), g = 2 * t.coef[k].item(i) * w, s = c.adaptive ? std::fabs(w) : 1.0;
        sq_ref += s * g * s * g;
      }
    }
    EXPECT_NEAR(sq, sq_ref, 1e-6 * sq_ref);
    double scale = c.sign * c.rho / (c.normalize ? std::sqrt(sq_ref) : 1.0);
    double eps_sq = 0;
    for (size_t k = 0; k < t.params.size(); ++k) {
      const Tensor& w1 = t.params[k].param;
      if (t.params[k].is_head && !c.head) {
        EXPECT_TRUE(bitwise_equal(w1, before[k])) << "class centres must not move with head off";
        continue;
      }
      for (int64_t i = 0; i < w1.numel(); ++i) {
        double w = before[k].item(i), g = 2 * t.coef[k].item(i) * w, s2 = c.adaptive ? w * w : 1.0;
        double eps = scale * s2 * g, got = w1.item(i) - w;
        eps_sq += got * got;
        ASSERT_NEAR(got, eps, dt == DType::F64 ? 1e-12 * (1 + std::fabs(eps)) : 2e-7)
            << t.params[k].name << "[" << i << "]";
      }
    }
    if (c.normalize && !c.adaptive) {
      EXPECT_NEAR(std::sqrt(eps_sq), c.rho, 1e-5 * c.rho) << "‖ε‖ must equal ρ";
    }
    pert.restore();
    expect_bitwise(t.params, before, "restore");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Methods, EpsMatchesFormula,
    ::testing::Values(EpsCase{"sam", PerturbConfig::preset(Method::Sam), +1, false, false, true, 0.05},
                      EpsCase{"flatface", PerturbConfig::preset(Method::FlatFace), +1, true, false, true, 0.05},
                      EpsCase{"asam", PerturbConfig::preset(Method::Asam), +1, false, true, true, 0.5},
                      EpsCase{"aace", PerturbConfig::preset(Method::Aace), -1, false, false, false, 0.2},
                      EpsCase{"flatface_aace", with_loss(PerturbConfig::preset(Method::FlatFace), PerturbLoss::Aace),
                              -1, true, false, true, 0.05},
                      EpsCase{"aace_forced_plus", custom(PerturbLoss::Aace, SignRule::Plus, false, false, true), +1,
                              true, false, false, 0.3},
                      EpsCase{"margin_forced_minus_adaptive_unnormalised",
                              custom(PerturbLoss::Margin, SignRule::Minus, true, false, false), -1, false, true, false,
                              0.3}),
    [](const auto& info) { return std::string(info.param.label); });

TEST(Perturbation, SkipsTensorsWithoutGradient) {
  uint64_t seed = test_seed(510);
  SCOPED_TRACE(msg("seed ", seed));
  Rng rng(seed);
  Toy t = make_toy(rng, DType::F64);
  std::vector<Tensor> before = snapshot(t.params);
  // The loss ignores "b": it gets no gradient, is not perturbed and is not in the norm.
  sum(add(sum(mul(t.coef[0], square(t.params[0].param))), sum(mul(t.coef[2], square(t.params[2].param))))).backward();
  Perturbation pert(t.params, PerturbConfig::preset(Method::FlatFace));
  EXPECT_EQ(pert.perturbed_names(), (std::vector<std::string>{"a", "centres"}));
  double sq_ref = 0;
  for (size_t k : {0, 2})
    for (int64_t i = 0; i < before[k].numel(); ++i) sq_ref += std::pow(2 * t.coef[k].item(i) * before[k].item(i), 2);
  double sq = pert.local_sq_norm();
  EXPECT_NEAR(sq, sq_ref, 1e-12 * sq_ref);
  pert.apply(std::sqrt(sq));
  EXPECT_TRUE(bitwise_equal(t.params[1].param, before[1]));
  EXPECT_FALSE(bitwise_equal(t.params[0].param, before[0]));
  EXPECT_TRUE(pert.saved_for_step()[0].defined());
  EXPECT_FALSE(pert.saved_for_step()[1].defined());
  EXPECT_THROW(pert.apply(1.0), Error);  // twice without restore
  pert.restore();
  expect_bitwise(t.params, before, "restore");
}

TEST(Perturbation, SgdCoversNothingAndConfigErrors) {
  Rng rng(test_seed(520));
  Toy t = make_toy(rng, DType::F32);
  Perturbation none(t.params, PerturbConfig::preset(Method::Sgd));
  for (size_t k = 0; k < t.params.size(); ++k) EXPECT_FALSE(none.covers(k));
  PerturbConfig bad = PerturbConfig::preset(Method::Sam);
  bad.rho = -1;
  EXPECT_THROW(validate(bad), Error);
  bad = PerturbConfig::preset(Method::Sgd);
  bad.loss = PerturbLoss::Aace;
  EXPECT_THROW(validate(bad), Error);
  EXPECT_EQ(parse_method("asam"), Method::Asam);
  EXPECT_EQ(parse_perturb_loss("aace"), PerturbLoss::Aace);
  EXPECT_EQ(parse_sign_rule("minus"), SignRule::Minus);
  EXPECT_THROW(parse_method("adam"), Error);
}

TEST(PerturbKernels, NormIsDeterministicAcrossThreadCounts) {
  uint64_t seed = test_seed(530);
  SCOPED_TRACE(msg("seed ", seed));
  Rng rng(seed);
  Toy t = make_toy(rng, DType::F32, /*big=*/true);
  std::vector<Tensor> g;
  std::vector<const float*> gp, wp;
  std::vector<int64_t> n;
  for (const ParamRef& p : t.params) {
    g.push_back(rand_uniform(p.param.shape(), rng, -1, 1));
    gp.push_back(g.back().data<float>());
    wp.push_back(p.param.data<float>());
    n.push_back(p.param.numel());
  }
  for (bool adaptive : {false, true}) {
    const float* const* w = adaptive ? wp.data() : nullptr;
    double ref = 0;
    for (size_t k = 0; k < g.size(); ++k)
      for (int64_t i = 0; i < n[k]; ++i) {
        double v = (double)gp[k][i] * (adaptive ? std::fabs((double)wp[k][i]) : 1.0);
        ref += v * v;
      }
    int saved_threads = omp_get_max_threads();
    omp_set_num_threads(1);
    double one = cpu::perturb_sq_norm<float>(3, gp.data(), w, n.data());
    omp_set_num_threads(3);
    double three = cpu::perturb_sq_norm<float>(3, gp.data(), w, n.data());
    omp_set_num_threads(saved_threads);
    EXPECT_EQ(one, three) << "adaptive " << adaptive;
    EXPECT_NEAR(one, ref, 1e-12 * ref) << "adaptive " << adaptive;
  }
}

// Two identical problems: one restores and updates in the fused pass, the other restores, then
// updates. Weights and optimizer state must agree bit for bit.
template <class Opt, class Options>
void check_fused(const Options& o, const char* label) {
  uint64_t seed = test_seed(540);
  SCOPED_TRACE(msg(label, " seed ", seed));
  Rng rng(seed);
  Toy t1 = make_toy(rng, DType::F32, /*big=*/true);
  Toy t2 = t1;
  for (size_t k = 0; k < t2.params.size(); ++k) {
    t2.params[k].param = t1.params[k].param.detach().clone();
    t2.params[k].param.set_requires_grad(true);
  }
  auto groups = [](const Toy& t) {
    GroupingOptions g;
    g.weight_decay = 5e-3;
    g.head_lr_mult = 2.0;
    return make_param_groups(t.params, g);
  };
  Opt opt1(groups(t1), o), opt2(groups(t2), o);
  // One plain step first, so the momentum / moment buffers are not in their first-step state.
  for (auto [t, opt] : {std::pair{&t1, &opt1}, std::pair{&t2, &opt2}}) {
    backward_quadratic(*t);
    opt->step(0.1);
  }
  Perturbation p1(opt1.params(), PerturbConfig::preset(Method::FlatFace));
  Perturbation p2(opt2.params(), PerturbConfig::preset(Method::FlatFace));
  std::vector<Tensor> unperturbed = snapshot(opt1.params());
  for (auto [t, p] : {std::pair{&t1, &p1}, std::pair{&t2, &p2}}) {
    backward_quadratic(*t);
    p->apply(std::sqrt(p->local_sq_norm()));
    for (const ParamRef& q : t->params) {
      Tensor w = q.param;
      w.zero_grad();
    }
    cubic_loss(*t).backward();
  }
  EXPECT_FALSE(bitwise_equal(opt1.params()[0].param, unperturbed[0])) << "the perturbation did nothing";
  opt1.step(0.1, p1.saved_for_step());
  p1.restored();
  p2.restore();
  opt2.step(0.1);
  for (size_t k = 0; k < opt1.params().size(); ++k)
    EXPECT_TRUE(bitwise_equal(opt1.params()[k].param, opt2.params()[k].param)) << opt1.params()[k].name;
  auto s1 = opt1.state_tensors(), s2 = opt2.state_tensors();
  for (size_t k = 0; k < s1.size(); ++k) EXPECT_TRUE(bitwise_equal(s1[k].second, s2[k].second)) << s1[k].first;
}

TEST(FusedRestoreUpdate, EqualsRestoreThenUpdateBitwise) {
  check_fused<Sgd>(SgdOptions{0.9, 0, false}, "sgd");
  check_fused<Sgd>(SgdOptions{0.9, 0, true}, "sgd nesterov");
  check_fused<AdamW>(AdamWOptions{}, "adamw");
}

}  // namespace
}  // namespace ff::test
