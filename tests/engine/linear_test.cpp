// matmul and linear: finite-difference gradients in f64, f32 values against plain loops,
// bitwise reproducibility, and shape errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>

#include "kernels/cpu/gemm.h"
#include "tests/engine/check_util.h"
#include "tests/engine/gradcheck.h"

namespace ff::test {
namespace {

std::vector<double> naive_matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const int64_t M = a.size(ta ? 1 : 0), K = a.size(ta ? 0 : 1), N = b.size(tb ? 0 : 1);
  const std::vector<double> av = a.to_vector(), bv = b.to_vector();
  // Element (i, j) of op(t) for t stored with `cols` columns.
  auto at = [](const std::vector<double>& v, int64_t cols, bool trans, int64_t i, int64_t j) {
    return trans ? v[(size_t)(j * cols + i)] : v[(size_t)(i * cols + j)];
  };
  std::vector<double> c((size_t)(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < K; ++k) c[i * N + j] += at(av, a.size(1), ta, i, k) * at(bv, b.size(1), tb, k, j);
  return c;
}

// Stored shape of an operand whose op() is [rows, cols].
Shape stored(int64_t rows, int64_t cols, bool trans) { return trans ? Shape{cols, rows} : Shape{rows, cols}; }

std::string tag(bool ta, bool tb) { return std::string(ta ? "T" : "N") + (tb ? "T" : "N"); }

TEST(Matmul, GradientsMatchFiniteDifferencesForEveryTranspose) {
  uint64_t seed = test_seed(21);
  Rng rng(seed);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = rand_input(stored(3, 4, ta), rng), b = rand_input(stored(4, 5, tb), rng);
      expect_gradcheck(
          "matmul " + tag(ta, tb), [ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); },
          {a, b}, seed);
    }
}

TEST(Matmul, GradientOfOneOperandOnly) {
  uint64_t seed = test_seed(22);
  Rng rng(seed);
  Tensor a = rand_input({2, 3}, rng);
  Tensor b = rand_uniform({3, 4}, rng, -1, 1, DType::F64);  // constant
  expect_gradcheck(
      "matmul a only", [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, b}, seed);
  EXPECT_FALSE(b.grad().defined());
}

TEST(Matmul, F32ValuesMatchLoops) {
  uint64_t seed = test_seed(23);
  std::printf("seed %llu\n", (unsigned long long)seed);
  Rng rng(seed);
  // 40 x 70 x 400 is above the size at which the product is split over threads.
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = rand_uniform(stored(40, 70, ta), rng, -1, 1), b = rand_uniform(stored(70, 400, tb), rng, -1, 1);
      Tensor c = matmul(a, b, ta, tb);
      ASSERT_EQ(c.shape(), (Shape{40, 400}));
      std::vector<double> ref = naive_matmul(a, b, ta, tb);
      double worst = 0;
      for (int64_t i = 0; i < c.numel(); ++i) worst = std::max(worst, std::fabs(c.item(i) - ref[(size_t)i]));
      EXPECT_LT(worst, 2e-5) << tag(ta, tb);
    }
}

// The pieces of gemm_parallel on three threads, for every transpose: slabs of C (here 512 + 488
// wide) along N (wide C) and along M (tall C), and chunks of K (4 x 750) for a small C. Checks
// C = 2 op(A) op(B) + 3 C, and that beta = 0 ignores what C held (NaN here).
TEST(Matmul, ParallelPiecesMatchLoops) {
  uint64_t seed = test_seed(24);
  std::printf("seed %llu\n", (unsigned long long)seed);
  Rng rng(seed);
  int keep = omp_get_max_threads();
  omp_set_num_threads(3);
  struct Case {
    int64_t M, N, K;  // 500 x 37 x 64 and 750 x 37 x 40 are just over the 1 MFLOP a piece needs
  };
  for (const Case& s : {Case{37, 1000, 64}, Case{1000, 37, 64}, Case{37, 40, 3000}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const float beta = ta == tb ? 3.f : 0.f;
        Tensor a = rand_uniform(stored(s.M, s.K, ta), rng, -1, 1), b = rand_uniform(stored(s.K, s.N, tb), rng, -1, 1);
        Tensor c = Tensor::full({s.M, s.N}, beta == 0 ? std::nan("") : 0.5);
        cpu::gemm_parallel<float>(ta, tb, s.M, s.N, s.K, 2.f, a.data<float>(), a.size(1), b.data<float>(), b.size(1),
                                  beta, c.data<float>(), s.N);
        std::vector<double> ref = naive_matmul(a, b, ta, tb), got = c.to_vector();
        double worst = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          double want = 2 * ref[i] + (beta == 0 ? 0.0 : 1.5);
          double err = std::fabs(got[i] - want);
          worst = std::isnan(err) ? INFINITY : std::max(worst, err);
        }
        EXPECT_LT(worst, 1e-4) << s.M << "x" << s.N << "x" << s.K << " " << tag(ta, tb) << " beta " << beta;
      }
  omp_set_num_threads(keep);
}

TEST(Matmul, RepeatedRunsAreBitwiseEqual) {
  uint64_t seed = test_seed(25);
  std::printf("seed %llu\n", (unsigned long long)seed);
  Rng rng(seed);
  Tensor a = rand_uniform({64, 300}, rng, -1, 1), b = rand_uniform({300, 257}, rng, -1, 1);
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  std::vector<std::vector<float>> runs[2];
  for (auto& run : runs) {
    a.zero_grad();
    b.zero_grad();
    Tensor c = matmul(a, b);
    sum(square(c)).backward();
    for (const Tensor& t : {c, a.grad(), b.grad()}) run.emplace_back(t.data<float>(), t.data<float>() + t.numel());
  }
  for (size_t i = 0; i < runs[0].size(); ++i)
    EXPECT_EQ(std::memcmp(runs[0][i].data(), runs[1][i].data(), runs[0][i].size() * sizeof(float)), 0) << i;
}

TEST(Linear, GradientsMatchFiniteDifferences) {
  uint64_t seed = test_seed(26);
  Rng rng(seed);
  Tensor x = rand_input({3, 5}, rng), w = rand_input({4, 5}, rng), b = rand_input({4}, rng);
  expect_gradcheck(
      "linear with bias", [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }, {x, w, b}, seed);
  expect_gradcheck(
      "linear without bias", [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); }, {x, w}, seed);
  Tensor x1 = rand_input({1, 7}, rng), w1 = rand_input({3, 7}, rng), b1 = rand_input({3}, rng);
  expect_gradcheck(
      "linear batch 1", [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }, {x1, w1, b1}, seed);
}

TEST(Linear, F32ValuesMatchLoops) {
  uint64_t seed = test_seed(27);
  std::printf("seed %llu\n", (unsigned long long)seed);
  Rng rng(seed);
  Tensor x = rand_uniform({33, 129}, rng, -1, 1), w = rand_uniform({257, 129}, rng, -1, 1),
         b = rand_uniform({257}, rng, -1, 1);
  std::vector<double> ref = naive_matmul(x, w, false, true);
  Tensor y = linear(x, w, b), y0 = linear(x, w);
  ASSERT_EQ(y.shape(), (Shape{33, 257}));
  double worst = 0;
  for (int64_t i = 0; i < 33; ++i)
    for (int64_t j = 0; j < 257; ++j) {
      worst = std::max(worst, std::fabs(y.item(i * 257 + j) - (ref[(size_t)(i * 257 + j)] + b.item(j))));
      worst = std::max(worst, std::fabs(y0.item(i * 257 + j) - ref[(size_t)(i * 257 + j)]));
    }
  EXPECT_LT(worst, 2e-5);
}

TEST(Matmul, ResultsDoNotDependOnThreadCount) {
  uint64_t seed = test_seed(28);
  std::printf("seed %llu\n", (unsigned long long)seed);
  Rng rng(seed);
  // Slabs of C, and chunks of K (x [32, 4096] through a 4096 -> 64 layer).
  Tensor a = rand_uniform({48, 700}, rng, -1, 1), b = rand_uniform({700, 900}, rng, -1, 1);
  Tensor x = rand_uniform({32, 4096}, rng, -1, 1), w = rand_uniform({64, 4096}, rng, -1, 1);
  const int keep = omp_get_max_threads();
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    runs.emplace_back();
    for (const Tensor& t : {matmul(a, b), matmul(b, a, true, true), linear(x, w)})
      runs.back().insert(runs.back().end(), t.data<float>(), t.data<float>() + t.numel());
  }
  omp_set_num_threads(keep);
  EXPECT_TRUE(runs[0] == runs[1] && runs[0] == runs[2]);
}

TEST(Linear, BadShapesAndDtypesNameTheOp) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 5});
  expect_error([&] { matmul(a, b); }, {"matmul", "[2, 3]", "[4, 5]"});
  expect_error([&] { matmul(a, Tensor::zeros({3, 2}), true, false); }, {"matmul", "[2, 3]", "[3, 2]"});
  expect_error([&] { matmul(Tensor::zeros({6}), b); }, {"matmul", "2-D", "[6]"});
  expect_error([&] { matmul(a, Tensor::zeros({3, 2}, DType::F64)); }, {"matmul", "dtype"});
  expect_error(
      [&] {
        matmul(Tensor::zeros({2, 3}, DType::I64), Tensor::zeros({3, 2}, DType::I64));
      },
      {"matmul", "i64"});
  expect_error([&] { linear(a, Tensor::zeros({4, 2})); }, {"linear", "[2, 3]", "[4, 2]"});
  expect_error([&] { linear(a, Tensor::zeros({4, 3}), Tensor::zeros({5})); }, {"linear", "bias", "[5]", "[4]"});
  expect_error([&] { linear(a, Tensor::zeros({4, 3}), Tensor::zeros({4, 1})); }, {"linear", "bias", "[4, 1]"});
  expect_error([&] { linear(Tensor::zeros({2, 3, 1}), Tensor::zeros({4, 3})); }, {"linear", "[2, 3, 1]"});
}

}  // namespace
}  // namespace ff::test
