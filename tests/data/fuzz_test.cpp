// Seeded random corruption of every parser's fixtures: each input either parses or throws ff::Error, never worse.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/bin_pairs.h"
#include "data/file_io.h"
#include "data/image_codec.h"
#include "data/npy.h"
#include "data/recordio.h"
#include "engine/rng.h"
#include "test_util.h"

namespace ff::data {
namespace {

// Flips, overwrites or truncates a few bytes.
std::vector<uint8_t> mutate(std::vector<uint8_t> b, Rng& rng) {
  int edits = 1 + (int)rng.below(4);
  for (int e = 0; e < edits && !b.empty(); ++e) {
    size_t at = rng.below(b.size());
    switch (rng.below(4)) {
      case 0:
        b[at] ^= (uint8_t)(1u << rng.below(8));
        break;
      case 1:
        b[at] = (uint8_t)rng.below(256);
        break;
      case 2:
        b.resize(at);
        break;
      default:
        b[at] = b[rng.below(b.size())];
        break;
    }
  }
  return b;
}

// Runs f on many mutations of `original`; counts outcomes. Any exception other than ff::Error fails.
template <class F>
void fuzz(const std::string& what, const std::vector<uint8_t>& original, uint64_t seed, int rounds, F f) {
  Rng rng(seed);
  int ok = 0, refused = 0;
  for (int r = 0; r < rounds; ++r) {
    auto b = mutate(original, rng);
    try {
      f(b);
      ++ok;
    } catch (const Error&) {
      ++refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << " round " << r << ": non-ff::Error exception: " << e.what();
    }
  }
  std::cout << what << " (seed " << seed << "): " << ok << " parsed, " << refused << " refused\n";
  EXPECT_GT(refused, 0) << what;
}

TEST(Fuzz, PickleAndBinPairs) {
  for (const char* name : {"pairs_p2.bin", "pairs_p4.bin", "pairs_py2_p1.bin"}) {
    auto b = read_file_bytes(test::fixture(std::string("bins/") + name));
    fuzz(name, b, 101, 120, [](const std::vector<uint8_t>& m) { parse_bin_pairs(m, "fuzz.bin"); });
  }
}

TEST(Fuzz, ImageDecoders) {
  for (const char* name : {"rgb.jpg", "grey.jpg", "palette.png", "rgba.png"}) {
    auto b = read_file_bytes(test::fixture(std::string("images/") + name));
    Image good = decode_image(b);
    fuzz(name, b, 202, 200, [&](const std::vector<uint8_t>& m) {
      try {
        decode_image(m);
      } catch (const Error&) {
        // A failed decode must not poison the decoder for the next, valid image.
        EXPECT_EQ(decode_image(b).pixels, good.pixels) << name;
        throw;
      }
    });
  }
}

TEST(Fuzz, RecordIO) {
  test::TempDir dir;
  auto rec = read_file_bytes(test::fixture("rec/face.rec"));
  auto idx = read_file_bytes(test::fixture("rec/face.idx"));
  std::filesystem::copy_file(test::fixture("rec/face.idx"), dir / "f.idx");
  fuzz("face.rec", rec, 303, 80, [&](const std::vector<uint8_t>& m) {
    write_file_bytes(dir / "f.rec", m);
    RecordDataset ds(dir / "f.rec", dir / "f.idx");
    for (size_t i = 0; i < ds.size(); ++i) ds.get(i);
  });
  write_file_bytes(dir / "g.rec", rec);
  fuzz("face.idx", idx, 304, 80, [&](const std::vector<uint8_t>& m) {
    write_file_bytes(dir / "g.idx", m);
    RecordDataset ds(dir / "g.rec", dir / "g.idx");
    for (size_t i = 0; i < ds.size(); ++i) ds.get(i);
  });
}

TEST(Fuzz, Npy) {
  auto b = read_file_bytes(test::fixture("npy/emb.npy"));
  test::TempDir dir;
  fuzz("emb.npy", b, 405, 100, [&](const std::vector<uint8_t>& m) {
    write_file_bytes(dir / "m.npy", m);
    read_npy(dir / "m.npy");
  });
}

}  // namespace
}  // namespace ff::data
