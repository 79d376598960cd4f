// Image resizing and the training augmentations.
#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/error.h"

namespace ff::data {
namespace {

uint8_t to_u8(float v) { return (uint8_t)(std::clamp(v, 0.f, 255.f) + 0.5f); }

// A 1-D resampling filter: output o is the sum over k of weight[o*taps+k] * input[index[o*taps+k]].
struct Taps {
  int taps = 0;
  std::vector<int> index;     // clamped to the border, so edges keep their full weight
  std::vector<float> weight;
};

Taps triangle_taps(int in, int out) {
  const double scale = (double)in / out, radius = std::max(scale, 1.0);
  Taps t;
  t.taps = (int)std::ceil(radius) * 2 + 1;
  t.index.resize((size_t)out * t.taps);
  t.weight.resize((size_t)out * t.taps);
  for (int o = 0; o < out; ++o) {
    const double centre = (o + 0.5) * scale;
    const int first = (int)std::floor(centre - radius);
    double total = 0;
    for (int k = 0; k < t.taps; ++k) {
      double d = std::abs(first + k + 0.5 - centre) / radius;
      total += d < 1 ? 1 - d : 0;
    }
    for (int k = 0; k < t.taps; ++k) {
      double d = std::abs(first + k + 0.5 - centre) / radius;
      t.index[(size_t)o * t.taps + k] = std::clamp(first + k, 0, in - 1);
      t.weight[(size_t)o * t.taps + k] = (float)((d < 1 ? 1 - d : 0) / total);
    }
  }
  return t;
}

}  // namespace

Image resize_bilinear(const Image& src, int height, int width) {
  FF_CHECK(height > 0 && width > 0, "resize_bilinear: target ", height, "x", width, " is empty");
  FF_CHECK(src.height > 0 && src.width > 0 && src.pixels.size() == (size_t)src.height * src.width * src.channels,
           "resize_bilinear: source ", src.height, "x", src.width, "x", src.channels, " holds ", src.pixels.size(),
           " bytes");
  if (height == src.height && width == src.width) return src;
  const int c = src.channels;
  const Taps tx = triangle_taps(src.width, width), ty = triangle_taps(src.height, height);
  std::vector<float> rows((size_t)src.height * width * c);
  for (int y = 0; y < src.height; ++y)
    for (int x = 0; x < width; ++x)
      for (int ch = 0; ch < c; ++ch) {
        float acc = 0;
        for (int k = 0; k < tx.taps; ++k) {
          size_t j = (size_t)x * tx.taps + k;
          acc += tx.weight[j] * src.at(y, tx.index[j])[ch];
        }
        rows[((size_t)y * width + x) * c + ch] = acc;
      }
  Image out(height, width, c);
  const size_t stride = (size_t)width * c;
  for (int y = 0; y < height; ++y) {
    const float* w = &ty.weight[(size_t)y * ty.taps];
    const int* rowi = &ty.index[(size_t)y * ty.taps];
    uint8_t* d = out.at(y, 0);
    for (size_t i = 0; i < stride; ++i) {
      float acc = 0;
      for (int k = 0; k < ty.taps; ++k) acc += w[k] * rows[(size_t)rowi[k] * stride + i];
      d[i] = to_u8(acc);
    }
  }
  return out;
}

void flip_horizontal(Image& img) {
  const int c = img.channels;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width / 2; ++x) std::swap_ranges(img.at(y, x), img.at(y, x) + c, img.at(y, img.width - 1 - x));
}

void gaussian_blur(Image& img, double sigma) {
  if (sigma <= 0 || img.pixels.empty()) return;
  const int r = std::max(1, (int)std::ceil(3 * sigma)), c = img.channels, h = img.height, w = img.width;
  std::vector<float> k(2 * r + 1);
  float total = 0;
  for (int i = -r; i <= r; ++i) total += k[i + r] = (float)std::exp(-0.5 * i * i / (sigma * sigma));
  for (float& v : k) v /= total;
  // Rows padded by r clamped pixels on each side, so the inner loops need no bounds checks.
  const size_t stride = (size_t)w * c;
  std::vector<float> row((size_t)(w + 2 * r) * c), tmp((size_t)h * stride);
  for (int y = 0; y < h; ++y) {
    const uint8_t* s = img.at(y, 0);
    for (int x = -r; x < w + r; ++x)
      for (int ch = 0; ch < c; ++ch) row[(size_t)(x + r) * c + ch] = s[(size_t)std::clamp(x, 0, w - 1) * c + ch];
    float* d = &tmp[(size_t)y * stride];
    for (int j = 0; j <= 2 * r; ++j) {
      const float kj = k[j];
      const float* s = &row[(size_t)j * c];
      for (size_t i = 0; i < stride; ++i) d[i] += kj * s[i];
    }
  }
  std::vector<float> acc(stride);
  for (int y = 0; y < h; ++y) {
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int j = -r; j <= r; ++j) {
      const float* s = &tmp[(size_t)std::clamp(y + j, 0, h - 1) * stride];
      const float kj = k[j + r];
      for (size_t i = 0; i < stride; ++i) acc[i] += kj * s[i];
    }
    uint8_t* d = img.at(y, 0);
    for (size_t i = 0; i < stride; ++i) d[i] = to_u8(acc[i]);
  }
}

void to_grayscale(Image& img) {
  if (img.channels < 3) return;
  for (size_t i = 0; i < img.pixels.size(); i += img.channels) {
    uint8_t* p = &img.pixels[i];
    uint8_t g = to_u8(0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]);
    std::fill(p, p + img.channels, g);
  }
}

void color_jitter(Image& img, double brightness, double contrast, double saturation) {
  if (img.pixels.empty()) return;
  const int c = img.channels;
  double mean = 0;
  for (uint8_t v : img.pixels) mean += v;
  mean = mean / img.pixels.size() * brightness;
  for (size_t i = 0; i < img.pixels.size(); i += c) {
    uint8_t* p = &img.pixels[i];
    float v[3];
    for (int ch = 0; ch < std::min(c, 3); ++ch) v[ch] = (float)(p[ch] * brightness);
    if (c >= 3) {
      float g = 0.299f * v[0] + 0.587f * v[1] + 0.114f * v[2];
      for (float& x : v) x = (float)(g + (x - g) * saturation);
    }
    for (int ch = 0; ch < std::min(c, 3); ++ch) p[ch] = to_u8((float)(mean + (v[ch] - mean) * contrast));
  }
}

void low_resolution(Image& img, int low_height, int low_width) {
  if (low_height >= img.height && low_width >= img.width) return;
  img = resize_bilinear(resize_bilinear(img, low_height, low_width), img.height, img.width);
}

AugmentConfig AugmentConfig::strong() {
  AugmentConfig a;
  a.blur_prob = 0.2;
  a.grayscale_prob = 0.1;
  a.color_jitter_prob = 0.5;
  a.low_res_prob = 0.2;
  return a;
}

void augment(Image& img, const AugmentConfig& cfg, Rng& rng) {
  // Every draw happens whether or not its augmentation fires, so one choice never shifts the
  // stream of another.
  const bool flip = rng.uniform() < 0.5;
  const double u_blur = rng.uniform(), sigma = rng.uniform(0.3, std::max(0.3, cfg.max_blur_sigma));
  const double u_gray = rng.uniform();
  const double u_jit = rng.uniform(), b = rng.uniform(-1, 1), c = rng.uniform(-1, 1), s = rng.uniform(-1, 1);
  const double u_low = rng.uniform(), low = rng.uniform(std::min(cfg.min_low_res, 0.9), 0.9);
  if (cfg.flip && flip) flip_horizontal(img);
  if (u_low < cfg.low_res_prob)
    low_resolution(img, std::max(1, (int)std::lround(img.height * low)), std::max(1, (int)std::lround(img.width * low)));
  if (u_blur < cfg.blur_prob) gaussian_blur(img, sigma);
  if (u_jit < cfg.color_jitter_prob) color_jitter(img, 1 + cfg.jitter * b, 1 + cfg.jitter * c, 1 + cfg.jitter * s);
  if (u_gray < cfg.grayscale_prob) to_grayscale(img);
}

}  // namespace ff::data
