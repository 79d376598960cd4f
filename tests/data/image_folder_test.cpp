// Image folders: identity ordering, which files count as images, decoding, and the errors users hit.
#include "data/image_folder.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/file_io.h"
#include "data/image_codec.h"
#include "engine/rng.h"
#include "test_util.h"

namespace ff::data {
namespace {
using test::expect_error;
using test::TempDir;
namespace fs = std::filesystem;

Image random_image(Rng& rng, int h, int w) {
  Image img(h, w, 3);
  for (auto& p : img.pixels) p = (uint8_t)rng.below(256);
  return img;
}

TEST(ImageFolder, SortsIdentitiesAndImagesAndIgnoresNonImages) {
  const uint64_t seed = 31;
  std::cout << "seed " << seed << "\n";
  Rng rng(seed);
  TempDir dir;
  fs::path root = dir.path / "root";
  for (auto id : {"b_id", "a_id", "c_id", ".hidden"}) fs::create_directories(root / id);
  Image x = random_image(rng, 8, 8), y = random_image(rng, 5, 7), z = random_image(rng, 8, 8),
        w = random_image(rng, 3, 3);
  write_file_bytes((root / "b_id" / "y.png").string(), encode_png(y));
  write_file_bytes((root / "b_id" / "x.PNG").string(), encode_png(x));
  write_file_bytes((root / "a_id" / "z.png").string(), encode_png(z));
  write_file_bytes((root / "c_id" / "w.jpeg").string(), encode_jpeg(w, 95));
  std::ofstream(root / "c_id" / "notes.txt") << "not an image";
  std::ofstream(root / "readme.txt") << "not an identity";
  write_file_bytes((root / ".hidden" / "h.png").string(), encode_png(x));

  ImageFolderDataset ds(root.string());
  EXPECT_EQ(ds.identities(), (std::vector<std::string>{"a_id", "b_id", "c_id"}));
  EXPECT_EQ(ds.num_classes(), 3);
  ASSERT_EQ(ds.size(), 4u);
  EXPECT_EQ(fs::path(ds.path(0)).filename(), "z.png");
  EXPECT_EQ(fs::path(ds.path(1)).filename(), "x.PNG");  // "x.PNG" < "y.png" byte-wise
  EXPECT_EQ(fs::path(ds.path(2)).filename(), "y.png");
  EXPECT_EQ(fs::path(ds.path(3)).filename(), "w.jpeg");
  std::vector<int64_t> labels;
  for (size_t i = 0; i < ds.size(); ++i) labels.push_back(ds.label(i));
  EXPECT_EQ(labels, (std::vector<int64_t>{0, 1, 1, 2}));
  EXPECT_EQ(ds.get(0).image.pixels, z.pixels);
  EXPECT_EQ(ds.get(1).image.pixels, x.pixels);
  Sample s = ds.get(2);
  EXPECT_EQ(s.image.pixels, y.pixels);
  EXPECT_EQ(s.label, 1);
  EXPECT_EQ(ds.get(3).image.height, 3);
  EXPECT_EQ(ds.describe(2), ds.path(2));
}

TEST(ImageFolder, DecodeOptionsApply) {
  TempDir dir;
  Rng rng(3);
  fs::create_directories(dir.path / "r" / "id");
  write_file_bytes((dir.path / "r" / "id" / "a.png").string(), encode_png(random_image(rng, 5, 7)));
  ImageFolderDataset resized((dir.path / "r").string(), {4, 4, true});
  EXPECT_EQ(resized.get(0).image.width, 4);
  ImageFolderDataset strict((dir.path / "r").string(), {4, 4, false});
  expect_error([&] { strict.get(0); }, {"a.png", "5x7", "expected 4x4"});
}

TEST(ImageFolder, EmptyIdentityFolderIsNamed) {
  TempDir dir;
  fs::create_directories(dir.path / "r" / "alice");
  fs::create_directories(dir.path / "r" / "bob");
  write_file_bytes((dir.path / "r" / "alice" / "a.png").string(), encode_png(Image(2, 2, 3)));
  std::ofstream(dir.path / "r" / "bob" / "list.txt") << "x";
  expect_error([&] { ImageFolderDataset ds((dir.path / "r").string()); }, {"identity folder", "bob", "no .jpg"});
}

TEST(ImageFolder, MissingOrEmptyRoot) {
  TempDir dir;
  expect_error([&] { ImageFolderDataset ds(dir / "nope"); }, {"nope", "does not exist"});
  fs::create_directories(dir.path / "empty");
  expect_error([&] { ImageFolderDataset ds(dir / "empty"); }, {"empty", "no identity folders"});
}

TEST(ImageFolder, UndecodableOrVanishedFileNamesThePath) {
  TempDir dir;
  fs::create_directories(dir.path / "r" / "id");
  std::ofstream(dir.path / "r" / "id" / "broken.jpg") << "this is text";
  write_file_bytes((dir.path / "r" / "id" / "gone.png").string(), encode_png(Image(2, 2, 3)));
  ImageFolderDataset ds((dir.path / "r").string());
  expect_error([&] { ds.get(0); }, {"broken.jpg", "not a JPEG or PNG"});
  fs::remove(dir.path / "r" / "id" / "gone.png");
  expect_error([&] { ds.get(1); }, {"gone.png", "cannot open"});
}

}  // namespace
}  // namespace ff::data
