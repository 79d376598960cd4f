// The fused margin softmax cross-entropy against plain f64 loops, finite differences, the
// straight-through and AACE gradients worked out by hand, f32 vs f64, awkward sizes, a two-shard
// run of the kernel steps, and bad input.
#include "models/margin_head.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>

#include "tests/engine/check_util.h"
#include "tests/engine/gradcheck.h"

namespace ff::test {
namespace {

constexpr double kPi = 3.14159265358979323846;

// ---- reference math, written from FLATFACE.md without the kernel's formulas ----

double ref_psi(const MarginConfig& c, double x) {
  switch (c.type) {
    case MarginType::CosFace:
      return x - c.m3;
    case MarginType::ArcFace:
      if (x <= std::cos(kPi - c.m2)) return x - std::sin(kPi - c.m2) * c.m2;
      return std::cos(std::acos(x) + c.m2);
    case MarginType::Combined: {
      double t0 = (kPi - c.m2) / c.m1;  // angle at which m1·θ + m2 reaches π
      if (c.m1 * std::acos(x) + c.m2 >= kPi) return x - std::sin(t0) * (kPi - t0) - c.m3;
      return std::cos(c.m1 * std::acos(x) + c.m2) - c.m3;
    }
  }
  return 0;
}

// True where the target cosine is in ψ's linear fallback region.
bool ref_fallback(const MarginConfig& c, double x) {
  if (c.type == MarginType::CosFace) return false;
  return c.m1 * std::acos(x) + c.m2 >= kPi;
}

// d/dx cos(m1·acos(x) + m2) = m1·sin(m1·acos(x) + m2) / sqrt(1 − x²); the fallback has slope 1.
double ref_dpsi(const MarginConfig& c, double x) {
  if (c.type == MarginType::CosFace || ref_fallback(c, x)) return 1;
  return c.m1 * std::sin(c.m1 * std::acos(x) + c.m2) / std::sqrt(1 - x * x);
}

struct Ref {
  int64_t B, C, d;
  std::vector<double> fn, wn, f_norm, w_norm;  // normalised rows and norms
  std::vector<double> cos, z, p;               // [B, C]
  std::vector<double> loss_rows;
  std::vector<int64_t> labels;
  double loss = 0;
};

Ref ref_forward(const Tensor& f, const Tensor& w, const Tensor& labels, const MarginConfig& cfg) {
  Ref r;
  r.B = f.size(0), r.d = f.size(1), r.C = w.size(0);
  auto fv = f.to_vector(), wv = w.to_vector();
  for (int64_t i = 0; i < r.B; ++i) r.labels.push_back((int64_t)labels.item(i));
  auto normalise = [&](const std::vector<double>& x, int64_t n, std::vector<double>& out, std::vector<double>& norms) {
    out.resize(x.size());
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t k = 0; k < r.d; ++k) s += x[i * r.d + k] * x[i * r.d + k];
      norms.push_back(std::sqrt(s));
      for (int64_t k = 0; k < r.d; ++k) out[i * r.d + k] = x[i * r.d + k] / std::max(std::sqrt(s), 1e-12);
    }
  };
  normalise(fv, r.B, r.fn, r.f_norm);
  normalise(wv, r.C, r.wn, r.w_norm);
  r.cos.resize(r.B * r.C), r.z.resize(r.B * r.C), r.p.resize(r.B * r.C);
  for (int64_t i = 0; i < r.B; ++i) {
    for (int64_t j = 0; j < r.C; ++j) {
      double c = 0;
      for (int64_t k = 0; k < r.d; ++k) c += r.fn[i * r.d + k] * r.wn[j * r.d + k];
      c = std::min(1.0, std::max(-1.0, c));
      r.cos[i * r.C + j] = c;
      r.z[i * r.C + j] = cfg.s * (j == r.labels[i] ? ref_psi(cfg, c) : c);
    }
    double mx = -1e300, se = 0;
    for (int64_t j = 0; j < r.C; ++j) mx = std::max(mx, r.z[i * r.C + j]);
    for (int64_t j = 0; j < r.C; ++j) se += std::exp(r.z[i * r.C + j] - mx);
    for (int64_t j = 0; j < r.C; ++j) r.p[i * r.C + j] = std::exp(r.z[i * r.C + j] - mx) / se;
    const int64_t y = r.labels[i];
    double l;
    if (cfg.loss == MarginLoss::Margin) {
      l = -(r.z[i * r.C + y] - mx - std::log(se));
    } else {  // KL(t || p) by its definition
      double rest = 0;
      for (int64_t j = 0; j < r.C; ++j)
        if (j != y) rest += r.p[i * r.C + j];
      l = 0;
      for (int64_t j = 0; j < r.C; ++j) {
        if (j == y) continue;
        double t = r.p[i * r.C + j] / rest;
        if (t > 0) l += t * std::log(t / r.p[i * r.C + j]);
      }
    }
    r.loss_rows.push_back(l);
    r.loss += l / r.B;
  }
  return r;
}

// dL/dz of the batch mean: (softmax(z) − onehot)/B, or for AACE (softmax(z) − t)/B.
std::vector<double> ref_dz(const Ref& r, MarginLoss loss) {
  std::vector<double> g(r.B * r.C);
  for (int64_t i = 0; i < r.B; ++i) {
    const int64_t y = r.labels[i];
    double rest = 0;
    for (int64_t j = 0; j < r.C; ++j)
      if (j != y) rest += r.p[i * r.C + j];
    for (int64_t j = 0; j < r.C; ++j) {
      double pj = r.p[i * r.C + j];
      double target = loss == MarginLoss::Margin ? (j == y ? 1.0 : 0.0) : (j == y ? 0.0 : pj / rest);
      g[i * r.C + j] = (pj - target) / r.B;
    }
  }
  return g;
}

// Chains dL/dz through z = s·ψ(cos) (target, with the given dψ) / s·cos and the normalisations.
void ref_chain(const Ref& r, const MarginConfig& cfg, const std::vector<double>& dz, bool straight_through,
               std::vector<double>& gf, std::vector<double>& gw) {
  gf.assign(r.B * r.d, 0.0);
  gw.assign(r.C * r.d, 0.0);
  for (int64_t i = 0; i < r.B; ++i)
    for (int64_t j = 0; j < r.C; ++j) {
      double c = 0;  // unclamped cosine: the clamp passes the gradient through
      for (int64_t k = 0; k < r.d; ++k) c += r.fn[i * r.d + k] * r.wn[j * r.d + k];
      double dpsi = j == r.labels[i] && !straight_through ? ref_dpsi(cfg, r.cos[i * r.C + j]) : 1.0;
      double dc = cfg.s * dz[i * r.C + j] * dpsi;
      for (int64_t k = 0; k < r.d; ++k) {
        gf[i * r.d + k] += dc * (r.wn[j * r.d + k] - c * r.fn[i * r.d + k]) / r.f_norm[i];
        gw[j * r.d + k] += dc * (r.fn[i * r.d + k] - c * r.wn[j * r.d + k]) / r.w_norm[j];
      }
    }
}

// ---- inputs ----

enum class RowKind { Random, Opposite, Aligned };

struct Problem {
  Tensor f, w, labels;
};

// Rows of f: random, nearly opposite their target centre (deep in ψ's fallback region), or nearly
// along it (θ ≈ 0.01, where dψ/dc is large).
Problem make_problem(Rng& rng, int64_t B, int64_t C, int64_t d, const std::function<RowKind(int64_t)>& kind,
                     DType dtype = DType::F64) {
  Problem p;
  p.w = rand_uniform({C, d}, rng, -1, 1, DType::F64);
  std::vector<int64_t> y(B);
  for (auto& v : y) v = (int64_t)rng.below((uint64_t)C);
  p.labels = Tensor::from<int64_t>({B}, y);
  p.f = rand_uniform({B, d}, rng, -1, 1, DType::F64);
  double *f = p.f.data<double>(), *w = p.w.data<double>();
  for (int64_t i = 0; i < B; ++i) {
    RowKind k = kind(i);
    if (k == RowKind::Random) continue;
    double a = k == RowKind::Opposite ? -1.3 : 0.8, noise = k == RowKind::Opposite ? 0.05 : 0.01;
    for (int64_t j = 0; j < d; ++j) f[i * d + j] = a * w[y[i] * d + j] + noise * f[i * d + j];
  }
  p.f = p.f.to(dtype);
  p.w = p.w.to(dtype);
  return p;
}

RowKind mixed_rows(int64_t i) {
  return i % 3 == 0 ? RowKind::Opposite : i % 3 == 1 ? RowKind::Aligned : RowKind::Random;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double v : a) m = std::max(m, std::fabs(v));
  return m;
}

struct Grads {
  double loss;
  std::vector<double> gf, gw;
};

Grads run_op(const Problem& p, const MarginConfig& cfg, bool w_grad = true) {
  Tensor f = p.f.clone().set_requires_grad(true), w = p.w.clone().set_requires_grad(w_grad);
  MarginLossResult r = margin_softmax_cross_entropy(f, w, p.labels, cfg);
  r.loss.backward();
  Grads g{r.loss.item(), f.grad().to_vector(), w_grad ? w.grad().to_vector() : std::vector<double>{}};
  if (!w_grad) {
    EXPECT_FALSE(w.grad().defined());
  }
  return g;
}

std::vector<std::pair<std::string, MarginConfig>> all_margins() {
  return {{"arcface", arcface_config()},
          {"cosface", cosface_config()},
          {"combined(1,0.3,0.2)", combined_config()},
          {"combined(1.2,0.4,0.1)", combined_config(64, 1.2, 0.4, 0.1)}};
}

// ---- tests ----

TEST(MarginHead, ValuesMatchReferenceLoops) {
  uint64_t seed = test_seed(101);
  Rng rng(seed);
  Problem p = make_problem(rng, 9, 13, 16, mixed_rows);
  for (auto loss : {MarginLoss::Margin, MarginLoss::Aace})
    for (auto [name, cfg] : all_margins()) {
      cfg.loss = loss;
      Ref ref = ref_forward(p.f, p.w, p.labels, cfg);
      MarginLossResult r = margin_softmax_cross_entropy(p.f, p.w, p.labels, cfg);
      double err = std::fabs(r.loss.item() - ref.loss);
      std::printf("[value] %-22s %-6s seed %llu loss %.6f |err| %.2e\n", name.c_str(), margin_loss_name(loss),
                  (unsigned long long)seed, ref.loss, err);
      EXPECT_LT(err, 1e-11 * (1 + ref.loss)) << name;
      EXPECT_GT(ref.loss, 0.0) << name;
      int fallback_rows = 0;
      for (int64_t i = 0; i < ref.B; ++i) {
        double c = ref.cos[i * ref.C + ref.labels[i]];
        fallback_rows += ref_fallback(cfg, c);
        EXPECT_NEAR(r.target_cos.item(i), c, 1e-14) << name << " row " << i;
        bool best = true;
        for (int64_t j = 0; j < ref.C; ++j) best = best && (j == ref.labels[i] || ref.cos[i * ref.C + j] < c);
        EXPECT_EQ(r.correct.item(i), best ? 1.0 : 0.0) << name << " row " << i;
      }
      if (cfg.type != MarginType::CosFace) {
        EXPECT_GE(fallback_rows, 2) << name << ": fallback region not exercised";
      }
    }
}

TEST(MarginHead, ExactGradientsMatchFiniteDifferences) {
  uint64_t seed = test_seed(202);
  for (auto [name, cfg] : all_margins()) {
    Rng rng(seed);
    Problem p = make_problem(rng, 6, 7, 8, mixed_rows);
    // Opposite rows must be in the fallback region and away from its jump; others away from it too.
    Ref ref = ref_forward(p.f, p.w, p.labels, cfg);
    for (int64_t i = 0; i < 6; ++i) {
      double c = ref.cos[i * ref.C + ref.labels[i]];
      if (cfg.type != MarginType::CosFace) {
        EXPECT_EQ(ref_fallback(cfg, c), mixed_rows(i) == RowKind::Opposite) << name << " row " << i << " cos " << c;
        double t0 = (kPi - cfg.m2) / cfg.m1;
        if (t0 < kPi) {
          EXPECT_GT(std::fabs(c - std::cos(t0)), 1e-3) << name << " row " << i;
        }
      }
    }
    for (double s : {64.0, 8.0}) {
      cfg.s = s;
      Tensor f = p.f.clone().set_requires_grad(true), w = p.w.clone().set_requires_grad(true);
      Tensor labels = p.labels;
      expect_gradcheck(
          name + " s=" + std::to_string((int)s),
          [labels, cfg](const std::vector<Tensor>& in) {
            return margin_softmax_cross_entropy(in[0], in[1], labels, cfg).loss;
          },
          {f, w}, seed);
    }
  }
}

TEST(MarginHead, ReferenceChainMatchesExactGradient) {
  // Ties the hand-written chain (used for straight-through and AACE below) to the checked op.
  uint64_t seed = test_seed(303);
  Rng rng(seed);
  Problem p = make_problem(rng, 7, 9, 12, mixed_rows);
  for (auto [name, cfg] : all_margins()) {
    Ref ref = ref_forward(p.f, p.w, p.labels, cfg);
    std::vector<double> gf, gw;
    ref_chain(ref, cfg, ref_dz(ref, MarginLoss::Margin), false, gf, gw);
    Grads g = run_op(p, cfg);
    double ef = max_abs_diff(g.gf, gf) / max_abs(gf), ew = max_abs_diff(g.gw, gw) / max_abs(gw);
    std::printf("[chain] %-22s seed %llu rel err f %.2e W %.2e\n", name.c_str(), (unsigned long long)seed, ef, ew);
    EXPECT_LT(ef, 1e-7) << name;
    EXPECT_LT(ew, 1e-7) << name;
  }
}

TEST(MarginHead, StraightThroughIsTheGradientOfScaledCosine) {
  uint64_t seed = test_seed(404);
  Rng rng(seed);
  Problem p = make_problem(rng, 8, 11, 10, mixed_rows);
  for (auto [name, cfg] : all_margins()) {
    if (cfg.type == MarginType::CosFace) continue;  // dψ/dc = 1: both modes agree
    cfg.grad = MarginGrad::StraightThrough;
    Ref ref = ref_forward(p.f, p.w, p.labels, cfg);
    std::vector<double> gf, gw;
    ref_chain(ref, cfg, ref_dz(ref, MarginLoss::Margin), true, gf, gw);
    Grads st = run_op(p, cfg);
    double ef = max_abs_diff(st.gf, gf) / max_abs(gf), ew = max_abs_diff(st.gw, gw) / max_abs(gw);
    std::printf("[straight-through] %-22s seed %llu rel err f %.2e W %.2e\n", name.c_str(), (unsigned long long)seed,
                ef, ew);
    EXPECT_LT(ef, 1e-12) << name;
    EXPECT_LT(ew, 1e-12) << name;
    cfg.grad = MarginGrad::Exact;
    Grads exact = run_op(p, cfg);
    EXPECT_EQ(exact.loss, st.loss) << name << ": the mode changes the gradient only";
    EXPECT_GT(max_abs_diff(exact.gf, st.gf), 1e-3 * max_abs(gf)) << name << ": modes should differ";
  }
}

TEST(MarginHead, AaceGradientIsSoftmaxMinusAdversarialTarget) {
  uint64_t seed = test_seed(505);
  Rng rng(seed);
  Problem p = make_problem(rng, 8, 11, 10, mixed_rows);
  for (auto mode : {MarginGrad::Exact, MarginGrad::StraightThrough})
    for (auto [name, cfg] : all_margins()) {
      for (double s : {64.0, 4.0}) {  // s = 4 keeps p_y away from 0 and 1, so t differs from onehot
        cfg.loss = MarginLoss::Aace;
        cfg.grad = mode;
        cfg.s = s;
        Ref ref = ref_forward(p.f, p.w, p.labels, cfg);
        std::vector<double> gf, gw;
        ref_chain(ref, cfg, ref_dz(ref, MarginLoss::Aace), mode == MarginGrad::StraightThrough, gf, gw);
        Grads g = run_op(p, cfg);
        double ef = max_abs_diff(g.gf, gf) / max_abs(gf), ew = max_abs_diff(g.gw, gw) / max_abs(gw);
        std::printf("[aace] %-22s %-16s s=%-2d seed %llu loss %.4f rel err f %.2e W %.2e\n", name.c_str(),
                    margin_grad_name(mode), (int)s, (unsigned long long)seed, g.loss, ef, ew);
        EXPECT_NEAR(g.loss, ref.loss, 1e-11 * (1 + ref.loss)) << name;
        EXPECT_LT(ef, 1e-7) << name;
        EXPECT_LT(ew, 1e-7) << name;
      }
    }
}

TEST(MarginHead, Float32AgreesWithFloat64) {
  // No rows along their centre here: at θ ≈ 0.01 an f32 cosine fixes θ, and so dψ/dc, only to
  // ~eps/θ² ≈ 1e-3 relative (inherent to working from the cosine; AACE weights that term by p_y ≈ 1).
  uint64_t seed = test_seed(606);
  Rng rng(seed);
  Problem p = make_problem(rng, 16, 100, 64, [](int64_t i) { return i % 2 ? RowKind::Opposite : RowKind::Random; });
  Problem p32{p.f.to(DType::F32), p.w.to(DType::F32), p.labels};
  for (auto loss : {MarginLoss::Margin, MarginLoss::Aace})
    for (auto [name, cfg] : all_margins()) {
      cfg.loss = loss;
      Grads g64 = run_op(p, cfg), g32 = run_op(p32, cfg);
      double el = std::fabs(g32.loss - g64.loss) / (1 + g64.loss);
      double ef = max_abs_diff(g32.gf, g64.gf) / max_abs(g64.gf), ew = max_abs_diff(g32.gw, g64.gw) / max_abs(g64.gw);
      std::printf("[f32 vs f64] %-22s %-6s seed %llu loss rel %.2e grad f %.2e W %.2e\n", name.c_str(),
                  margin_loss_name(loss), (unsigned long long)seed, el, ef, ew);
      EXPECT_LT(el, 1e-5) << name;
      EXPECT_LT(ef, 1e-4) << name;
      EXPECT_LT(ew, 1e-4) << name;
    }
}

TEST(MarginHead, AwkwardSizesMatchReference) {
  uint64_t seed = test_seed(707);
  struct Size {
    int64_t B, C, d;
  };
  for (Size sz : {Size{1, 1, 128}, Size{5, 1, 512}, Size{1, 37, 512}, Size{7, 33, 128}, Size{3, 65, 128}}) {
    Rng rng(seed + (uint64_t)(sz.B * 1000 + sz.C));
    Problem p = make_problem(rng, sz.B, sz.C, sz.d, mixed_rows);
    MarginConfig cfg = arcface_config();
    Ref ref = ref_forward(p.f, p.w, p.labels, cfg);
    std::vector<double> gf, gw;
    ref_chain(ref, cfg, ref_dz(ref, MarginLoss::Margin), false, gf, gw);
    Grads g = run_op(p, cfg);
    double ef = max_abs_diff(g.gf, gf), ew = max_abs_diff(g.gw, gw);
    std::printf("[sizes] B=%lld C=%lld d=%lld seed %llu loss %.6f |err| %.2e grad f %.2e W %.2e (max %.2e)\n",
                (long long)sz.B, (long long)sz.C, (long long)sz.d, (unsigned long long)seed, ref.loss,
                std::fabs(g.loss - ref.loss), ef, ew, max_abs(gf));
    EXPECT_NEAR(g.loss, ref.loss, 1e-11 * (1 + ref.loss));
    EXPECT_LE(ef, 1e-7 * std::max(max_abs(gf), 1e-3));
    EXPECT_LE(ew, 1e-7 * std::max(max_abs(gw), 1e-3));
    if (sz.C == 1) {  // one class: softmax is 1, nothing to learn
      EXPECT_EQ(g.loss, 0.0);
      EXPECT_EQ(max_abs(g.gf), 0.0);
      EXPECT_EQ(max_abs(g.gw), 0.0);
    }
  }
}

// The same loss built from the engine's primitive autograd ops (l2_normalize, matmul, sub,
// mul_scalar, cross_entropy), with the CosFace margin as a constant one-hot tensor times m3:
// z = s·(cos − m3·onehot). Without a margin (m3 = 0 CosFace, m2 = 0 ArcFace, m2 = m3 = 0 combined)
// every type must reduce to plain normalised softmax. ArcFace's cos(acos(x) + m2) has no primitive
// op, so with a margin it is checked against the loops and finite differences above instead.
Tensor composed_loss(const Tensor& f, const Tensor& w, const Tensor& labels, double s, double m3) {
  const int64_t B = f.size(0), C = w.size(0);
  Tensor onehot = Tensor::zeros({B, C}, f.dtype());
  for (int64_t i = 0; i < B; ++i) {
    const int64_t y = (int64_t)labels.item(i);
    if (f.dtype() == DType::F64)
      onehot.data<double>()[i * C + y] = 1.0;
    else
      onehot.data<float>()[i * C + y] = 1.0f;
  }
  Tensor cos = matmul(l2_normalize(f), l2_normalize(w), false, true);
  return cross_entropy(mul_scalar(sub(cos, mul_scalar(onehot, m3)), s), labels);
}

TEST(MarginHead, MatchesTheLossComposedFromPrimitiveOps) {
  uint64_t seed = test_seed(757);
  struct Size {
    int64_t B, C;
  };
  struct Case {
    std::string name;
    MarginConfig cfg;
    double m3;  // the additive cosine margin of the composed loss
  };
  std::vector<Case> cases = {{"cosface(64,0.4)", cosface_config(64, 0.4), 0.4},
                             {"cosface(8,0.35)", cosface_config(8, 0.35), 0.35},
                             {"no margin cosface", cosface_config(64, 0.0), 0.0},
                             {"no margin arcface", arcface_config(64, 0.0), 0.0},
                             {"no margin combined", combined_config(16, 1.0, 0.0, 0.0), 0.0}};
  const int64_t d = 5;
  for (Size sz : {Size{1, 1}, Size{7, 1}, Size{1, 33}, Size{7, 33}}) {
    Rng rng(seed + (uint64_t)(sz.B * 100 + sz.C));
    Problem p = make_problem(rng, sz.B, sz.C, d, mixed_rows);
    for (const Case& c : cases) {
      Grads fused = run_op(p, c.cfg);
      Tensor f = p.f.clone().set_requires_grad(true), w = p.w.clone().set_requires_grad(true);
      Tensor loss = composed_loss(f, w, p.labels, c.cfg.s, c.m3);
      loss.backward();
      Grads ref{loss.item(), f.grad().to_vector(), w.grad().to_vector()};
      double el = std::fabs(fused.loss - ref.loss), ef = max_abs_diff(fused.gf, ref.gf),
             ew = max_abs_diff(fused.gw, ref.gw);
      std::printf(
          "[composed] %-20s B=%lld C=%-2lld d=%lld seed %llu loss %.6f |err| %.2e grad f %.2e W %.2e "
          "(max %.2e, %.2e)\n",
          c.name.c_str(), (long long)sz.B, (long long)sz.C, (long long)d, (unsigned long long)seed, ref.loss, el, ef,
          ew, max_abs(ref.gf), max_abs(ref.gw));
      EXPECT_LE(el, 1e-12 * (1 + ref.loss)) << c.name;
      EXPECT_LE(ef, 1e-11 * std::max(max_abs(ref.gf), 1e-3)) << c.name;
      EXPECT_LE(ew, 1e-11 * std::max(max_abs(ref.gw), 1e-3)) << c.name;
      if (sz.C > 1) {
        EXPECT_GT(ref.loss, 0.0) << c.name;
        EXPECT_GT(max_abs(ref.gf), 1e-6) << c.name << ": nothing to compare";
      }
    }
  }
}

TEST(MarginHead, GradientStaysBoundedWhereTargetCosineIsOne) {
  // f along its centre (exactly, or within ~1e-8 rad): dψ/dc is unbounded there while the
  // normalisation's Jacobian vanishes; their product must stay finite and within the bound
  // |dL/df_i| <= 2·s / (B·|f_i|). AACE puts weight p_y ≈ 1 on exactly that target term.
  uint64_t seed = test_seed(808);
  for (DType dt : {DType::F64, DType::F32}) {
    Rng rng(seed);
    Problem p = make_problem(rng, 4, 6, 32, [](int64_t) { return RowKind::Random; });
    Tensor fd = p.f.clone();
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t k = 0; k < 32; ++k)
        fd.data<double>()[i * 32 + k] = 2.0 * p.w.item(p.labels.item(i) * 32 + k) * (1.0 + 1e-9 * (double)(i * k));
    Problem q{fd.to(dt), p.w.to(dt), p.labels};
    for (auto loss : {MarginLoss::Margin, MarginLoss::Aace})
      for (auto [name, cfg] : all_margins()) {
        cfg.loss = loss;
        Grads g = run_op(q, cfg);
        Ref ref = ref_forward(fd, p.w, p.labels, cfg);
        double worst = 0;
        for (int64_t i = 0; i < 4; ++i) {
          double n = 0;
          for (int64_t k = 0; k < 32; ++k) {
            EXPECT_TRUE(std::isfinite(g.gf[i * 32 + k])) << name;
            n += g.gf[i * 32 + k] * g.gf[i * 32 + k];
          }
          worst = std::max(worst, std::sqrt(n) / (2 * cfg.s / (4 * ref.f_norm[i])));
        }
        for (double v : g.gw) EXPECT_TRUE(std::isfinite(v)) << name;
        std::printf("[cos=1] %-22s %-6s %s seed %llu |grad f| at most %.3f of the bound\n", name.c_str(),
                    margin_loss_name(loss), dtype_name(dt), (unsigned long long)seed, worst);
        EXPECT_LE(worst, 1.0) << name;
      }
  }
}

TEST(MarginHead, FrozenCentresGetNoGradient) {
  uint64_t seed = test_seed(909);
  Rng rng(seed);
  Problem p = make_problem(rng, 5, 7, 8, mixed_rows);
  Grads both = run_op(p, arcface_config()), frozen = run_op(p, arcface_config(), false);
  EXPECT_EQ(both.gf, frozen.gf);
  EXPECT_TRUE(frozen.gw.empty());
  // Without any gradient wanted, nothing is recorded.
  MarginLossResult r = margin_softmax_cross_entropy(p.f, p.w, p.labels, arcface_config());
  EXPECT_FALSE(r.loss.requires_grad());
  EXPECT_EQ(r.loss.item(), both.loss);
}

TEST(MarginHead, RepeatableBitForBit) {
  uint64_t seed = test_seed(1010);
  Rng rng(seed);
  Problem p = make_problem(rng, 33, 300, 64, mixed_rows, DType::F32);
  for (auto [name, cfg] : all_margins()) {
    Grads a = run_op(p, cfg), b = run_op(p, cfg);
    EXPECT_EQ(a.loss, b.loss) << name;
    EXPECT_EQ(a.gf, b.gf) << name;
    EXPECT_EQ(a.gw, b.gw) << name;
  }
}

// The kernel steps on two class shards, combining the row values as ranks would, give the
// single-shard result: the structure a sharded (Partial FC) head will use.
TEST(MarginHead, TwoShardsMatchOne) {
  uint64_t seed = test_seed(1111);
  Rng rng(seed);
  const int64_t B = 6, C = 11, d = 8, split = 4;
  Problem p = make_problem(rng, B, C, d, mixed_rows);
  for (auto loss : {MarginLoss::Margin, MarginLoss::Aace})
    for (auto [name, cfg] : all_margins()) {
      cfg.loss = loss;
      Grads whole = run_op(p, cfg);
      const double* f = p.f.data<double>();
      const double* w = p.w.data<double>();
      const int64_t* y = p.labels.data<int64_t>();
      std::vector<double> f_norm(B), w_norm(C);
      cpu::row_norms(B, d, f, f_norm.data());
      cpu::row_norms(C, d, w, w_norm.data());
      struct Shard {
        int64_t begin = 0, size = 0;
        std::vector<double> buf, tc, tl, mo, so;
        cpu::MarginRows rows() { return {tc.data(), tl.data(), mo.data(), so.data()}; }
      };
      std::vector<Shard> shards(2);
      shards[0].size = split;
      shards[1].begin = split;
      shards[1].size = C - split;
      std::vector<double> tc(B, 0), tl(B, 0), mo(B, -INFINITY), so(B, 0);
      for (auto& s : shards) {
        s.buf.resize(B * s.size), s.tc.resize(B), s.tl.resize(B), s.mo.resize(B), s.so.resize(B);
        cpu::cosine_logits(B, s.size, d, f, f_norm.data(), w + s.begin * d, w_norm.data() + s.begin, s.buf.data());
        cpu::apply_margin(cfg, B, s.size, s.begin, y, s.buf.data(), s.rows());
        for (int64_t i = 0; i < B; ++i) tc[i] += s.tc[i], tl[i] += s.tl[i], mo[i] = std::max(mo[i], s.mo[i]);
      }
      for (auto& s : shards) {
        s.mo = mo;  // all-reduce(max)
        cpu::row_sum_other(B, s.size, s.begin, y, s.buf.data(), s.rows());
        for (int64_t i = 0; i < B; ++i) so[i] += s.so[i];
      }
      cpu::MarginRows global{tc.data(), tl.data(), mo.data(), so.data()};
      std::vector<double> row_loss(B);
      std::vector<int64_t> correct(B);
      cpu::row_losses(cfg, B, global, row_loss.data(), correct.data());
      double total = 0;
      for (double l : row_loss) total += l;
      std::vector<double> gf(B * d, 0.0), gw(C * d);
      for (auto& s : shards) {
        cpu::logits_to_grad(cfg, B, s.size, s.begin, y, global, f_norm.data(), w_norm.data() + s.begin, 1.0 / B,
                            s.buf.data());
        std::vector<double> part(B * d);
        cpu::margin_backward(B, s.size, d, f, f_norm.data(), w + s.begin * d, w_norm.data() + s.begin, s.buf.data(),
                             1.0, part.data(), gw.data() + s.begin * d);
        for (int64_t k = 0; k < B * d; ++k) gf[k] += part[k];  // all-reduce(sum)
      }
      double el = std::fabs(total / B - whole.loss), ef = max_abs_diff(gf, whole.gf), ew = max_abs_diff(gw, whole.gw);
      std::printf("[shards] %-22s %-6s seed %llu loss err %.2e grad f %.2e W %.2e\n", name.c_str(),
                  margin_loss_name(loss), (unsigned long long)seed, el, ef, ew);
      EXPECT_LT(el, 1e-12) << name;
      EXPECT_LT(ef, 1e-12 * (1 + max_abs(whole.gf))) << name;
      EXPECT_LT(ew, 1e-12 * (1 + max_abs(whole.gw))) << name;
    }
}

TEST(MarginHead, NonFiniteInputGivesNanLoss) {
  uint64_t seed = test_seed(1212);
  Rng rng(seed);
  Problem p = make_problem(rng, 4, 5, 8, mixed_rows);
  for (auto [name, cfg] : all_margins()) {
    Tensor f = p.f.clone().set_requires_grad(true), w = p.w.clone().set_requires_grad(true);
    f.data<double>()[3] = std::numeric_limits<double>::quiet_NaN();
    MarginLossResult r = margin_softmax_cross_entropy(f, w, p.labels, cfg);
    EXPECT_TRUE(std::isnan(r.loss.item())) << name;
    EXPECT_NO_THROW(r.loss.backward()) << name;
    Tensor f2 = p.f.clone(), w2 = p.w.clone();
    w2.data<double>()[5] = std::numeric_limits<double>::infinity();
    EXPECT_TRUE(std::isnan(margin_softmax_cross_entropy(f2, w2, p.labels, cfg).loss.item())) << name;
  }
}

TEST(MarginHead, BadInputThrowsClearErrors) {
  Rng rng(test_seed(1313));
  Tensor f = rand_uniform({2, 4}, rng, -1, 1, DType::F64), w = rand_uniform({3, 4}, rng, -1, 1, DType::F64);
  Tensor y = Tensor::from<int64_t>({2}, std::vector<int64_t>{0, 2});
  MarginConfig cfg = arcface_config();
  auto call = [&](const Tensor& a, const Tensor& b, const Tensor& l, const MarginConfig& c) {
    return [=] { (void)margin_softmax_cross_entropy(a, b, l, c); };
  };
  expect_error(call(f, rand_uniform({3, 5}, rng, -1, 1, DType::F64), y, cfg), {"differ in size d"});
  expect_error(call(f, w, Tensor::from<int64_t>({3}, std::vector<int64_t>{0, 1, 2}), cfg), {"labels for 2"});
  expect_error(call(f, w, Tensor::from<int64_t>({2}, std::vector<int64_t>{0, 7}), cfg), {"label 7 of row 1"});
  expect_error(call(f, w, Tensor::from<int64_t>({2}, std::vector<int64_t>{-1, 0}), cfg), {"label -1 of row 0"});
  expect_error(call(f, w, Tensor::from({2}, {0.0, 1.0}, DType::F64), cfg), {"labels must be i64"});
  expect_error(call(f, Tensor::empty({0, 4}, DType::F64), y, cfg), {"no classes"});
  expect_error(call(f.reshape({8}), w, y, cfg), {"embeddings must be 2-D"});
  expect_error(call(f, w.to(DType::F32), y, cfg), {"dtype mismatch"});
  expect_error(call(f.to(DType::I64), w.to(DType::I64), y, cfg), {"must be f32 or f64"});
  MarginConfig bad = cfg;
  bad.s = 0;
  expect_error(call(f, w, y, bad), {"scale s"});
  bad = cfg;
  bad.m2 = 4;
  expect_error(call(f, w, y, bad), {"m2 must be in"});
  bad = cfg;
  bad.m3 = 0.2;
  expect_error(call(f, w, y, bad), {"use type combined"});
  bad = cosface_config();
  bad.m2 = 0.1;
  expect_error(call(f, w, y, bad), {"use type combined"});
  bad = cfg;
  bad.s = std::numeric_limits<double>::quiet_NaN();
  expect_error(call(f, w, y, bad), {"must be finite"});
  bad = cfg;
  bad.loss = MarginLoss::Aace;
  expect_error(call(f, w.slice_batch(0, 1), Tensor::from<int64_t>({2}, std::vector<int64_t>{0, 0}), bad), 
               {"at least 2 classes"});
  expect_error([] { (void)parse_margin_type("arc"); }, {"arcface|cosface|combined"});
  EXPECT_EQ(parse_margin_type("cosface"), MarginType::CosFace);
  EXPECT_EQ(parse_margin_grad("straight_through"), MarginGrad::StraightThrough);
  EXPECT_EQ(parse_margin_loss("aace"), MarginLoss::Aace);
  EXPECT_STREQ(margin_type_name(MarginType::Combined), "combined");
}

TEST(MarginHead, DefaultsFollowTheRecipe) {
  MarginConfig a = arcface_config(), c = cosface_config();
  EXPECT_EQ(a.type, MarginType::ArcFace);
  EXPECT_EQ(a.s, 64);
  EXPECT_EQ(a.m2, 0.5);
  EXPECT_EQ(c.type, MarginType::CosFace);
  EXPECT_EQ(c.m3, 0.4);
  EXPECT_EQ(a.grad, MarginGrad::Exact);
  EXPECT_EQ(a.loss, MarginLoss::Margin);
  // The kernel's ψ agrees with the reference formulas on a grid, including the fallback regions.
  for (auto [name, cfg] : all_margins())
    for (double x = -1; x <= 1; x += 1.0 / 64)
      EXPECT_NEAR(cpu::margin_psi(cfg, x), ref_psi(cfg, x), 1e-12) << name << " at " << x;
}

}  // namespace
}  // namespace ff::test
