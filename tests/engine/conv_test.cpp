// conv2d: finite-difference gradients in f64 for every option, f32 values (forward and both
// backward products) against a direct-loop convolution, bitwise reproducibility, shape errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>

#include "tests/engine/check_util.h"
#include "tests/engine/gradcheck.h"

namespace ff::test {
namespace {

struct ConvCase {
  int64_t n, cin, h, w, cout, kh, kw;
  Conv2dOptions opt;
  bool bias;
  std::string name;
};

std::ostream& operator<<(std::ostream& os, const ConvCase& c) { return os << c.name; }

Conv2dOptions opts(int64_t stride, int64_t pad, int64_t groups) { return {stride, stride, pad, pad, groups}; }

// Direct loops: y = conv(x, w) + b, and dx, dw, db for an output gradient dy, all in double.
struct Naive {
  int64_t n, cin, h, w, cout, kh, kw, oh, ow, cin_g, cout_g;
  Conv2dOptions o;
  Naive(const ConvCase& c) : n(c.n), cin(c.cin), h(c.h), w(c.w), cout(c.cout), kh(c.kh), kw(c.kw), o(c.opt) {
    oh = (h + 2 * o.pad_h - kh) / o.stride_h + 1;
    ow = (w + 2 * o.pad_w - kw) / o.stride_w + 1;
    cin_g = cin / o.groups;
    cout_g = cout / o.groups;
  }
  // Calls f(x index, w index, y index) for every product term of the convolution.
  template <class F>
  void each_term(F f) const {
    for (int64_t b = 0; b < n; ++b)
      for (int64_t co = 0; co < cout; ++co)
        for (int64_t y = 0; y < oh; ++y)
          for (int64_t x = 0; x < ow; ++x)
            for (int64_t ci = 0; ci < cin_g; ++ci)
              for (int64_t i = 0; i < kh; ++i)
                for (int64_t j = 0; j < kw; ++j) {
                  int64_t ih = y * o.stride_h - o.pad_h + i, iw = x * o.stride_w - o.pad_w + j;
                  if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                  int64_t c = co / cout_g * cin_g + ci;
                  f(((b * cin + c) * h + ih) * w + iw, ((co * cin_g + ci) * kh + i) * kw + j,
                    ((b * cout + co) * oh + y) * ow + x);
                }
  }
};

double worst_diff(const Tensor& t, const std::vector<double>& ref) {
  EXPECT_EQ((size_t)t.numel(), ref.size());
  double worst = 0;
  for (int64_t i = 0; i < t.numel(); ++i) worst = std::max(worst, std::fabs(t.item(i) - ref[(size_t)i]));
  return worst;
}

Tensor run_conv(const std::vector<Tensor>& in, const Conv2dOptions& o) {
  return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), o);
}

class ConvGrad : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvGrad, GradientsMatchFiniteDifferences) {
  const ConvCase& c = GetParam();
  uint64_t seed = test_seed(31);
  Rng rng(seed);
  std::vector<Tensor> in{rand_input({c.n, c.cin, c.h, c.w}, rng),
                         rand_input({c.cout, c.cin / c.opt.groups, c.kh, c.kw}, rng)};
  if (c.bias) in.push_back(rand_input({c.cout}, rng));
  Conv2dOptions o = c.opt;
  expect_gradcheck(
      "conv2d " + c.name, [o](const std::vector<Tensor>& v) { return run_conv(v, o); }, in, seed);
}

INSTANTIATE_TEST_SUITE_P(
    Options, ConvGrad,
    ::testing::Values(ConvCase{1, 3, 5, 4, 5, 3, 3, opts(1, 1, 1), true, "batch1_3x3_s1_p1"},
                      ConvCase{2, 3, 6, 5, 4, 3, 3, opts(2, 1, 1), false, "3x3_s2_p1_nobias"},
                      ConvCase{2, 3, 7, 6, 5, 3, 3, opts(2, 0, 1), true, "3x3_s2_p0"},
                      ConvCase{2, 4, 5, 6, 6, 3, 3, opts(1, 0, 2), true, "groups2_s1_p0"},
                      ConvCase{2, 6, 6, 5, 4, 3, 3, opts(2, 1, 2), false, "groups2_s2_p1_nobias"},
                      ConvCase{2, 3, 5, 6, 3, 3, 3, opts(1, 1, 3), true, "depthwise_s1_p1"},
                      ConvCase{2, 3, 7, 5, 6, 3, 3, opts(2, 0, 3), false, "depthwise_x2_s2_p0_nobias"},
                      ConvCase{2, 5, 4, 3, 3, 1, 1, opts(1, 0, 1), true, "1x1_s1"},
                      ConvCase{1, 5, 4, 3, 3, 1, 1, opts(1, 0, 1), false, "batch1_1x1_s1_nobias"},
                      ConvCase{2, 4, 5, 6, 6, 1, 1, opts(2, 0, 1), false, "1x1_s2_downsample"},
                      ConvCase{2, 3, 5, 6, 4, 1, 3, Conv2dOptions{2, 1, 0, 1, 1}, true, "1x3_stride21_pad01"},
                      ConvCase{2, 4, 4, 3, 2, 3, 3, opts(1, 1, 2), true, "groups2_one_output_each"},
                      ConvCase{2, 3, 4, 5, 4, 1, 1, opts(1, 1, 1), true, "1x1_p1_wider_than_kernel"},
                      // 16+ input channels per group: the input gradient runs as a flipped convolution.
                      ConvCase{1, 16, 4, 3, 3, 3, 3, opts(1, 1, 1), true, "16_channels_s1_p1"},
                      ConvCase{1, 32, 4, 3, 4, 3, 3, opts(1, 0, 2), false, "groups2_16_channels_each_p0"}),
    [](const ::testing::TestParamInfo<ConvCase>& i) { return i.param.name; });

// f32 convolution against the direct loops at moderate sizes, forward and backward.
class ConvValues : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvValues, F32MatchesDirectLoops) {
  const ConvCase& c = GetParam();
  uint64_t seed = test_seed(41);
  std::printf("seed %llu\n", (unsigned long long)seed);
  Rng rng(seed);
  Tensor x = rand_uniform({c.n, c.cin, c.h, c.w}, rng, -1, 1);
  Tensor w = rand_uniform({c.cout, c.cin / c.opt.groups, c.kh, c.kw}, rng, -1, 1);
  Tensor b = rand_uniform({c.cout}, rng, -1, 1);
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  Tensor y = conv2d(x, w, c.bias ? b : Tensor(), c.opt);
  Naive nv(c);
  ASSERT_EQ(y.shape(), (Shape{c.n, c.cout, nv.oh, nv.ow}));
  Tensor dy = rand_uniform(y.shape(), rng, -1, 1);
  sum(mul(y, dy)).backward();

  std::vector<double> xv = x.to_vector(), wv = w.to_vector(), dyv = dy.to_vector();
  std::vector<double> ry((size_t)y.numel(), 0.0), rdx(xv.size(), 0.0), rdw(wv.size(), 0.0), rdb((size_t)c.cout, 0.0);
  nv.each_term([&](int64_t xi, int64_t wi, int64_t yi) {
    ry[(size_t)yi] += xv[(size_t)xi] * wv[(size_t)wi];
    rdx[(size_t)xi] += dyv[(size_t)yi] * wv[(size_t)wi];
    rdw[(size_t)wi] += dyv[(size_t)yi] * xv[(size_t)xi];
  });
  const int64_t plane = nv.oh * nv.ow;
  for (int64_t i = 0; i < y.numel(); ++i) {
    int64_t co = i / plane % c.cout;
    if (c.bias) ry[(size_t)i] += b.item(co);
    rdb[(size_t)co] += dyv[(size_t)i];
  }
  // Sums of up to ~150 products of values in [-1, 1] for y and dx; dw and db sum a whole batch.
  EXPECT_LT(worst_diff(y, ry), 1e-4);
  EXPECT_LT(worst_diff(x.grad(), rdx), 1e-4);
  EXPECT_LT(worst_diff(w.grad(), rdw), 1e-4 * (double)(c.n * plane) / 32);
  if (c.bias)
    EXPECT_LT(worst_diff(b.grad(), rdb), 1e-4 * (double)(c.n * plane) / 32);
  else
    EXPECT_FALSE(b.grad().defined());
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, ConvValues,
    ::testing::Values(ConvCase{2, 16, 9, 7, 24, 3, 3, opts(1, 1, 1), true, "n2_16x9x7_to24_3x3_s1_p1"},
                      ConvCase{2, 16, 9, 7, 24, 3, 3, opts(2, 1, 1), false, "n2_16x9x7_to24_3x3_s2_p1"},
                      ConvCase{2, 16, 9, 7, 24, 3, 3, opts(1, 0, 2), true, "n2_16x9x7_to24_groups2"},
                      ConvCase{2, 32, 9, 7, 24, 3, 3, opts(1, 1, 2), true, "n2_32x9x7_to24_groups2"},
                      ConvCase{2, 16, 9, 7, 32, 3, 3, opts(2, 1, 16), true, "n2_16x9x7_to32_depthwise_s2"},
                      ConvCase{2, 16, 9, 7, 24, 1, 1, opts(2, 0, 1), false, "n2_16x9x7_to24_1x1_s2"},
                      // Several images per GEMM, and an uneven last group (10 x 2 + 1 images).
                      ConvCase{21, 3, 10, 10, 4, 3, 3, opts(1, 1, 1), true, "n21_10x10_uneven_image_groups"},
                      ConvCase{16, 16, 6, 5, 8, 3, 3, opts(1, 1, 1), false, "n16_16x6x5_image_groups"},
                      // Images cut into bands of rows (8, 8, 8, 8, 7 and 4 x 16 + 2) written straight
                      // into the output.
                      ConvCase{5, 3, 39, 39, 4, 3, 3, opts(1, 1, 1), true, "n5_39x39_row_bands"},
                      ConvCase{3, 2, 66, 64, 3, 3, 3, opts(1, 1, 1), true, "n3_66x64_row_bands"},
                      ConvCase{2, 3, 66, 64, 5, 3, 3, opts(2, 1, 1), false, "n2_66x64_row_bands_s2"},
                      ConvCase{2, 3, 64, 64, 5, 1, 1, opts(1, 0, 1), true, "n2_64x64_1x1_no_im2col"}),
    [](const ::testing::TestParamInfo<ConvCase>& i) { return i.param.name; });

TEST(Conv2d, RepeatedRunsAreBitwiseEqual) {
  uint64_t seed = test_seed(51);
  std::printf("seed %llu\n", (unsigned long long)seed);
  for (int64_t groups : {1, 16}) {
    Rng rng(seed);
    Tensor x = rand_uniform({4, 16, 40, 40}, rng, -1, 1), w = rand_uniform({32, 16 / groups, 3, 3}, rng, -1, 1),
           b = rand_uniform({32}, rng, -1, 1), dy = rand_uniform({4, 32, 20, 20}, rng, -1, 1);
    for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
    std::vector<std::vector<char>> runs[2];
    for (auto& run : runs) {
      for (Tensor* t : {&x, &w, &b}) t->zero_grad();
      Tensor y = conv2d(x, w, b, opts(2, 1, groups));
      sum(mul(y, dy)).backward();
      for (const Tensor& t : {y, x.grad(), w.grad(), b.grad()}) {
        const char* p = static_cast<const char*>(t.raw());
        run.emplace_back(p, p + t.nbytes());
      }
    }
    for (size_t i = 0; i < runs[0].size(); ++i)
      EXPECT_TRUE(runs[0][i] == runs[1][i]) << "groups " << groups << " output " << i;
  }
}

// No reduction is split by thread: 1, 2, 3 and 5 threads give the same bytes, whether the work
// items (an image, or a group of small images) are spread over the threads (items >= 2 x threads)
// or each item's GEMMs are.
TEST(Conv2d, ResultsDoNotDependOnThreadCount) {
  uint64_t seed = test_seed(52);
  std::printf("seed %llu\n", (unsigned long long)seed);
  Rng rng(seed);
  struct Case {
    Shape x;
    int64_t groups, stride;
  };
  for (const Case& c : {Case{{5, 16, 30, 34}, 1, 1}, Case{{5, 16, 30, 34}, 2, 2}, Case{{5, 16, 30, 34}, 16, 1},
                        Case{{6, 16, 64, 64}, 1, 1}, Case{{6, 4, 64, 64}, 1, 2}, Case{{6, 4, 64, 64}, 2, 1},
                        Case{{16, 16, 8, 8}, 1, 1}, Case{{16, 4, 8, 8}, 1, 2}}) {
    const int64_t cin = c.x[1], cout = 2 * cin;
    Tensor x = rand_uniform(c.x, rng, -1, 1), w = rand_uniform({cout, cin / c.groups, 3, 3}, rng, -1, 1),
           b = rand_uniform({cout}, rng, -1, 1);
    for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
    std::vector<std::vector<char>> runs;
    const int keep = omp_get_max_threads();
    for (int threads : {1, 2, 3, 5}) {
      omp_set_num_threads(threads);
      for (Tensor* t : {&x, &w, &b}) t->zero_grad();
      Tensor y = conv2d(x, w, b, opts(c.stride, 1, c.groups));
      sum(square(y)).backward();
      std::vector<char> bytes;
      for (const Tensor& t : {y, x.grad(), w.grad(), b.grad()}) {
        const char* p = static_cast<const char*>(t.raw());
        bytes.insert(bytes.end(), p, p + t.nbytes());
      }
      runs.push_back(std::move(bytes));
    }
    omp_set_num_threads(keep);
    for (size_t i = 1; i < runs.size(); ++i)
      EXPECT_TRUE(runs[0] == runs[i]) << shape_str(c.x) << " groups " << c.groups << " stride " << c.stride << " run "
                                      << i;
  }
}

TEST(Conv2d, BadShapesNameTheOpAndShapes) {
  Tensor x = Tensor::zeros({2, 6, 8, 8}), w = Tensor::zeros({4, 6, 3, 3});
  expect_error([&] { conv2d(Tensor::zeros({6, 8, 8}), w, Tensor(), {}); }, {"conv2d", "4-D", "[6, 8, 8]"});
  expect_error([&] { conv2d(x, Tensor::zeros({4, 6, 3}), Tensor(), {}); }, {"conv2d", "weight", "[4, 6, 3]"});
  expect_error(
      [&] {
        conv2d(x, Tensor::zeros({4, 2, 3, 3}), Tensor(), opts(1, 0, 4));
      },
      {"conv2d", "divisible by groups 4", "[2, 6, 8, 8]"});
  expect_error(
      [&] {
        conv2d(x, Tensor::zeros({5, 3, 3, 3}), Tensor(), opts(1, 0, 2));
      },
      {"conv2d", "divisible by groups 2", "[5, 3, 3, 3]"});
  expect_error(
      [&] {
        conv2d(x, Tensor::zeros({4, 5, 3, 3}), Tensor(), {});
      },
      {"conv2d", "[4, 5, 3, 3]", "expected weight dim 1 = 6"});
  expect_error([&] { conv2d(x, w, Tensor::zeros({5}), {}); }, {"conv2d", "bias", "[5]", "expected [4]"});
  expect_error(
      [&] {
        conv2d(x, Tensor::zeros({4, 6, 9, 9}), Tensor(), {});
      },
      {"conv2d", "larger than", "[2, 6, 8, 8]"});
  expect_error([&] { conv2d(x, w, Tensor(), opts(0, 0, 1)); }, {"conv2d", "stride (0, 0)"});
  expect_error([&] { conv2d(x, Tensor::zeros({4, 6, 3, 3}, DType::F64), Tensor(), {}); }, {"conv2d", "dtype"});
  expect_error([&] { conv2d(x, w, Tensor::zeros({4}, DType::F64), {}); }, {"conv2d", "dtype"});
}

}  // namespace
}  // namespace ff::test
