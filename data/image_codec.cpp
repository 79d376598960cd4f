// JPEG/PNG decoding to RGB and encoding, with libturbojpeg and libpng's simplified API; resizing uses data/augment.h.
#include "data/image_codec.h"

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "data/augment.h"

#include "engine/error.h"

namespace ff::data {
namespace {

// Refuse sizes no face image has, before allocating for them: a header of a few bytes can claim
// anything, and 8192x8192 (67M pixels, 200 MB of RGB) is already far past any face photo.
constexpr int64_t kMaxSide = 8192;
void check_dimensions(const std::string& what, int64_t width, int64_t height) {
  FF_CHECK(width > 0 && height > 0 && width <= kMaxSide && height <= kMaxSide, what, ": implausible image size ", width,
           "x", height, " (at most ", kMaxSide, "x", kMaxSide, ")");
}

// One turbojpeg handle per thread and direction: handles are not thread-safe and creating one per
// image costs time. A handle that saw an error is dropped: libjpeg-turbo 2.1 can leave it in a
// state where every later image fails with the same message.
struct TjHandle {
  tjhandle h;
  explicit TjHandle(bool compress) : h(compress ? tjInitCompress() : tjInitDecompress()) {
    FF_CHECK(h != nullptr, "turbojpeg: cannot create a ", compress ? "compressor" : "decompressor");
  }
  ~TjHandle() { tjDestroy(h); }
  TjHandle(const TjHandle&) = delete;
  TjHandle& operator=(const TjHandle&) = delete;
};

std::unique_ptr<TjHandle>& thread_handle(bool compress) {
  thread_local std::unique_ptr<TjHandle> handles[2];
  auto& h = handles[compress ? 1 : 0];
  if (!h) h = std::make_unique<TjHandle>(compress);
  return h;
}

// Throws with turbojpeg's message and drops the handle.
[[noreturn]] void tj_fail(bool compress, const std::string& what) {
  auto& h = thread_handle(compress);
  std::string reason = tjGetErrorStr2(h->h);
  h.reset();
  throw Error(msg(what, ": ", reason));
}

Image decode_jpeg(std::span<const uint8_t> bytes) {
  tjhandle tj = thread_handle(false)->h;
  const std::string what = msg("cannot decode JPEG (", bytes.size(), " bytes)");
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, bytes.data(), (unsigned long)bytes.size(), &width, &height, &subsamp, &colorspace) != 0)
    tj_fail(false, what);
  check_dimensions(what, width, height);
  Image out(height, width, 3);
  // Warnings (e.g. "extraneous bytes before marker") are tolerated as in libjpeg, PIL and OpenCV; errors are not.
  // LIMITSCANS refuses progressive files of more than 500 scans, which take minutes to decode.
  if (tjDecompress2(tj, bytes.data(), (unsigned long)bytes.size(), out.pixels.data(), width, 0, height, TJPF_RGB,
                    TJFLAG_LIMITSCANS) != 0 &&
      tjGetErrorCode(tj) != TJERR_WARNING)
    tj_fail(false, what);
  return out;
}

struct PngImage {
  png_image img;
  PngImage() {
    std::memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
  }
  ~PngImage() { png_image_free(&img); }
  PngImage(const PngImage&) = delete;
  PngImage& operator=(const PngImage&) = delete;
};

Image decode_png(std::span<const uint8_t> bytes) {
  PngImage p;
  if (!png_image_begin_read_from_memory(&p.img, bytes.data(), bytes.size()))
    throw Error(msg("cannot decode PNG (", bytes.size(), " bytes): ", p.img.message));
  check_dimensions(msg("cannot decode PNG (", bytes.size(), " bytes)"), p.img.width, p.img.height);
  // Read as RGBA (8-bit sRGB, not premultiplied) and drop alpha, so colours are kept as stored.
  // Without the 16BIT_sRGB flag libpng takes 16-bit data lacking gAMA/sRGB as linear and brightens
  // it on the way to 8 bits (51 -> 124); PIL and OpenCV just scale, so this does too.
  p.img.format = PNG_FORMAT_RGBA;
  p.img.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
  std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(p.img));
  if (!png_image_finish_read(&p.img, nullptr, rgba.data(), 0, nullptr))
    throw Error(msg("cannot decode PNG (", bytes.size(), " bytes): ", p.img.message));
  Image out((int)p.img.height, (int)p.img.width, 3);
  size_t n = (size_t)out.height * out.width;
  for (size_t i = 0; i < n; ++i) std::memcpy(&out.pixels[3 * i], &rgba[4 * i], 3);
  return out;
}

void check_encodable(const char* op, const Image& image) {
  FF_CHECK(image.channels == 1 || image.channels == 3, op, ": expects 1 or 3 channels, got ", image.channels);
  check_dimensions(op, image.width, image.height);
  FF_CHECK(image.pixels.size() == (size_t)image.height * image.width * image.channels, op, ": image of ", image.height,
           "x", image.width, "x", image.channels, " holds ", image.pixels.size(), " bytes");
}

}  // namespace

ImageFormat sniff_image_format(std::span<const uint8_t> b) {
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return ImageFormat::Jpeg;
  static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (b.size() >= 8 && std::memcmp(b.data(), png_magic, 8) == 0) return ImageFormat::Png;
  return ImageFormat::Unknown;
}

Image decode_image(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  Image image;
  switch (sniff_image_format(bytes)) {
    case ImageFormat::Jpeg:
      image = decode_jpeg(bytes);
      break;
    case ImageFormat::Png:
      image = decode_png(bytes);
      break;
    case ImageFormat::Unknown: {
      std::string head;
      for (size_t i = 0; i < std::min<size_t>(bytes.size(), 4); ++i) head += msg(i ? " " : "", std::hex, (int)bytes[i]);
      throw Error(msg("not a JPEG or PNG image (", bytes.size(), " bytes, starting with [", head, "])"));
    }
  }
  bool want = options.height > 0 && options.width > 0;
  if (want && (image.height != options.height || image.width != options.width)) {
    FF_CHECK(options.resize, "image is ", image.height, "x", image.width, ", expected ", options.height, "x",
             options.width, " (resizing is off)");
    image = resize_bilinear(image, options.height, options.width);
  }
  return image;
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  check_encodable("encode_jpeg", image);
  FF_CHECK(quality >= 1 && quality <= 100, "encode_jpeg: quality ", quality, " is not in 1..100");
  tjhandle tj = thread_handle(true)->h;
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  bool grey = image.channels == 1;
  int rc = tjCompress2(tj, image.pixels.data(), image.width, 0, image.height, grey ? TJPF_GRAY : TJPF_RGB, &buf, &size,
                       grey ? TJSAMP_GRAY : TJSAMP_420, quality, 0);
  std::unique_ptr<unsigned char, decltype(&tjFree)> owned(buf, &tjFree);
  if (rc != 0) tj_fail(true, "encode_jpeg");
  return std::vector<uint8_t>(buf, buf + size);
}

std::vector<uint8_t> encode_png(const Image& image) {
  check_encodable("encode_png", image);
  PngImage p;
  p.img.width = (png_uint_32)image.width;
  p.img.height = (png_uint_32)image.height;
  p.img.format = image.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  FF_CHECK(png_image_write_to_memory(&p.img, nullptr, &size, 0, image.pixels.data(), 0, nullptr),
           "encode_png: ", p.img.message);
  std::vector<uint8_t> out(size);
  FF_CHECK(png_image_write_to_memory(&p.img, out.data(), &size, 0, image.pixels.data(), 0, nullptr),
           "encode_png: ", p.img.message);
  out.resize(size);
  return out;
}

}  // namespace ff::data
