// Loader: coverage per epoch, rank sharding, drop-last, determinism across workers, resume,
// normalisation, flip, resize, error propagation; and the augmentation functions.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <set>
#include <stdexcept>

#include "data/augment.h"
#include "data/loader.h"
#include "engine/error.h"
#include "engine/rng.h"

namespace ff::data {
namespace {

uint64_t seed_for(const char* test, uint64_t fallback) {
  const char* env = std::getenv("FLATFACE_TEST_SEED");
  const uint64_t s = env ? std::strtoull(env, nullptr, 10) : fallback;
  std::printf("[%s] seed %llu (FLATFACE_TEST_SEED overrides)\n", test, (unsigned long long)s);
  return s;
}

// Images of random pixels fixed at construction; label = index % classes. Can fail on one index.
class MemoryDataset final : public Dataset {
 public:
  MemoryDataset(size_t n, int h, int w, uint64_t seed, int channels = 3, int64_t classes = 5)
      : classes_(classes) {
    Rng rng(seed);
    for (size_t i = 0; i < n; ++i) {
      Image img(h, w, channels);
      for (auto& p : img.pixels) p = (uint8_t)rng.below(256);
      images_.push_back(std::move(img));
    }
  }
  size_t size() const override { return images_.size(); }
  int64_t num_classes() const override { return classes_; }
  Sample get(size_t i) const override {
    if ((int64_t)i == fail_at) throw std::runtime_error("disk on fire");
    return {images_.at(i), label(i)};
  }
  int64_t label(size_t i) const override { return (int64_t)i % classes_; }
  std::string describe(size_t i) const override { return "memory#" + std::to_string(i); }
  const Image& image(size_t i) const { return images_[i]; }
  Image& edit(size_t i) { return images_[i]; }
  std::atomic<int64_t> fail_at{-1};  // changed while workers prefetch

 private:
  std::vector<Image> images_;
  int64_t classes_;
};

LoaderConfig small_config(int h, int w, int64_t batch, uint64_t seed) {
  LoaderConfig c;
  c.image_height = h;
  c.image_width = w;
  c.batch_size = batch;
  c.seed = seed;
  c.workers = 2;
  c.prefetch = 3;
  return c;
}

std::vector<Batch> take(Loader& l, int n) {
  std::vector<Batch> out;
  for (int i = 0; i < n; ++i) out.push_back(l.next());
  return out;
}

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].position, b[i].position) << "batch " << i;
    EXPECT_EQ(a[i].examples, b[i].examples) << "batch " << i;
    EXPECT_EQ(a[i].labels.to_vector(), b[i].labels.to_vector()) << "batch " << i;
    ASSERT_EQ(a[i].images.shape(), b[i].images.shape());
    EXPECT_EQ(0, std::memcmp(a[i].images.raw(), b[i].images.raw(), a[i].images.nbytes())) << "batch " << i;
  }
}

// The image as the loader should deliver it: CHW, normalised, optionally mirrored.
std::vector<float> expected_chw(const Image& img, bool mirrored) {
  std::vector<float> out((size_t)3 * img.height * img.width);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < img.height; ++y)
      for (int x = 0; x < img.width; ++x) {
        const int sx = mirrored ? img.width - 1 - x : x;
        out[((size_t)c * img.height + y) * img.width + x] = (float)((img.at(y, sx)[c] - 127.5) / 127.5);
      }
  return out;
}

std::vector<float> row_of(const Tensor& images, int64_t b) {
  const int64_t n = images.numel() / images.size(0);
  const float* p = images.data<float>() + b * n;
  return {p, p + n};
}

TEST(Loader, EveryExampleOncePerEpochWithItsPixelsAndLabel) {
  const uint64_t seed = seed_for("EveryExampleOncePerEpochWithItsPixelsAndLabel", 21);
  auto ds = std::make_shared<MemoryDataset>(50, 6, 5, seed);
  LoaderConfig cfg = small_config(6, 5, 8, seed);
  cfg.drop_last = false;
  cfg.augment.flip = false;
  Loader loader(ds, cfg);
  ASSERT_EQ(loader.batches_per_epoch(), 7);
  std::vector<int64_t> prev;
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> seen;
    for (int b = 0; b < 7; ++b) {
      const Batch batch = loader.next();
      EXPECT_EQ(batch.position, (LoaderPosition{epoch, b}));
      ASSERT_EQ(batch.images.shape(), (Shape{(int64_t)batch.examples.size(), 3, 6, 5}));
      ASSERT_EQ(batch.labels.dtype(), DType::I64);
      for (size_t k = 0; k < batch.examples.size(); ++k) {
        const int64_t ex = batch.examples[k];
        EXPECT_EQ(batch.labels.item((int64_t)k), ds->label(ex));
        EXPECT_EQ(row_of(batch.images, (int64_t)k), expected_chw(ds->image(ex), false)) << "example " << ex;
      }
      seen.insert(seen.end(), batch.examples.begin(), batch.examples.end());
    }
    EXPECT_EQ(seen, loader.epoch_order(epoch));
    std::vector<int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(50);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all) << "epoch " << epoch;
    EXPECT_NE(seen, all) << "shuffled";
    EXPECT_NE(seen, prev) << "a new order each epoch";
    prev = seen;
  }
  cfg.shuffle = false;
  Loader ordered(ds, cfg);
  std::vector<int64_t> first = ordered.next().examples, want(8);
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(first, want);
}

TEST(Loader, RanksAreDisjointEqualAndCovering) {
  const uint64_t seed = seed_for("RanksAreDisjointEqualAndCovering", 22);
  auto ds = std::make_shared<MemoryDataset>(50, 4, 4, seed);
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::set<int64_t> all;
    size_t total = 0;
    for (int rank = 0; rank < 3; ++rank) {
      LoaderConfig cfg = small_config(4, 4, 4, seed);
      cfg.rank = rank;
      cfg.world_size = 3;
      Loader l(ds, cfg, {epoch, 0});
      EXPECT_EQ(l.examples_per_epoch(), 16);  // floor(50 / 3)
      EXPECT_EQ(l.batches_per_epoch(), 4);
      std::vector<int64_t> got;
      for (const Batch& b : take(l, 4)) got.insert(got.end(), b.examples.begin(), b.examples.end());
      EXPECT_EQ(got, l.epoch_order(epoch));
      all.insert(got.begin(), got.end());
      total += got.size();
    }
    EXPECT_EQ(total, 48u);
    EXPECT_EQ(all.size(), 48u) << "ranks overlap";
  }
}

TEST(Loader, DropLastDropsThePartialBatch) {
  const uint64_t seed = seed_for("DropLastDropsThePartialBatch", 23);
  auto ds = std::make_shared<MemoryDataset>(50, 4, 4, seed);
  LoaderConfig cfg = small_config(4, 4, 8, seed);
  Loader dropping(ds, cfg);
  EXPECT_EQ(dropping.batches_per_epoch(), 6);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(dropping.next().examples.size(), 8u);
  EXPECT_EQ(dropping.next().position, (LoaderPosition{1, 0}));
  cfg.drop_last = false;
  Loader keeping(ds, cfg);
  const auto batches = take(keeping, 7);
  EXPECT_EQ(batches[6].examples.size(), 2u);
  EXPECT_EQ(batches[6].images.size(0), 2);
  cfg.batch_size = 64;
  cfg.drop_last = true;
  EXPECT_THROW(Loader(ds, cfg), Error);
}

TEST(Loader, WorkerCountDoesNotChangeBatches) {
  const uint64_t seed = seed_for("WorkerCountDoesNotChangeBatches", 24);
  auto ds = std::make_shared<MemoryDataset>(40, 12, 10, seed);
  LoaderConfig cfg = small_config(8, 8, 6, seed);  // resized on the way
  cfg.augment = AugmentConfig::strong();
  cfg.workers = 1;
  Loader one(ds, cfg);
  cfg.workers = 3;
  cfg.prefetch = 5;
  Loader three(ds, cfg);
  expect_same_batches(take(one, 14), take(three, 14));  // over two epochs
}

TEST(Loader, ResumedPositionGivesTheSameBatches) {
  const uint64_t seed = seed_for("ResumedPositionGivesTheSameBatches", 25);
  auto ds = std::make_shared<MemoryDataset>(30, 6, 6, seed);
  LoaderConfig cfg = small_config(6, 6, 7, seed);
  Loader a(ds, cfg);
  take(a, 3);
  const LoaderPosition saved = a.position();
  EXPECT_EQ(saved, (LoaderPosition{0, 3}));
  const auto rest = take(a, 6);  // crosses into epoch 1 and 2 (4 batches per epoch)
  EXPECT_EQ(rest.back().position, (LoaderPosition{2, 0}));
  Loader b(ds, cfg, saved);
  expect_same_batches(rest, take(b, 6));
  a.seek(saved);
  expect_same_batches(rest, take(a, 6));
  EXPECT_THROW(a.seek({0, 4}), Error);
}

TEST(Loader, NormalisesToPlusMinusOne) {
  auto ds = std::make_shared<MemoryDataset>(1, 2, 2, 0, 3, 1);
  LoaderConfig cfg = small_config(2, 2, 1, 0);
  cfg.augment.flip = false;
  // Overwrite the one image with known values: 0, 255 and two in between.
  Image* img = &ds->edit(0);
  const uint8_t values[4] = {0, 255, 100, 200};
  for (int p = 0; p < 4; ++p)
    for (int c = 0; c < 3; ++c) img->pixels[p * 3 + c] = values[p];
  Loader l(ds, cfg);
  const Batch b = l.next();
  for (int c = 0; c < 3; ++c) {
    EXPECT_FLOAT_EQ(b.images.item(c * 4 + 0), -1.f);
    EXPECT_FLOAT_EQ(b.images.item(c * 4 + 1), 1.f);
    EXPECT_FLOAT_EQ(b.images.item(c * 4 + 2), -27.5f / 127.5f);
    EXPECT_FLOAT_EQ(b.images.item(c * 4 + 3), 72.5f / 127.5f);
  }
}

TEST(Loader, FlipMirrorsSomeExamplesExactly) {
  const uint64_t seed = seed_for("FlipMirrorsSomeExamplesExactly", 26);
  auto ds = std::make_shared<MemoryDataset>(40, 5, 7, seed);
  LoaderConfig cfg = small_config(5, 7, 8, seed);
  Loader l(ds, cfg);
  int mirrored = 0, plain = 0;
  for (const Batch& b : take(l, 5))
    for (size_t k = 0; k < b.examples.size(); ++k) {
      const auto got = row_of(b.images, (int64_t)k);
      const Image& src = ds->image(b.examples[k]);
      if (got == expected_chw(src, true))
        ++mirrored;
      else if (got == expected_chw(src, false))
        ++plain;
      else
        ADD_FAILURE() << "example " << b.examples[k] << " is neither the image nor its mirror";
    }
  EXPECT_EQ(mirrored + plain, 40);
  EXPECT_GT(mirrored, 5);
  EXPECT_GT(plain, 5);
}

TEST(Loader, ResizesAndExpandsGrey) {
  const uint64_t seed = seed_for("ResizesAndExpandsGrey", 27);
  auto ds = std::make_shared<MemoryDataset>(4, 20, 30, seed, 1);
  Image* img = &ds->edit(2);
  std::fill(img->pixels.begin(), img->pixels.end(), 40);  // a flat image stays flat
  LoaderConfig cfg = small_config(16, 16, 4, seed);
  cfg.shuffle = false;
  Loader l(ds, cfg);
  const Batch b = l.next();
  ASSERT_EQ(b.images.shape(), (Shape{4, 3, 16, 16}));
  for (float v : row_of(b.images, 2)) ASSERT_FLOAT_EQ(v, (40 - 127.5f) / 127.5f);
  const auto other = row_of(b.images, 0);
  for (int p = 0; p < 256; ++p) ASSERT_EQ(other[p], other[256 + p]) << "grey expands to equal channels";
}

TEST(Loader, WorkerErrorReachesTheConsumer) {
  const uint64_t seed = seed_for("WorkerErrorReachesTheConsumer", 28);
  auto ds = std::make_shared<MemoryDataset>(30, 4, 4, seed);
  ds->fail_at = 13;
  LoaderConfig cfg = small_config(4, 4, 5, seed);
  cfg.shuffle = false;
  cfg.workers = 3;
  Loader l(ds, cfg);
  take(l, 2);  // examples 0..9 are fine
  try {
    l.next();
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("memory#13"), std::string::npos) << what;
    EXPECT_NE(what.find("disk on fire"), std::string::npos) << what;
  }
  EXPECT_THROW(l.next(), Error);  // stays failed
  ds->fail_at = -1;
  l.seek({0, 2});
  EXPECT_EQ(l.next().examples.front(), 10);
}

TEST(Augment, ResizeInterpolatesAndAverages) {
  // Up: a 1x2 ramp [0, 100] widened to 4 pixels, half-pixel centres: 0, 25, 75, 100.
  Image ramp(1, 2, 1);
  ramp.pixels = {0, 100};
  const Image up = resize_bilinear(ramp, 1, 4);
  EXPECT_EQ(up.pixels, (std::vector<uint8_t>{0, 25, 75, 100}));
  // Down: a fine checkerboard averages to grey rather than aliasing to black or white.
  Image board(16, 16, 3);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) std::fill_n(board.at(y, x), 3, (x + y) % 2 ? 255 : 0);
  const Image down = resize_bilinear(board, 4, 4);
  for (uint8_t v : down.pixels) EXPECT_NEAR(v, 127.5, 20);
}

TEST(Augment, FunctionsChangeWhatTheyShouldOnly) {
  const uint64_t seed = seed_for("FunctionsChangeWhatTheyShouldOnly", 29);
  Rng rng(seed);
  Image img(9, 11, 3);
  for (auto& p : img.pixels) p = (uint8_t)rng.below(256);
  Image flat(9, 11, 3);
  std::fill(flat.pixels.begin(), flat.pixels.end(), 77);

  Image f = img;
  flip_horizontal(f);
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 11; ++x)
      for (int c = 0; c < 3; ++c) ASSERT_EQ(f.at(y, x)[c], img.at(y, 10 - x)[c]);

  Image b = flat;
  gaussian_blur(b, 1.2);
  EXPECT_EQ(b.pixels, flat.pixels);
  b = img;
  gaussian_blur(b, 1.2);
  EXPECT_NE(b.pixels, img.pixels);

  Image g = img;
  to_grayscale(g);
  for (int p = 0; p < 99; ++p) {
    ASSERT_EQ(g.pixels[p * 3], g.pixels[p * 3 + 1]);
    ASSERT_EQ(g.pixels[p * 3], g.pixels[p * 3 + 2]);
  }

  Image j = img;
  color_jitter(j, 1, 1, 1);
  for (size_t i = 0; i < j.pixels.size(); ++i) ASSERT_NEAR(j.pixels[i], img.pixels[i], 1);
  color_jitter(j, 1.3, 1, 1);
  EXPECT_GT(std::accumulate(j.pixels.begin(), j.pixels.end(), 0.0), std::accumulate(img.pixels.begin(), img.pixels.end(), 0.0));

  Image low = flat;
  low_resolution(low, 3, 4);
  EXPECT_EQ(low.pixels, flat.pixels);
  low = img;
  low_resolution(low, 3, 4);
  EXPECT_NE(low.pixels, img.pixels);
}

}  // namespace
}  // namespace ff::data
