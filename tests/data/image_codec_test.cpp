// Image codec: decoding fixtures PIL also decoded, conversions to RGB, encoders, resize, and bad bytes.
#include "data/image_codec.h"

#include <gtest/gtest.h>
#include <png.h>

#include <cstdlib>

#include "data/file_io.h"
#include "engine/rng.h"
#include "test_util.h"

namespace ff::data {
namespace {
using test::expect_error;
using test::fixture;
using test::manifest;

int max_abs_diff(const Image& img, const std::vector<int>& expected) {
  EXPECT_EQ(img.pixels.size(), expected.size());
  int worst = 0;
  for (size_t i = 0; i < std::min(img.pixels.size(), expected.size()); ++i)
    worst = std::max(worst, std::abs((int)img.pixels[i] - expected[i]));
  return worst;
}

Image random_image(Rng& rng, int h, int w, int c, bool smooth) {
  Image img(h, w, c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k)
        img.at(y, x)[k] = smooth ? (uint8_t)(20 + 4 * x + 3 * y + 40 * k + rng.below(3)) : (uint8_t)rng.below(256);
  return img;
}

TEST(ImageCodec, DecodesFixturesLikePil) {
  // PNG is lossless, so pixels must match exactly; JPEG decoders may differ by a few levels.
  for (auto& [name, info] : manifest()["images"].items()) {
    auto bytes = read_file_bytes(fixture("images/" + name));
    Image img = decode_image(bytes);
    EXPECT_EQ(img.channels, 3) << name;
    EXPECT_EQ(img.height, info["height"].get<int>()) << name;
    EXPECT_EQ(img.width, info["width"].get<int>()) << name;
    int diff = max_abs_diff(img, info["rgb"].get<std::vector<int>>());
    bool jpeg = name.ends_with(".jpg");
    EXPECT_LE(diff, jpeg ? 3 : 0) << name << " differs from PIL's decode by up to " << diff;
    EXPECT_EQ(sniff_image_format(bytes), jpeg ? ImageFormat::Jpeg : ImageFormat::Png) << name;
  }
}

TEST(ImageCodec, FormatComesFromContentNotName) {
  test::TempDir dir;
  auto jpg = read_file_bytes(fixture("images/rgb.jpg"));
  write_file_bytes(dir / "really_a_jpeg.png", jpg);
  Image img = decode_image(read_file_bytes(dir / "really_a_jpeg.png"));
  EXPECT_EQ(img.height, 8);
  EXPECT_LE(max_abs_diff(img, manifest()["images"]["rgb.jpg"]["rgb"].get<std::vector<int>>()), 3);
}

TEST(ImageCodec, PngRoundTripIsExact) {
  const uint64_t seed = 1234;
  std::cout << "seed " << seed << "\n";
  Rng rng(seed);
  Image img = random_image(rng, 13, 17, 3, false);
  Image back = decode_image(encode_png(img));
  ASSERT_EQ(back.height, 13);
  ASSERT_EQ(back.width, 17);
  EXPECT_EQ(back.pixels, img.pixels);

  Image grey = random_image(rng, 5, 9, 1, false);
  Image grey_back = decode_image(encode_png(grey));
  ASSERT_EQ(grey_back.channels, 3);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 9; ++x)
      for (int k = 0; k < 3; ++k) EXPECT_EQ(grey_back.at(y, x)[k], grey.at(y, x)[0]);
}

TEST(ImageCodec, JpegRoundTripIsClose) {
  const uint64_t seed = 99;
  std::cout << "seed " << seed << "\n";
  Rng rng(seed);
  Image img = random_image(rng, 16, 24, 3, true);
  auto bytes = encode_jpeg(img, 100);
  EXPECT_EQ(sniff_image_format(bytes), ImageFormat::Jpeg);
  Image back = decode_image(bytes);
  ASSERT_EQ(back.pixels.size(), img.pixels.size());
  double sum = 0;
  for (size_t i = 0; i < img.pixels.size(); ++i) sum += std::abs((int)back.pixels[i] - (int)img.pixels[i]);
  EXPECT_LT(sum / img.pixels.size(), 3.0);
  // Lower quality gives a smaller file.
  EXPECT_LT(encode_jpeg(random_image(rng, 64, 64, 3, false), 30).size(),
            encode_jpeg(random_image(rng, 64, 64, 3, false), 95).size());
}

TEST(ImageCodec, ResizeMatchesHandComputedValues) {
  // Half-pixel centres, edge clamped (OpenCV INTER_LINEAR gives the same numbers).
  Image row(1, 2, 1);
  row.pixels = {0, 100};
  Image up = resize_bilinear(row, 1, 4);
  EXPECT_EQ(up.pixels, (std::vector<uint8_t>{0, 25, 75, 100}));
  // Shrinking widens the filter (antialiasing); loader_test.cpp checks that case.
  Image col(2, 1, 3);
  col.pixels = {0, 10, 200, 100, 50, 0};
  Image tall = resize_bilinear(col, 4, 1);
  EXPECT_EQ(tall.pixels, (std::vector<uint8_t>{0, 10, 200, 25, 20, 150, 75, 40, 50, 100, 50, 0}));

  Rng rng(5);
  Image img = random_image(rng, 7, 9, 3, false);
  EXPECT_EQ(resize_bilinear(img, 7, 9).pixels, img.pixels);
}

TEST(ImageCodec, ExpectedSizeResizesOrRefuses) {
  auto wide = read_file_bytes(fixture("images/wide.jpg"));  // 6x10
  Image resized = decode_image(wide, {8, 8, true});
  EXPECT_EQ(resized.height, 8);
  EXPECT_EQ(resized.width, 8);
  expect_error([&] { decode_image(wide, {8, 8, false}); }, {"6x10", "expected 8x8"});
  Image same = decode_image(wide, {6, 10, false});
  EXPECT_EQ(same.width, 10);
}

TEST(ImageCodec, UndecodableBytesSayWhat) {
  std::vector<uint8_t> garbage = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'};
  expect_error([&] { decode_image(garbage); }, {"not a JPEG or PNG", "11 bytes"});
  expect_error([&] { decode_image({}); }, {"not a JPEG or PNG", "0 bytes"});
  auto jpg = read_file_bytes(fixture("images/rgb.jpg"));
  std::vector<uint8_t> head(jpg.begin(), jpg.begin() + 20);
  expect_error([&] { decode_image(head); }, {"cannot decode JPEG", "20 bytes"});
  auto png = read_file_bytes(fixture("images/rgb.png"));
  png[20] ^= 0xFF;  // inside IHDR: its CRC no longer matches
  expect_error([&] { decode_image(png); }, {"cannot decode PNG"});
  auto png_short = read_file_bytes(fixture("images/rgb.png"));
  png_short.resize(40);
  expect_error([&] { decode_image(png_short); }, {"cannot decode PNG"});
}

// The JPEG with its frame header (SOF) claiming height x width; the scan data stays the original's.
std::vector<uint8_t> jpeg_claiming(std::vector<uint8_t> jpg, int height, int width) {
  for (size_t i = 2; i + 9 < jpg.size(); i += 2 + (jpg[i + 2] << 8 | jpg[i + 3])) {
    EXPECT_EQ(jpg[i], 0xFF) << "not a marker at " << i;
    if (jpg[i + 1] >= 0xC0 && jpg[i + 1] <= 0xC2) {
      jpg[i + 5] = (uint8_t)(height >> 8), jpg[i + 6] = (uint8_t)height;
      jpg[i + 7] = (uint8_t)(width >> 8), jpg[i + 8] = (uint8_t)width;
      return jpg;
    }
  }
  ADD_FAILURE() << "no SOF marker";
  return jpg;
}

// A PNG from libpng's low-level writer: only IHDR, IDAT and IEND, so no gAMA or sRGB chunk.
std::vector<uint8_t> plain_png(int width, int height, int bit_depth, int color_type, const std::vector<uint8_t>& rows) {
  std::vector<uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep data, size_t n) {
        auto* v = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(p));
        v->insert(v->end(), data, data + n);
      },
      nullptr);
  png_set_IHDR(png, info, width, height, bit_depth, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) png_write_row(png, rows.data() + rows.size() / height * y);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

TEST(ImageCodec, RefusesHugeClaimedSizesBeforeDecoding) {
  auto jpg = read_file_bytes(fixture("images/rgb.jpg"));
  expect_error([&] { decode_image(jpeg_claiming(jpg, 16384, 16384)); },
               {"cannot decode JPEG", "16384x16384", "8192x8192"});
  expect_error([&] { decode_image(jpeg_claiming(jpg, 8, 8193)); }, {"implausible image size 8193x8"});
  EXPECT_EQ(decode_image(jpeg_claiming(jpg, 8, 8)).width, 8);  // the patch itself keeps a valid file
  expect_error([&] { decode_image(plain_png(8193, 1, 8, PNG_COLOR_TYPE_GRAY, std::vector<uint8_t>(8193))); },
               {"cannot decode PNG", "8193x1"});
  EXPECT_EQ(decode_image(plain_png(8192, 1, 8, PNG_COLOR_TYPE_GRAY, std::vector<uint8_t>(8192))).width, 8192);
}

// 16-bit PNGs without gAMA/sRGB (as OpenCV and PIL write them) come down to 8 bits by scaling.
TEST(ImageCodec, SixteenBitPngScalesLikePilAndOpenCv) {
  const std::vector<int> values = {0, 255, 13107, 13056, 1000, 32768, 40000, 51000, 65280, 65535};
  std::vector<uint8_t> row;  // RGB, big-endian: each value in R, G and B of its own pixel
  for (int v : values)
    for (int c = 0; c < 3; ++c) row.insert(row.end(), {(uint8_t)(v >> 8), (uint8_t)v});
  Image img = decode_image(plain_png((int)values.size(), 1, 16, PNG_COLOR_TYPE_RGB, row));
  ASSERT_EQ(img.width, (int)values.size());
  for (size_t i = 0; i < values.size(); ++i)
    for (int c = 0; c < 3; ++c)
      EXPECT_LE(std::abs(img.at(0, (int)i)[c] - (values[i] >> 8)), 1) << "16-bit value " << values[i];
}

TEST(ImageCodec, EncodersCheckTheirInput) {
  Image two(4, 4, 2);
  expect_error([&] { encode_png(two); }, {"encode_png", "1 or 3 channels"});
  Image rgb(4, 4, 3);
  expect_error([&] { encode_jpeg(rgb, 0); }, {"quality 0"});
  rgb.pixels.resize(5);
  expect_error([&] { encode_jpeg(rgb); }, {"holds 5 bytes"});
}

}  // namespace
}  // namespace ff::data
