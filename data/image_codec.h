// Image codec: JPEG (libturbojpeg) and PNG (libpng) decoded by content to RGB, encoders, bilinear resize.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "data/augment.h"  // resize_bilinear
#include "data/image.h"

namespace ff::data {

enum class ImageFormat { Unknown, Jpeg, Png };

// Looks at the magic bytes only; file names and extensions are never trusted.
ImageFormat sniff_image_format(std::span<const uint8_t> bytes);

struct DecodeOptions {
  // Expected size; 0 means "whatever the file holds".
  int height = 0, width = 0;
  // When the decoded size differs from the expected one: resize bilinearly (true) or throw (false).
  bool resize = true;
};

// Decodes JPEG or PNG bytes to a 3-channel RGB image (grey, palette and alpha are converted; alpha
// is dropped, as OpenCV and PIL's convert("RGB") do). Throws ff::Error saying what is wrong; callers
// add which key or file the bytes came from.
Image decode_image(std::span<const uint8_t> bytes, const DecodeOptions& options = {});

// Encoders take 1-channel (grey) or 3-channel (RGB) images.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 95);
std::vector<uint8_t> encode_png(const Image& image);

}  // namespace ff::data
