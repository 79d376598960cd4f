// Bitwise reproducibility of the elementwise, reduction, softmax/loss and l2_normalize ops, forward
// and backward: repeated runs, and 1, 2 and 3 OpenMP threads, give the same bytes.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "tests/engine/check_util.h"
#include "tests/engine/gradcheck.h"

namespace ff::test {
namespace {

// One op chain: given fresh inputs, runs forward and backward and returns outputs and gradients.
struct Chain {
  std::string name;
  std::function<std::vector<Tensor>()> run;
};

Tensor leaf(const Shape& s, Rng& rng, DType dt) {
  Tensor t = rand_uniform(s, rng, -2, 2, dt);
  t.set_requires_grad(true);
  return t;
}

// Sizes are above the kernels' 32768-element threshold for a parallel region, and not multiples
// of the thread counts, so each thread count splits the work differently.
std::vector<Chain> chains(Rng& rng, DType dt) {
  std::vector<Chain> out;
  {
    Tensor a = leaf({23, 129, 31}, rng, dt), b = leaf({129, 1}, rng, dt), c = leaf({31}, rng, dt);
    Tensor dy = rand_uniform({23, 129, 31}, rng, -1, 1, dt);
    out.push_back({"add/mul broadcast", [=]() mutable {
                     for (Tensor* t : {&a, &b, &c}) t->zero_grad();
                     Tensor y = mul(add(a, b), c);  // b's and c's gradients are broadcast reductions
                     sum(mul(y, dy)).backward();
                     return std::vector<Tensor>{y, a.grad(), b.grad(), c.grad()};
                   }});
  }
  {
    Tensor x = leaf({40, 53, 31}, rng, dt);
    std::vector<Tensor> dys;
    for (Shape s : {Shape{53, 31}, Shape{40, 1, 31}, Shape{40, 53}, Shape{40, 53, 1}})
      dys.push_back(rand_uniform(s, rng, -1, 1, dt));
    out.push_back({"sum/mean over a dim and all", [=]() mutable {
                     std::vector<Tensor> r;
                     auto step = [&](const Tensor& y, const Tensor& dy) {
                       x.zero_grad();
                       y.backward(dy);
                       r.push_back(y);
                       r.push_back(x.grad());
                     };
                     step(sum_dim(x, 0), dys[0]);
                     step(sum_dim(x, 1, true), dys[1]);
                     step(mean_dim(x, 2), dys[2]);
                     step(mean_dim(x, -1, true), dys[3]);
                     step(sum(x), Tensor());
                     step(mean(x), Tensor());
                     return r;
                   }});
  }
  {
    const int64_t N = 301, C = 257;
    Tensor x = leaf({N, C}, rng, dt), dy = rand_uniform({N, C}, rng, -1, 1, dt);
    std::vector<int64_t> y(N);
    for (auto& v : y) v = (int64_t)rng.below((uint64_t)C);
    Tensor labels = Tensor::from<int64_t>({N}, y);
    out.push_back({"log_softmax + cross_entropy", [=]() mutable {
                     x.zero_grad();
                     Tensor ls = log_softmax(x);
                     ls.backward(dy);
                     Tensor g1 = x.grad();
                     x.zero_grad();
                     Tensor ce = cross_entropy(x, labels);
                     ce.backward();
                     return std::vector<Tensor>{ls, g1, ce, x.grad()};
                   }});
  }
  {
    Tensor x = rand_uniform({301, 129}, rng, -2, 2, dt), dy = rand_uniform({301, 129}, rng, -1, 1, dt);
    std::fill_n(static_cast<char*>(x.raw()) + 7 * 129 * dtype_size(dt), 129 * dtype_size(dt), 0);  // eps branch
    x.set_requires_grad(true);
    out.push_back({"l2_normalize", [=]() mutable {
                     x.zero_grad();
                     Tensor n = l2_normalize(x);
                     n.backward(dy);
                     return std::vector<Tensor>{n, x.grad()};
                   }});
  }
  return out;
}

TEST(Determinism, RepeatedRunsAndThreadCountsGiveTheSameBytes) {
  uint64_t seed = test_seed(61);
  for (DType dt : {DType::F32, DType::F64}) {
    Rng rng(seed);
    for (Chain& c : chains(rng, dt)) {
      std::vector<Tensor> ref = with_threads(1, c.run);
      double worst = 0;
      size_t values = 0;
      for (const Tensor& t : ref) values += (size_t)t.numel();
      for (int threads : {1, 2, 2, 3}) {  // the second 1 and 2 are repeated runs
        std::vector<Tensor> again = with_threads(threads, c.run);
        worst = std::max(
            worst, expect_bitwise_equal(
                       ref, again, c.name + " " + dtype_name(dt) + " " + std::to_string(threads) + " threads vs 1"));
      }
      std::printf("[determinism] %-28s %s seed %llu %zu values, 1/1/2/2/3 threads: max |diff| %.2e\n", c.name.c_str(),
                  dtype_name(dt), (unsigned long long)seed, values, worst);
    }
  }
}

// The comparison itself must notice a change of one bit, or the test above could not fail.
TEST(Determinism, ComparisonSeesOneBit) {
  Tensor a = Tensor::from({3}, {1.0, 2.0, 3.0}), b = a.clone();
  static_cast<unsigned char*>(b.raw())[4] ^= 1;  // lowest mantissa bit of element 1
  double worst = 0;
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter intercept(&failures);
    worst = expect_bitwise_equal({a}, {b}, "one bit");
  }
  EXPECT_EQ(failures.size(), 1);
  EXPECT_GT(worst, 0.0);
}

}  // namespace
}  // namespace ff::test
