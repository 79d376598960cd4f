// An 8-bit image in memory: height x width x channels, row-major, interleaved (HWC), RGB order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ff::data {

struct Image {
  int height = 0, width = 0, channels = 3;
  std::vector<uint8_t> pixels;  // height * width * channels bytes

  Image() = default;
  Image(int h, int w, int c = 3) : height(h), width(w), channels(c), pixels((size_t)h * w * c) {}
  uint8_t* at(int y, int x) { return pixels.data() + ((size_t)y * width + x) * channels; }
  const uint8_t* at(int y, int x) const { return pixels.data() + ((size_t)y * width + x) * channels; }
};

}  // namespace ff::data
