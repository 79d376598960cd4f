// SGD and AdamW against hand-written update rules, parameter groups, and state save / restore.
#include "optim/optimizer.h"

#include <cmath>
#include <typeinfo>

#include "tests/optim/toy.h"

namespace ff::test {
namespace {

// Hand-written torch.optim.SGD, in double, one element at a time.
struct RefSgd {
  double momentum, dampening, wd;
  bool nesterov;
  std::vector<double> w, buf;
  int steps = 0;
  void step(double lr, const std::vector<double>& g) {
    if (buf.empty()) buf.assign(w.size(), 0.0);
    for (size_t i = 0; i < w.size(); ++i) {
      double d = g[i] + wd * w[i];
      if (momentum != 0) {
        buf[i] = steps == 0 ? d : momentum * buf[i] + (1 - dampening) * d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      w[i] -= lr * d;
    }
    ++steps;
  }
};

// Hand-written AdamW (Loshchilov & Hutter, bias-corrected as in PyTorch), in double.
struct RefAdamW {
  double b1, b2, eps, wd;
  std::vector<double> w, m, v;
  int t = 0;
  void step(double lr, const std::vector<double>& g) {
    if (m.empty()) m.assign(w.size(), 0.0), v.assign(w.size(), 0.0);
    ++t;
    for (size_t i = 0; i < w.size(); ++i) {
      w[i] -= lr * wd * w[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
      w[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

void expect_close(const Tensor& got, const std::vector<double>& want, double rtol, const std::string& what) {
  ASSERT_EQ((size_t)got.numel(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got.item((int64_t)i), want[i], rtol * (1.0 + std::fabs(want[i]))) << what << " element " << i;
}

// Two groups (lr_mult and weight decay differ) and a parameter that never gets a gradient.
struct Fixture {
  std::vector<ParamGroup> groups;
  Tensor a, b, frozen;
};
Fixture make_setup(Rng& rng, DType dt) {
  Fixture s;
  s.a = rand_param({6, 5}, rng, dt);
  s.b = rand_param({9}, rng, dt);
  s.frozen = rand_param({3}, rng, dt);
  s.groups.push_back({"g0", {{"a", s.a}, {"frozen", s.frozen}}, 1.0, 5e-2});
  s.groups.push_back({"g1", {{"b", s.b, true}}, 0.5, 0.0});
  return s;
}

struct SgdCase {
  double momentum, dampening;
  bool nesterov;
  DType dtype;
};

void PrintTo(const SgdCase& c, std::ostream* os) {
  *os << "momentum " << c.momentum << " dampening " << c.dampening << (c.nesterov ? " nesterov " : " ")
      << dtype_name(c.dtype);
}

class SgdMatchesReference : public ::testing::TestWithParam<SgdCase> {};

TEST_P(SgdMatchesReference, SeveralSteps) {
  const SgdCase c = GetParam();
  uint64_t seed = test_seed(101);
  SCOPED_TRACE(msg("seed ", seed));
  Rng rng(seed);
  Fixture s = make_setup(rng, c.dtype);
  Tensor frozen0 = s.frozen.detach().clone();
  RefSgd ra{c.momentum, c.dampening, 5e-2, c.nesterov, s.a.to_vector(), {}};
  RefSgd rb{c.momentum, c.dampening, 0.0, c.nesterov, s.b.to_vector(), {}};
  Sgd opt(s.groups, SgdOptions{c.momentum, c.dampening, c.nesterov});
  const double lrs[] = {0.1, 0.05, 0.2, 0.07};
  for (double lr : lrs) {
    Tensor ga = rand_uniform(s.a.shape(), rng, -1, 1, c.dtype), gb = rand_uniform(s.b.shape(), rng, -1, 1, c.dtype);
    s.a.set_grad(ga);
    s.b.set_grad(gb);
    ra.step(lr, ga.to_vector());
    rb.step(lr * 0.5, gb.to_vector());
    opt.step(lr);
  }
  double rtol = c.dtype == DType::F64 ? 1e-13 : 2e-6;
  expect_close(s.a, ra.w, rtol, "a");
  expect_close(s.b, rb.w, rtol, "b");
  EXPECT_TRUE(bitwise_equal(s.frozen, frozen0)) << "a parameter without gradient must not move";
  EXPECT_EQ(opt.steps(), 4);
  for (const auto& [name, v] : opt.state_scalars()) {
    if (name == "frozen.step") {
      EXPECT_EQ(v, 0);
    }
    if (name == "a.step") {
      EXPECT_EQ(v, 4);
    }
  }
  if (c.momentum != 0) {
    for (const auto& [name, t] : opt.state_tensors()) {
      if (name == "a.momentum_buffer") expect_close(t, ra.buf, rtol, "momentum buffer of a");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Options, SgdMatchesReference,
                         ::testing::Values(SgdCase{0.9, 0, false, DType::F64}, SgdCase{0.9, 0, true, DType::F64},
                                           SgdCase{0.0, 0, false, DType::F64}, SgdCase{0.8, 0.3, false, DType::F64},
                                           SgdCase{0.9, 0, false, DType::F32}, SgdCase{0.9, 0, true, DType::F32}));

TEST(AdamW, MatchesReference) {
  for (DType dt : {DType::F64, DType::F32}) {
    uint64_t seed = test_seed(202);
    SCOPED_TRACE(msg("seed ", seed, " dtype ", dtype_name(dt)));
    Rng rng(seed);
    Fixture s = make_setup(rng, dt);
    Tensor frozen0 = s.frozen.detach().clone();
    AdamWOptions o{0.9, 0.99, 1e-6};
    RefAdamW ra{o.beta1, o.beta2, o.eps, 5e-2, s.a.to_vector(), {}, {}};
    RefAdamW rb{o.beta1, o.beta2, o.eps, 0.0, s.b.to_vector(), {}, {}};
    AdamW opt(s.groups, o);
    for (double lr : {1e-2, 3e-3, 2e-2}) {
      Tensor ga = rand_uniform(s.a.shape(), rng, -1, 1, dt), gb = rand_uniform(s.b.shape(), rng, -1, 1, dt);
      s.a.set_grad(ga);
      s.b.set_grad(gb);
      ra.step(lr, ga.to_vector());
      rb.step(lr * 0.5, gb.to_vector());
      opt.step(lr);
    }
    double rtol = dt == DType::F64 ? 1e-12 : 3e-6;
    expect_close(s.a, ra.w, rtol, "a");
    expect_close(s.b, rb.w, rtol, "b");
    EXPECT_TRUE(bitwise_equal(s.frozen, frozen0));
    for (const auto& [name, t] : opt.state_tensors()) {
      if (name == "a.exp_avg") expect_close(t, ra.m, rtol, name);
      if (name == "a.exp_avg_sq") expect_close(t, ra.v, rtol, name);
    }
  }
}

TEST(ParamGroups, SplitByRoleAndOption) {
  Rng rng(test_seed(7));
  std::vector<ParamRef> ps{{"conv", rand_param({2}, rng, DType::F32)},
                           {"bn.weight", rand_param({2}, rng, DType::F32), false, true},
                           {"centres", rand_param({2, 2}, rng, DType::F32), true}};
  auto g = make_param_groups(ps, GroupingOptions{});
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].name, "backbone");
  EXPECT_EQ(g[0].params.size(), 2u);  // BN decays by default, as in the common recipe
  EXPECT_EQ(g[0].weight_decay, 5e-4);
  EXPECT_EQ(g[1].name, "head");
  EXPECT_EQ(g[1].weight_decay, 5e-4);
  GroupingOptions o;
  o.no_decay_on_flagged = true;
  o.head_lr_mult = 10;
  o.head_weight_decay = 0.0;
  g = make_param_groups(ps, o);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[1].name, "backbone_no_decay");
  EXPECT_EQ(g[1].params[0].name, "bn.weight");
  EXPECT_EQ(g[1].weight_decay, 0.0);
  EXPECT_EQ(g[2].lr_mult, 10.0);
  EXPECT_EQ(g[2].weight_decay, 0.0);
}

TEST(Optimizer, RejectsBadParameterLists) {
  Rng rng(test_seed(8));
  Tensor a = rand_param({2}, rng, DType::F32);
  EXPECT_THROW(Sgd({{"g", {{"a", a}, {"a", rand_param({2}, rng, DType::F32)}}}}, SgdOptions{}), Error);
  EXPECT_THROW(Sgd({{"g", {{"a", a}, {"b", a}}}}, SgdOptions{}), Error);
  EXPECT_THROW(Sgd({{"g", {{"", a}}}}, SgdOptions{}), Error);
  EXPECT_THROW(Sgd({{"g", {{"a", a}}}}, SgdOptions{0.0, 0.0, true}), Error);  // nesterov without momentum
  Tensor no_grad = rand_uniform({2}, rng, -1, 1);
  EXPECT_THROW(Sgd({{"g", {{"x", no_grad}}}}, SgdOptions{}), Error);
  Sgd opt({{"g", {{"a", a}}}}, SgdOptions{});
  a.set_grad(rand_uniform({2}, rng, -1, 1, DType::F64));
  EXPECT_THROW(opt.step(0.1), Error);  // gradient dtype differs
  EXPECT_THROW(opt.step(-1.0), Error);
}

// Runs `steps` updates with gradients drawn from rng.
void run_steps(Optimizer& opt, const std::vector<Tensor>& ps, Rng& rng, int steps) {
  for (int k = 0; k < steps; ++k) {
    for (Tensor p : ps) p.set_grad(rand_uniform(p.shape(), rng, -1, 1, p.dtype()));
    opt.step(0.05 * (k + 1));
  }
}

template <class Opt, class Options>
void check_resume(const Options& o) {
  uint64_t seed = test_seed(303);
  SCOPED_TRACE(msg("seed ", seed, " ", typeid(Opt).name()));
  Rng rng(seed);
  Fixture s = make_setup(rng, DType::F32);
  Opt opt(s.groups, o);
  run_steps(opt, {s.a, s.b}, rng, 2);
  // Save (copies, as a checkpoint would), and build a second optimizer over copied weights.
  NamedTensors saved;
  for (auto& [n, t] : opt.state_tensors()) saved.emplace_back(n, t.clone());
  NamedScalars scalars = opt.state_scalars();
  Tensor a2 = s.a.detach().clone(), b2 = s.b.detach().clone(), f2 = s.frozen.detach().clone();
  for (Tensor* t : {&a2, &b2, &f2}) t->set_requires_grad(true);
  std::vector<ParamGroup> g2{{"g0", {{"a", a2}, {"frozen", f2}}, 1.0, 5e-2}, {"g1", {{"b", b2, true}}, 0.5, 0.0}};
  Opt resumed(g2, o);
  resumed.load_state(saved, scalars);
  Rng r1(seed + 1), r2(seed + 1);
  run_steps(opt, {s.a, s.b}, r1, 2);
  run_steps(resumed, {a2, b2}, r2, 2);
  EXPECT_TRUE(bitwise_equal(s.a, a2));
  EXPECT_TRUE(bitwise_equal(s.b, b2));
  EXPECT_EQ(resumed.steps(), 4);
  auto st1 = opt.state_tensors(), st2 = resumed.state_tensors();
  ASSERT_EQ(st1.size(), st2.size());
  ASSERT_FALSE(st1.empty());
  for (size_t i = 0; i < st1.size(); ++i) EXPECT_TRUE(bitwise_equal(st1[i].second, st2[i].second)) << st1[i].first;
}

TEST(OptimizerState, ResumeIsBitwiseExact) {
  check_resume<Sgd>(SgdOptions{0.9, 0, true});
  check_resume<AdamW>(AdamWOptions{});
}

TEST(OptimizerState, NamesAndErrors) {
  Rng rng(test_seed(404));
  Fixture s = make_setup(rng, DType::F32);
  Sgd opt(s.groups, SgdOptions{});
  s.a.set_grad(rand_uniform(s.a.shape(), rng, -1, 1));
  opt.step(0.1);
  NamedTensors t = opt.state_tensors();
  NamedScalars sc = opt.state_scalars();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].first, "a.momentum_buffer");
  EXPECT_EQ(t[1].first, "frozen.momentum_buffer");
  EXPECT_EQ(t[2].first, "b.momentum_buffer");
  auto expect_error = [&](const NamedTensors& tt, const NamedScalars& ss, const std::string& needle) {
    try {
      opt.load_state(tt, ss);
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  NamedTensors missing(t.begin(), t.end() - 1);
  expect_error(missing, sc, "missing state tensor 'b.momentum_buffer'");
  NamedTensors extra = t;
  extra.emplace_back("zz.momentum_buffer", Tensor::zeros({3}));
  expect_error(extra, sc, "unknown state tensor 'zz.momentum_buffer'");
  NamedTensors dup = t;
  dup.push_back(t[0]);
  expect_error(dup, sc, "appears twice");
  NamedTensors wrong = t;
  wrong[0].second = Tensor::zeros({5, 6});
  expect_error(wrong, sc, "f32[5, 6]");
  wrong[0].second = Tensor::zeros({6, 5}, DType::F64);
  expect_error(wrong, sc, "f64[6, 5]");
  NamedScalars bad = sc;
  bad[0].second = 1.5;
  expect_error(t, bad, "not a step count");
  NamedScalars no_step(sc.begin(), sc.end() - 1);
  expect_error(t, no_step, "missing state scalar 'b.step'");
  // A load that fails on its last check changes nothing.
  NamedTensors other;
  for (auto& [n, x] : t) {
    other.emplace_back(n, x.clone());
    other.back().second.fill_(7.0);
  }
  NamedScalars bad_last = sc;
  bad_last.back().second = 99;  // b.step > steps
  Tensor buf_before = t[0].second.clone();
  expect_error(other, bad_last, "exceeds steps");
  EXPECT_TRUE(bitwise_equal(t[0].second, buf_before));
  EXPECT_EQ(opt.steps(), 1);
  // SGD refuses AdamW state.
  AdamW adam(s.groups, AdamWOptions{});
  expect_error(adam.state_tensors(), adam.state_scalars(), "missing state tensor 'a.momentum_buffer'");
}

}  // namespace
}  // namespace ff::test
