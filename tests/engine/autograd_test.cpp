// Autograd semantics: accumulation, reuse of a tensor, frozen parameters, no_grad, detach, views.
#include <gtest/gtest.h>

#include "tests/engine/gradcheck.h"

namespace ff::test {
namespace {

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = Tensor::from({3}, {1.0, -2.0, 0.5}, DType::F64).set_requires_grad(true);
  sum(mul_scalar(x, 3.0)).backward();
  sum(mul_scalar(x, 3.0)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 6, 6}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  sum(x).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1, 1, 1}));
}

TEST(Autograd, TensorUsedTwiceInOneGraph) {
  Tensor x = Tensor::from({2}, {3.0, -1.5}, DType::F64).set_requires_grad(true);
  Tensor y = mul(x, x);  // d/dx = 2x
  Tensor z = add(y, x);  // d/dx = 2x + 1
  sum(z).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{7.0, -2.0}));
}

TEST(Autograd, FrozenParameterGetsNoGradient) {
  Tensor w = Tensor::from({2}, {1.0, 2.0}, DType::F64).set_requires_grad(true);
  Tensor frozen = Tensor::from({2}, {3.0, 4.0}, DType::F64);  // requires_grad false = frozen
  sum(mul(w, frozen)).backward();
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{3, 4}));
  EXPECT_FALSE(frozen.grad().defined());
  w.set_requires_grad(false);
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(mul(w, frozen).requires_grad());
}

TEST(Autograd, NoGradRecordsNothing) {
  Tensor x = Tensor::from({2}, {1.0, 2.0}, DType::F64).set_requires_grad(true);
  Tensor y;
  {
    NoGradGuard guard;
    y = mul_scalar(x, 2.0);
    EXPECT_FALSE(grad_enabled());
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_FALSE(y.requires_grad());
  EXPECT_THROW(sum(y).backward(), Error);
}

TEST(Autograd, DetachCutsTheGraphButSharesStorage) {
  Tensor x = Tensor::from({2}, {1.0, 2.0}, DType::F64).set_requires_grad(true);
  Tensor y = mul_scalar(x, 2.0);
  Tensor d = y.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.raw(), y.raw());
  sum(add(mul(y, d), x)).backward();  // d is a constant: d/dx = 2*d + 1
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{5, 9}));
}

TEST(Autograd, GradientFlowsThroughViews) {
  uint64_t seed = test_seed(21);
  Rng rng(seed);
  Tensor x = rand_input({4, 6}, rng);
  expect_gradcheck("reshape", [](const std::vector<Tensor>& in) { return square(in[0].reshape({2, 3, 4})); }, {x}, seed);
  expect_gradcheck("flatten", [](const std::vector<Tensor>& in) { return square(in[0].reshape({4, 2, 3}).flatten(1)); }, {x}, seed);
  expect_gradcheck("slice_batch", [](const std::vector<Tensor>& in) { return square(in[0].slice_batch(1, 3)); }, {x}, seed);
}

TEST(Autograd, SliceBatchIsAView) {
  Tensor x = Tensor::from({3, 2}, {1, 2, 3, 4, 5, 6}, DType::F64);
  Tensor s = x.slice_batch(1, 2);
  EXPECT_EQ(s.shape(), (Shape{1, 2}));
  EXPECT_EQ(s.to_vector(), (std::vector<double>{3, 4}));
  s.fill_(9);
  EXPECT_EQ(x.to_vector(), (std::vector<double>{1, 2, 9, 9, 5, 6}));
  EXPECT_THROW(x.slice_batch(2, 4), Error);
  EXPECT_THROW(x.reshape({4, 2}), Error);
}

TEST(Autograd, BackwardOfNonScalarNeedsAGradient) {
  Tensor x = Tensor::from({2}, {1.0, 2.0}, DType::F64).set_requires_grad(true);
  Tensor y = mul_scalar(x, 2.0);
  EXPECT_THROW(y.backward(), Error);
  y.backward(Tensor::from({2}, {1.0, 10.0}, DType::F64));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 20}));
}

// A shape whose element count does not fit is refused, not wrapped into a small allocation.
TEST(Tensor, OverflowingShapesAreRefused) {
  const int64_t big = int64_t{1} << 40;
  EXPECT_THROW(Tensor::empty({big, big}), Error);
  EXPECT_THROW(Tensor::empty({int64_t{1} << 61}, DType::F64), Error);
  EXPECT_THROW(shape_numel({int64_t{1} << 55, 512}), Error);
  EXPECT_EQ(shape_numel({big, 0, big}), 0);
  EXPECT_EQ(shape_numel({3, 5, 7}), 105);
}

TEST(Tensor, DtypeConversionsRoundTrip) {
  Tensor x = Tensor::from({3}, {1.5, -2.25, 3.0}, DType::F64);
  EXPECT_EQ(x.to(DType::F32).to(DType::F64).to_vector(), x.to_vector());
  EXPECT_THROW(x.data<float>(), Error);
}

}  // namespace
}  // namespace ff::test
