// Gradient checks of the elementwise and reduction ops, and values against plain loops.
#include <gtest/gtest.h>

#include "tests/engine/check_util.h"
#include "tests/engine/gradcheck.h"

namespace ff::test {
namespace {

struct BroadcastCase {
  Shape a, b;
};

class BinaryBroadcast : public ::testing::TestWithParam<BroadcastCase> {};

TEST_P(BinaryBroadcast, GradientsMatchFiniteDifferences) {
  const auto& c = GetParam();
  uint64_t seed = test_seed(11);
  Rng rng(seed);
  Tensor a = rand_input(c.a, rng), b = rand_input(c.b, rng, 0.5, 1.5);  // b away from 0 for div
  std::string tag = shape_str(c.a) + " op " + shape_str(c.b);
  expect_gradcheck("add " + tag, [](const std::vector<Tensor>& in) { return add(in[0], in[1]); }, {a, b}, seed);
  expect_gradcheck("sub " + tag, [](const std::vector<Tensor>& in) { return sub(in[0], in[1]); }, {a, b}, seed);
  expect_gradcheck("mul " + tag, [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, b}, seed);
  expect_gradcheck("div " + tag, [](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {a, b}, seed);
}

INSTANTIATE_TEST_SUITE_P(Shapes, BinaryBroadcast,
                         ::testing::Values(BroadcastCase{{3, 5}, {3, 5}}, BroadcastCase{{2, 3, 4}, {4}},
                                           BroadcastCase{{2, 3, 1, 5}, {3, 4, 1}}, BroadcastCase{{1}, {2, 3}},
                                           BroadcastCase{{1, 3, 2, 2}, {1, 3, 1, 1}}));

TEST(Elementwise, BroadcastValuesMatchLoops) {
  Rng rng(test_seed(3));
  Tensor a = rand_uniform({2, 3, 4}, rng, -1, 1, DType::F64), b = rand_uniform({3, 1}, rng, -1, 1, DType::F64);
  Tensor c = add(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 4}));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) EXPECT_DOUBLE_EQ(c.item(i * 12 + j * 4 + k), a.item(i * 12 + j * 4 + k) + b.item(j));
}

TEST(Elementwise, UnaryGradients) {
  uint64_t seed = test_seed(5);
  Rng rng(seed);
  Tensor x = rand_input({3, 7}, rng);
  // Keep inputs away from the kinks of relu and clamp so central differences are exact enough.
  double* p = x.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i)
    if (std::fabs(p[i]) < 0.05 || std::fabs(std::fabs(p[i]) - 0.5) < 0.05) p[i] += 0.12;
  expect_gradcheck("relu", [](const std::vector<Tensor>& in) { return relu(in[0]); }, {x}, seed);
  expect_gradcheck("clamp", [](const std::vector<Tensor>& in) { return clamp(in[0], -0.5, 0.5); }, {x}, seed);
  expect_gradcheck("square", [](const std::vector<Tensor>& in) { return square(in[0]); }, {x}, seed);
  expect_gradcheck("add_scalar", [](const std::vector<Tensor>& in) { return add_scalar(in[0], 0.3); }, {x}, seed);
  expect_gradcheck("mul_scalar", [](const std::vector<Tensor>& in) { return mul_scalar(in[0], -1.7); }, {x}, seed);
}

TEST(Elementwise, ClampAndReluValues) {
  Tensor x = Tensor::from({4}, {-2.0, -0.1, 0.3, 5.0}, DType::F64);
  EXPECT_EQ(clamp(x, -1, 1).to_vector(), (std::vector<double>{-1, -0.1, 0.3, 1}));
  EXPECT_EQ(relu(x).to_vector(), (std::vector<double>{0, 0, 0.3, 5.0}));
}

TEST(Reduce, GradientsMatchFiniteDifferences) {
  uint64_t seed = test_seed(7);
  Rng rng(seed);
  Tensor x = rand_input({2, 3, 5}, rng);
  expect_gradcheck("sum", [](const std::vector<Tensor>& in) { return sum(in[0]); }, {x}, seed);
  expect_gradcheck("mean", [](const std::vector<Tensor>& in) { return mean(in[0]); }, {x}, seed);
  for (int64_t d = 0; d < 3; ++d) {
    expect_gradcheck("sum_dim " + std::to_string(d), [d](const std::vector<Tensor>& in) { return sum_dim(in[0], d); }, {x}, seed);
    expect_gradcheck("mean_dim keepdim " + std::to_string(d), [d](const std::vector<Tensor>& in) { return mean_dim(in[0], d, true); },
                     {x}, seed);
  }
}

TEST(Reduce, ValuesMatchLoops) {
  Rng rng(test_seed(9));
  Tensor x = rand_uniform({4, 6}, rng, -1, 1, DType::F64);
  double total = 0;
  for (int64_t i = 0; i < 24; ++i) total += x.item(i);
  EXPECT_NEAR(sum(x).item(), total, 1e-12);
  EXPECT_NEAR(mean(x).item(), total / 24, 1e-12);
  Tensor s1 = sum_dim(x, 1);
  for (int r = 0; r < 4; ++r) {
    double row = 0;
    for (int c = 0; c < 6; ++c) row += x.item(r * 6 + c);
    EXPECT_NEAR(s1.item(r), row, 1e-12);
  }
}

TEST(Elementwise, MismatchedShapesNameTheOp) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  expect_error([&] { add(a, b); }, {"add", "[2, 3]", "[4]", "do not broadcast"});
  // Trailing dims agree, a leading one does not: the check must cover every dim, for each op.
  Tensor c = Tensor::zeros({2, 3, 4}), d = Tensor::zeros({5, 1, 4});
  expect_error([&] { add(c, d); }, {"add", "[2, 3, 4]", "[5, 1, 4]", "do not broadcast"});
  expect_error([&] { sub(d, c); }, {"sub", "[5, 1, 4]", "[2, 3, 4]"});
  expect_error([&] { mul(c, d); }, {"mul", "[2, 3, 4]", "[5, 1, 4]"});
  expect_error([&] { div(c, d); }, {"div", "[2, 3, 4]", "[5, 1, 4]"});
}

TEST(Elementwise, MismatchedDtypesNameTheOpAndBothTensors) {
  Tensor a = Tensor::zeros({2}), b = Tensor::zeros({2}, DType::F64);
  a.set_name("lhs");
  b.set_name("rhs");
  expect_error([&] { add(a, b); }, {"add", "dtype", "'lhs' f32[2]", "'rhs' f64[2]"});
  expect_error([&] { mul(b, a); }, {"mul", "dtype", "'rhs' f64[2]", "'lhs' f32[2]"});
}

TEST(Reduce, BadDimNamesTheOpAndTensor) {
  Tensor x = Tensor::zeros({2, 3});
  expect_error([&] { sum_dim(x, 2); }, {"sum_dim", "dim 2 out of range", "f32[2, 3]"});
  expect_error([&] { sum_dim(x, -3); }, {"sum_dim", "dim -3 out of range", "f32[2, 3]"});
  expect_error([&] { mean_dim(x, 5, true); }, {"mean_dim", "dim 5 out of range", "f32[2, 3]"});
  expect_error([&] { mean_dim(Tensor::zeros({}), 0); }, {"mean_dim", "dim 0 out of range", "f32[]"});
  // log_softmax has no dim argument (always the last of [N, C]); it refuses other ranks.
  expect_error([&] { log_softmax(Tensor::zeros({2, 3, 4})); }, {"log_softmax", "2-D", "f32[2, 3, 4]"});
  expect_error([&] { log_softmax(Tensor::zeros({6})); }, {"log_softmax", "2-D", "f32[6]"});
}

}  // namespace
}  // namespace ff::test
