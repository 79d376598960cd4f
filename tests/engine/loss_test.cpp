// log_softmax and cross_entropy: gradient checks, values against plain loops, stability with large
// logits, and error messages.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/engine/check_util.h"
#include "tests/engine/gradcheck.h"

namespace ff::test {
namespace {

Tensor labels_of(std::vector<int64_t> v) { return Tensor::from<int64_t>({(int64_t)v.size()}, v); }

// Random labels in [0, C).
Tensor random_labels(int64_t N, int64_t C, Rng& rng) {
  std::vector<int64_t> v(N);
  for (auto& y : v) y = (int64_t)rng.below((uint64_t)C);
  return labels_of(v);
}

// Plain-loop log-softmax of row r of x [N, C], with the textbook max shift.
std::vector<double> loop_log_softmax_row(const Tensor& x, int64_t r) {
  int64_t C = x.size(1);
  double mx = -INFINITY, s = 0;
  for (int64_t j = 0; j < C; ++j) mx = std::max(mx, x.item(r * C + j));
  for (int64_t j = 0; j < C; ++j) s += std::exp(x.item(r * C + j) - mx);
  std::vector<double> out(C);
  for (int64_t j = 0; j < C; ++j) out[j] = x.item(r * C + j) - mx - std::log(s);
  return out;
}

TEST(LogSoftmax, GradientsMatchFiniteDifferences) {
  uint64_t seed = test_seed(61);
  Rng rng(seed);
  for (Shape shape : {Shape{4, 7}, Shape{1, 5}, Shape{3, 1}}) {
    Tensor x = rand_input(shape, rng, -3, 3);
    expect_gradcheck(
        "log_softmax " + shape_str(shape), [](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {x}, seed);
  }
}

TEST(LogSoftmax, RowsExponentiateToOneAndMatchLoop) {
  uint64_t seed = test_seed(62);
  Rng rng(seed);
  Tensor x = rand_uniform({6, 11}, rng, -5, 5, DType::F64);
  Tensor y = log_softmax(x);
  for (int64_t r = 0; r < 6; ++r) {
    double s = 0;
    std::vector<double> want = loop_log_softmax_row(x, r);
    for (int64_t j = 0; j < 11; ++j) {
      s += std::exp(y.item(r * 11 + j));
      EXPECT_NEAR(y.item(r * 11 + j), want[j], 1e-13) << "row " << r << " col " << j;
    }
    EXPECT_NEAR(s, 1.0, 1e-13) << "row " << r;
  }
}

TEST(LogSoftmax, LargeLogitsStayFinite) {
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = Tensor::from({2, 3}, {1000.0, 1001.0, 999.0, -1000.0, -1002.0, -1001.0}, dt);
    Tensor y = log_softmax(x);
    // Log-softmax is shift-invariant: the rows are {0, 1, -1} and {0, -2, -1} shifted by +-1000.
    double l0 = std::log(1 + std::exp(1.0) + std::exp(-1.0)), l1 = std::log(1 + std::exp(-2.0) + std::exp(-1.0));
    std::vector<double> want{-l0, 1 - l0, -1 - l0, -l1, -2 - l1, -1 - l1};
    for (int i = 0; i < 6; ++i) {
      EXPECT_TRUE(std::isfinite(y.item(i))) << dtype_name(dt) << " element " << i;
      EXPECT_NEAR(y.item(i), want[i], dt == DType::F32 ? 1e-4 : 1e-12) << dtype_name(dt) << " element " << i;
    }
  }
}

TEST(CrossEntropy, GradientsMatchFiniteDifferences) {
  uint64_t seed = test_seed(63);
  Rng rng(seed);
  for (Shape shape : {Shape{5, 4}, Shape{1, 3}, Shape{3, 9}}) {
    Tensor x = rand_input(shape, rng, -3, 3);
    Tensor y = random_labels(shape[0], shape[1], rng);
    expect_gradcheck(
        "cross_entropy " + shape_str(shape), [y](const std::vector<Tensor>& in) { return cross_entropy(in[0], y); },
        {x}, seed);
  }
}

TEST(CrossEntropy, EqualsMinusMeanLogProbabilityOfTheLabel) {
  uint64_t seed = test_seed(64);
  Rng rng(seed);
  Tensor x = rand_uniform({7, 5}, rng, -4, 4, DType::F64);
  Tensor y = random_labels(7, 5, rng);
  double want = 0;
  for (int64_t r = 0; r < 7; ++r) want -= loop_log_softmax_row(x, r)[(size_t)y.item(r)];
  want /= 7;
  Tensor loss = cross_entropy(x, y);
  EXPECT_EQ(loss.shape(), Shape{});
  EXPECT_NEAR(loss.item(), want, 1e-13);
  // f32 agrees, and large logits stay finite.
  EXPECT_NEAR(cross_entropy(x.to(DType::F32), y).item(), want, 1e-5);
  Tensor big = Tensor::from({2, 2}, {500.0, -500.0, 800.0, 700.0}, DType::F32);
  Tensor loss_big = cross_entropy(big, labels_of({1, 0}));
  EXPECT_NEAR(loss_big.item(), (1000.0 + std::log1p(std::exp(-100.0))) / 2, 1e-3);
}

TEST(CrossEntropy, GradientIsSoftmaxMinusOneHotOverN) {
  Tensor x = Tensor::from({2, 3}, {0.5, -1.0, 2.0, 0.0, 0.0, 0.0}, DType::F64).set_requires_grad(true);
  cross_entropy(x, labels_of({2, 0})).backward();
  double z0 = std::exp(0.5) + std::exp(-1.0) + std::exp(2.0);
  std::vector<double> want{std::exp(0.5) / z0 / 2,
                           std::exp(-1.0) / z0 / 2,
                           (std::exp(2.0) / z0 - 1) / 2,
                           (1.0 / 3 - 1) / 2,
                           1.0 / 6,
                           1.0 / 6};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(x.grad().item(i), want[i], 1e-15) << "element " << i;
}

TEST(CrossEntropy, BadLabelsAndShapesThrow) {
  Tensor x = Tensor::zeros({3, 4});
  expect_error([&] { cross_entropy(x, labels_of({0, 4, 1})); }, {"cross_entropy", "label 4", "row 1", "[0, 4)"});
  expect_error([&] { cross_entropy(x, labels_of({0, 1, -2})); }, {"cross_entropy", "label -2", "row 2"});
  expect_error([&] { cross_entropy(x, labels_of({0, 1})); }, {"cross_entropy", "[2]", "[3, 4]"});
  expect_error([&] { cross_entropy(x, Tensor::zeros({3})); }, {"cross_entropy", "i64", "f32[3]"});
  expect_error([&] { cross_entropy(Tensor::zeros({3, 4, 1}), labels_of({0, 1, 2})); }, {"cross_entropy", "[3, 4, 1]"});
  expect_error(
      [&] {
        cross_entropy(Tensor::zeros({0, 4}), Tensor::zeros({0}, DType::I64));
      },
      {"cross_entropy", "[0, 4]"});
  expect_error(
      [&] {
        cross_entropy(Tensor::zeros({3, 4}, DType::I64), labels_of({0, 1, 2}));
      },
      {"cross_entropy", "i64[3, 4]"});
  expect_error([] { log_softmax(Tensor::zeros({5})); }, {"log_softmax", "[5]"});
}

TEST(CrossEntropy, LabelsAreCopiedForBackward) {
  Tensor x = Tensor::from({2, 2}, {0.3, -0.2, 1.0, 0.5}, DType::F64).set_requires_grad(true);
  Tensor y = labels_of({0, 1});
  Tensor loss = cross_entropy(x, y);
  y.data<int64_t>()[0] = 1;  // a reused label buffer refilled before backward
  loss.backward();
  EXPECT_LT(x.grad().item(0), 0) << "row 0 must still push up its original label 0";
}

}  // namespace
}  // namespace ff::test
