// Batch norm, PReLU, dropout and l2_normalize: gradient checks for every option, values against
// plain loops, running-statistics semantics, determinism and error messages.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <tuple>

#include "tests/engine/check_util.h"
#include "tests/engine/gradcheck.h"

namespace ff::test {
namespace {

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Plain-loop batch statistics of x [N, C, ...] per channel: mean and biased variance.
void loop_stats(const Tensor& x, std::vector<double>& mean, std::vector<double>& var) {
  int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  mean.assign(C, 0);
  var.assign(C, 0);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t s = 0; s < S; ++s) mean[c] += x.item((n * C + c) * S + s);
    mean[c] /= (double)(N * S);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t s = 0; s < S; ++s) var[c] += std::pow(x.item((n * C + c) * S + s) - mean[c], 2);
    var[c] /= (double)(N * S);
  }
}

// Plain-loop normalisation with the given per-channel statistics; w/b may be undefined.
std::vector<double> loop_normalize(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& var,
                                   const Tensor& w, const Tensor& b, double eps) {
  int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  std::vector<double> y(x.numel());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) {
        int64_t i = (n * C + c) * S + s;
        double v = (x.item(i) - mean[c]) / std::sqrt(var[c] + eps);
        y[i] = v * (w.defined() ? w.item(c) : 1.0) + (b.defined() ? b.item(c) : 0.0);
      }
  return y;
}

void expect_all_near(const std::vector<double>& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << what << " element " << i;
}

// ---------------------------------------------------------------- batch norm gradients

enum class BnMode { TrainUpdate, TrainNoUpdate, Eval };
const char* mode_name(BnMode m) {
  return m == BnMode::TrainUpdate ? "train" : m == BnMode::TrainNoUpdate ? "train-no-update" : "eval";
}

class BatchNormGrad : public ::testing::TestWithParam<std::tuple<Shape, BnMode, bool>> {};

TEST_P(BatchNormGrad, GradientsMatchFiniteDifferences) {
  const auto& [shape, mode, affine] = GetParam();
  uint64_t seed = test_seed(21);
  Rng rng(seed);
  int64_t C = shape[1];
  Tensor x = rand_input(shape, rng, -2, 2);
  Tensor w = rand_input({C}, rng, 0.5, 1.5), b = rand_input({C}, rng);
  Tensor rm = rand_uniform({C}, rng, -0.5, 0.5, DType::F64), rv = rand_uniform({C}, rng, 0.5, 1.5, DType::F64);
  BatchNormOptions opt;
  opt.training = mode != BnMode::Eval;
  opt.update_stats = mode == BnMode::TrainUpdate;
  opt.momentum = 0.2;
  std::string label = std::string("batch_norm ") + shape_str(shape) + " " + mode_name(mode) + (affine ? " affine" : "");
  if (affine)
    expect_gradcheck(
        label, [&](const std::vector<Tensor>& in) { return batch_norm(in[0], in[1], in[2], rm, rv, opt); }, {x, w, b},
        seed);
  else
    expect_gradcheck(
        label, [&](const std::vector<Tensor>& in) { return batch_norm(in[0], Tensor(), Tensor(), rm, rv, opt); }, {x},
        seed);
}

// [N, C] and [N, C, H, W] with non-square spatial sizes; batch 1 only where N*H*W > 1.
INSTANTIATE_TEST_SUITE_P(
    Options, BatchNormGrad,
    ::testing::Combine(::testing::Values(Shape{5, 3}, Shape{2, 4}, Shape{2, 3, 3, 5}, Shape{1, 2, 3, 2}),
                       ::testing::Values(BnMode::TrainUpdate, BnMode::TrainNoUpdate, BnMode::Eval), ::testing::Bool()));

TEST(BatchNorm, GradientWithOnlySomeInputsRequiringIt) {
  uint64_t seed = test_seed(22);
  Rng rng(seed);
  Tensor x = rand_input({3, 2, 2, 3}, rng, -2, 2), w = rand_input({2}, rng, 0.5, 1.5);
  Tensor b = rand_uniform({2}, rng, -1, 1, DType::F64);  // a frozen bias
  BatchNormOptions opt;
  expect_gradcheck(
      "batch_norm frozen bias", [&](const std::vector<Tensor>& in) { return batch_norm(in[0], in[1], b, {}, {}, opt); },
      {x, w}, seed);
  Tensor xc = x.detach().clone();  // no gradient to x; the parameters still get theirs
  expect_gradcheck(
      "batch_norm constant input",
      [&](const std::vector<Tensor>& in) { return batch_norm(xc, in[0], in[1], {}, {}, opt); },
      {w, rand_input({2}, rng)}, seed);
}

// ---------------------------------------------------------------- batch norm values

TEST(BatchNorm, TrainingValuesAndRunningUpdateMatchLoops) {
  uint64_t seed = test_seed(23);
  std::printf("seed %llu\n", (unsigned long long)seed);
  Rng rng(seed);
  for (Shape shape : {Shape{6, 4}, Shape{3, 4, 2, 5}}) {
    int64_t C = shape[1], M = shape_numel(shape) / C;
    Tensor x = rand_uniform(shape, rng, -3, 1, DType::F64);
    Tensor w = rand_uniform({C}, rng, 0.5, 1.5, DType::F64), b = rand_uniform({C}, rng, -1, 1, DType::F64);
    Tensor rm = rand_uniform({C}, rng, -1, 1, DType::F64), rv = rand_uniform({C}, rng, 0.5, 2, DType::F64);
    std::vector<double> rm0 = rm.to_vector(), rv0 = rv.to_vector();
    BatchNormOptions opt;
    opt.momentum = 0.3;
    opt.eps = 1e-3;
    Tensor y = batch_norm(x, w, b, rm, rv, opt);
    std::vector<double> mean, var;
    loop_stats(x, mean, var);
    expect_all_near(y.to_vector(), loop_normalize(x, mean, var, w, b, opt.eps), 1e-12, "output");
    for (int64_t c = 0; c < C; ++c) {
      double unbiased = var[c] * (double)M / (double)(M - 1);
      EXPECT_NEAR(rm.item(c), 0.7 * rm0[c] + 0.3 * mean[c], 1e-14) << "running_mean " << c;
      EXPECT_NEAR(rv.item(c), 0.7 * rv0[c] + 0.3 * unbiased, 1e-14) << "running_var " << c;
    }
    // Not affine: the plain standardisation.
    expect_all_near(batch_norm(x, {}, {}, {}, {}, opt).to_vector(), loop_normalize(x, mean, var, {}, {}, opt.eps),
                    1e-12, "not affine");
  }
}

TEST(BatchNorm, NoUpdateKeepsRunningStatsAndGivesTrainingOutput) {
  uint64_t seed = test_seed(24);
  Rng rng(seed);
  Tensor x = randn({4, 3, 3, 2}, rng, 1.5, DType::F32);
  Tensor w = rand_uniform({3}, rng, 0.5, 1.5), b = rand_uniform({3}, rng, -1, 1);
  Tensor rm = rand_uniform({3}, rng, -1, 1), rv = rand_uniform({3}, rng, 0.5, 2);
  Tensor rm0 = rm.clone(), rv0 = rv.clone();
  BatchNormOptions train;
  BatchNormOptions no_update = train;
  no_update.update_stats = false;
  Tensor y_no = batch_norm(x, w, b, rm, rv, no_update);
  EXPECT_TRUE(same_bytes(rm, rm0)) << "running_mean changed with update_stats=false";
  EXPECT_TRUE(same_bytes(rv, rv0)) << "running_var changed with update_stats=false";
  Tensor rm1 = rm.clone(), rv1 = rv.clone();
  Tensor y_train = batch_norm(x, w, b, rm1, rv1, train);
  EXPECT_TRUE(same_bytes(y_no, y_train)) << "update_stats=false must normalise exactly like training";
  EXPECT_FALSE(same_bytes(rm1, rm0)) << "training with update_stats must move running_mean";
  EXPECT_FALSE(same_bytes(rv1, rv0)) << "training with update_stats must move running_var";
}

TEST(BatchNorm, EvalUsesRunningStatsAndLeavesThem) {
  uint64_t seed = test_seed(25);
  Rng rng(seed);
  for (Shape shape : {Shape{1, 5}, Shape{2, 3, 4, 1}}) {  // batch 1 is fine in eval mode
    int64_t C = shape[1];
    Tensor x = rand_uniform(shape, rng, -2, 2, DType::F64);
    Tensor w = rand_uniform({C}, rng, 0.5, 1.5, DType::F64), b = rand_uniform({C}, rng, -1, 1, DType::F64);
    Tensor rm = rand_uniform({C}, rng, -1, 1, DType::F64), rv = rand_uniform({C}, rng, 0.5, 2, DType::F64);
    Tensor rm0 = rm.clone(), rv0 = rv.clone();
    BatchNormOptions opt;
    opt.training = false;
    Tensor y = batch_norm(x, w, b, rm, rv, opt);
    expect_all_near(y.to_vector(), loop_normalize(x, rm.to_vector(), rv.to_vector(), w, b, opt.eps), 1e-12,
                    "eval output");
    EXPECT_TRUE(same_bytes(rm, rm0) && same_bytes(rv, rv0)) << "eval must not touch running stats";
  }
}

TEST(BatchNorm, F32MatchesF64) {
  uint64_t seed = test_seed(26);
  Rng rng(seed);
  Tensor x64 = rand_uniform({4, 5, 3, 7}, rng, -2, 3, DType::F64), w64 = rand_uniform({5}, rng, 0.5, 1.5, DType::F64);
  Tensor b64 = rand_uniform({5}, rng, -1, 1, DType::F64), g64 = rand_uniform({4, 5, 3, 7}, rng, -1, 1, DType::F64);
  for (bool training : {true, false}) {
    Tensor rm64 = Tensor::full({5}, 0.25, DType::F64), rv64 = Tensor::full({5}, 1.5, DType::F64);
    Tensor rm32 = rm64.to(DType::F32), rv32 = rv64.to(DType::F32);
    BatchNormOptions opt;
    opt.training = training;
    std::vector<Tensor> p64, p32;
    for (const Tensor& t : {x64, w64, b64}) {
      p64.push_back(t.clone().set_requires_grad(true));
      p32.push_back(t.to(DType::F32).set_requires_grad(true));
    }
    Tensor y64 = batch_norm(p64[0], p64[1], p64[2], rm64, rv64, opt);
    Tensor y32 = batch_norm(p32[0], p32[1], p32[2], rm32, rv32, opt);
    y64.backward(g64);
    y32.backward(g64.to(DType::F32));
    expect_all_near(y32.to_vector(), y64.to_vector(), 1e-5, "f32 output");
    expect_all_near(rv32.to_vector(), rv64.to_vector(), 1e-6, "f32 running_var");
    for (int k = 0; k < 3; ++k) expect_all_near(p32[k].grad().to_vector(), p64[k].grad().to_vector(), 1e-4, "f32 grad");
  }
}

TEST(BatchNorm, ForwardAndBackwardAreBitwiseReproducible) {
  uint64_t seed = test_seed(27);
  Rng rng(seed);
  // Large enough (> 32768 elements) that the kernels run in parallel.
  Tensor x0 = randn({8, 32, 13, 17}, rng, 2.0), g = randn({8, 32, 13, 17}, rng);
  Tensor w0 = rand_uniform({32}, rng, 0.5, 1.5), b0 = rand_uniform({32}, rng, -1, 1);
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Tensor x = x0.clone().set_requires_grad(true), w = w0.clone().set_requires_grad(true),
           b = b0.clone().set_requires_grad(true);
    Tensor rm = Tensor::zeros({32}), rv = Tensor::full({32}, 1.0);
    batch_norm(x, w, b, rm, rv, {}).backward(g);
    return std::vector<Tensor>{batch_norm(x0, w, b, rm, rv, {}), x.grad(), w.grad(), b.grad(), rm, rv};
  };
  int default_threads = omp_get_max_threads();
  std::vector<Tensor> first = run(default_threads), again = run(default_threads), one = run(1), four = run(4);
  omp_set_num_threads(default_threads);
  const char* names[] = {"output", "x.grad", "weight.grad", "bias.grad", "running_mean", "running_var"};
  for (size_t k = 0; k < first.size(); ++k) {
    EXPECT_TRUE(same_bytes(first[k], again[k])) << names[k] << " differs between two identical runs";
    EXPECT_TRUE(same_bytes(first[k], one[k])) << names[k] << " differs with 1 thread";
    EXPECT_TRUE(same_bytes(first[k], four[k])) << names[k] << " differs with 4 threads";
  }
}

// ---------------------------------------------------------------- batch norm errors

TEST(BatchNorm, TrainingWithOneValuePerChannelThrows) {
  BatchNormOptions opt;
  expect_error(
      [&] {
        batch_norm(Tensor::zeros({1, 3}), {}, {}, {}, {}, opt);
      },
      {"batch_norm", "more than 1 value per channel", "[1, 3]"});
  expect_error([&] { batch_norm(Tensor::zeros({1, 3, 1, 1}), {}, {}, {}, {}, opt); }, {"batch_norm", "[1, 3, 1, 1]"});
  opt.update_stats = false;
  expect_error([&] { batch_norm(Tensor::zeros({1, 3}), {}, {}, {}, {}, opt); }, {"more than 1 value per channel"});
}

TEST(BatchNorm, BadArgumentsNameOpAndShapes) {
  Tensor x = Tensor::zeros({4, 3, 2, 2}), c3 = Tensor::full({3}, 1.0);
  BatchNormOptions opt;
  expect_error([&] { batch_norm(x, Tensor::zeros({4}), {}, {}, {}, opt); }, {"batch_norm", "weight", "[3]", "[4]"});
  expect_error([&] { batch_norm(x, c3, Tensor::zeros({3}, DType::F64), {}, {}, opt); }, {"batch_norm", "dtype", "f64"});
  expect_error([&] { batch_norm(Tensor::zeros({4, 3, 2}), {}, {}, {}, {}, opt); }, {"batch_norm", "[4, 3, 2]"});
  expect_error([&] { batch_norm(x, {}, {}, c3, Tensor::zeros({2}), opt); }, {"batch_norm", "running_var", "[2]"});
  expect_error([&] { batch_norm(x, {}, {}, c3, {}, opt); }, {"batch_norm", "running_mean and running_var"});
  expect_error([&] { batch_norm(Tensor::zeros({4, 3}, DType::I64), {}, {}, {}, {}, opt); }, {"batch_norm", "i64"});
  opt.training = false;
  expect_error([&] { batch_norm(x, {}, {}, {}, {}, opt); }, {"batch_norm", "eval", "running"});
  opt = {};
  opt.momentum = 1.5;
  expect_error([&] { batch_norm(x, {}, {}, {}, {}, opt); }, {"batch_norm", "momentum"});
}

// ---------------------------------------------------------------- PReLU

// Moves values within `margin` of 0 out of it, so finite differences do not straddle the kink.
Tensor away_from_zero(Tensor t, double margin) {
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (std::fabs(p[i]) < margin) p[i] = p[i] < 0 ? p[i] - 2 * margin : p[i] + 2 * margin;
  return t;
}

TEST(PRelu, GradientsMatchFiniteDifferences) {
  uint64_t seed = test_seed(31);
  Rng rng(seed);
  for (Shape shape : {Shape{4, 3}, Shape{2, 3, 3, 5}, Shape{1, 4, 2, 3}}) {
    Tensor x = away_from_zero(rand_input(shape, rng), 0.05);
    Tensor w = rand_input({shape[1]}, rng, -0.5, 0.5);
    expect_gradcheck(
        "prelu " + shape_str(shape), [](const std::vector<Tensor>& in) { return prelu(in[0], in[1]); }, {x, w}, seed);
  }
}

TEST(PRelu, ValuesMatchLoop) {
  uint64_t seed = test_seed(32);
  Rng rng(seed);
  Tensor x = rand_uniform({3, 4, 2, 5}, rng, -1, 1, DType::F64), w = rand_uniform({4}, rng, 0.1, 0.4, DType::F64);
  Tensor y = prelu(x, w);
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = x.item(i), want = v > 0 ? v : w.item((i / 10) % 4) * v;
    EXPECT_DOUBLE_EQ(y.item(i), want) << "element " << i;
  }
}

TEST(PRelu, BadArgumentsNameOpAndShapes) {
  expect_error([] { prelu(Tensor::zeros({2, 3}), Tensor::zeros({4})); }, {"prelu", "[2, 3]", "[4]"});
  expect_error([] { prelu(Tensor::zeros({6}), Tensor::zeros({6})); }, {"prelu", "[6]"});
  expect_error([] { prelu(Tensor::zeros({2, 3}), Tensor::zeros({3}, DType::F64)); }, {"prelu", "dtype"});
}

// ---------------------------------------------------------------- dropout

TEST(Dropout, GradientsMatchFiniteDifferences) {
  uint64_t seed = test_seed(41);
  Rng rng(seed);
  for (Shape shape : {Shape{4, 7}, Shape{2, 3, 3, 5}}) {
    Tensor x = rand_input(shape, rng);
    // A fresh generator with the same seed in every evaluation: the same mask throughout.
    expect_gradcheck(
        "dropout " + shape_str(shape),
        [seed](const std::vector<Tensor>& in) {
          Rng r(seed);
          return dropout(in[0], 0.3, true, r);
        },
        {x}, seed);
  }
}

TEST(Dropout, KeepsAboutOneMinusPAndScales) {
  uint64_t seed = test_seed(42);
  Rng rng(seed);
  const double p = 0.25;
  Tensor x = rand_uniform({200, 500}, rng, 0.5, 1.5, DType::F64).set_requires_grad(true);  // no zeros of its own
  Rng drng(seed + 1);
  Tensor y = dropout(x, p, true, drng);
  int64_t kept = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = y.item(i);
    if (v != 0) {
      ++kept;
      EXPECT_NEAR(v, x.item(i) / (1 - p), 1e-14) << "element " << i;
    }
  }
  double frac = (double)kept / (double)x.numel();
  // Binomial: the standard deviation of the kept fraction is about 0.0014 here; allow 6 of them.
  EXPECT_NEAR(frac, 1 - p, 0.009) << "seed " << seed;
  // Backward reuses the forward mask: the gradient of the sum is the mask itself.
  sum(y).backward();
  for (int64_t i = 0; i < x.numel(); ++i)
    ASSERT_EQ(x.grad().item(i), y.item(i) == 0 ? 0.0 : 1 / (1 - p)) << "element " << i;
}

TEST(Dropout, SeedDecidesTheMaskAndIdentityCasesDrawNothing) {
  Rng rng(test_seed(43));
  Tensor x = rand_uniform({16, 16}, rng, 0.5, 1.5);
  Rng a(7), b(7), c(8);
  Tensor ya = dropout(x, 0.5, true, a), yb = dropout(x, 0.5, true, b), yc = dropout(x, 0.5, true, c);
  EXPECT_TRUE(same_bytes(ya, yb));
  EXPECT_FALSE(same_bytes(ya, yc));
  Rng d(9);
  auto state = d.state();
  EXPECT_TRUE(same_bytes(dropout(x, 0.5, false, d), x));
  EXPECT_TRUE(same_bytes(dropout(x, 0.0, true, d), x));
  EXPECT_EQ(d.state(), state) << "identity dropout must not consume random numbers";
}

TEST(Dropout, BadProbabilityThrows) {
  Rng rng(1);
  Tensor x = Tensor::zeros({2, 2});
  for (double p : {1.0, -0.1, std::nan("")}) expect_error([&] { dropout(x, p, true, rng); }, {"dropout", "[0, 1)"});
  expect_error([&] { dropout(Tensor::zeros({2}, DType::I64), 0.1, true, rng); }, {"dropout", "i64"});
}

// ---------------------------------------------------------------- l2_normalize

TEST(L2Normalize, GradientsMatchFiniteDifferences) {
  uint64_t seed = test_seed(51);
  Rng rng(seed);
  for (Shape shape : {Shape{4, 5}, Shape{1, 3}, Shape{3, 1}}) {
    Tensor x = away_from_zero(rand_input(shape, rng), 0.1);
    expect_gradcheck(
        "l2_normalize " + shape_str(shape), [](const std::vector<Tensor>& in) { return l2_normalize(in[0]); }, {x},
        seed);
  }
  // Row 1 has a norm below eps, so it is divided by the constant eps.
  Tensor x = rand_input({3, 4}, rng, 0.3, 0.6);
  double* p = x.data<double>();
  for (int j = 0; j < 4; ++j) p[4 + j] *= 0.1;
  expect_gradcheck(
      "l2_normalize below eps", [](const std::vector<Tensor>& in) { return l2_normalize(in[0], 0.5); }, {x}, seed);
}

TEST(L2Normalize, ValuesMatchLoop) {
  uint64_t seed = test_seed(52);
  Rng rng(seed);
  Tensor x = rand_uniform({5, 9}, rng, -1, 1, DType::F64);
  double* p = x.data<double>();
  for (int j = 0; j < 9; ++j) p[2 * 9 + j] *= 1e-3;  // row 2: norm < eps
  const double eps = 0.01;
  Tensor y = l2_normalize(x, eps);
  for (int r = 0; r < 5; ++r) {
    double s = 0;
    for (int j = 0; j < 9; ++j) s += x.item(r * 9 + j) * x.item(r * 9 + j);
    double d = std::max(std::sqrt(s), eps);
    ASSERT_EQ(r == 2, std::sqrt(s) < eps);
    for (int j = 0; j < 9; ++j) EXPECT_NEAR(y.item(r * 9 + j), x.item(r * 9 + j) / d, 1e-15);
  }
}

TEST(L2Normalize, BadArgumentsThrow) {
  expect_error([] { l2_normalize(Tensor::zeros({2, 3, 4})); }, {"l2_normalize", "[2, 3, 4]"});
  expect_error([] { l2_normalize(Tensor::zeros({2, 3}), 0.0); }, {"l2_normalize", "eps"});
}

}  // namespace
}  // namespace ff::test
