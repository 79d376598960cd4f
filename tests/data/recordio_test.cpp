// RecordIO: reading files an independent writer made, byte-identical writing, round trips, and bad input.
#include "data/recordio.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "data/file_io.h"
#include "data/image_codec.h"
#include "data/image_folder.h"
#include "engine/rng.h"
#include "test_util.h"

namespace ff::data {
namespace {
using test::expect_error;
using test::fixture;
using test::manifest;
using test::TempDir;

uint32_t u32_at(const std::vector<uint8_t>& b, size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}

// Continuation flags of the physical records in a .rec file, walked from the start.
std::vector<uint32_t> physical_flags(const std::string& path) {
  auto b = read_file_bytes(path);
  std::vector<uint32_t> flags;
  for (size_t off = 0; off + 8 <= b.size();) {
    EXPECT_EQ(u32_at(b, off), kRecordIOMagic) << "at " << off;
    uint32_t lrec = u32_at(b, off + 4), len = lrec & ((1u << 29) - 1);
    flags.push_back(lrec >> 29);
    off += 8 + ((len + 3) & ~3u);
  }
  return flags;
}

int max_diff(const Image& img, const std::string& fixture_image) {
  auto want = manifest()["images"][fixture_image]["rgb"].get<std::vector<int>>();
  EXPECT_EQ(img.pixels.size(), want.size()) << fixture_image;
  int worst = 0;
  for (size_t i = 0; i < std::min(want.size(), img.pixels.size()); ++i)
    worst = std::max(worst, std::abs((int)img.pixels[i] - want[i]));
  return worst;
}

std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

TEST(RecordIO, ReadsFaceLayoutWrittenByIndependentWriter) {
  const auto& m = manifest()["face_rec"];
  RecordDataset ds(fixture("rec/face.rec"), fixture("rec/face.idx"));
  EXPECT_TRUE(ds.face_layout());
  ASSERT_EQ(ds.size(), (size_t)m["a"].get<int>() - 1);
  EXPECT_EQ(ds.num_classes(), m["num_classes"].get<int>());
  for (size_t i = 0; i < ds.size(); ++i) {
    const auto& want = m["images"][std::to_string(ds.key(i))];
    EXPECT_EQ(ds.key(i), i + 1);
    EXPECT_EQ(ds.label(i), want["label"].get<int>()) << ds.describe(i);
    Sample s = ds.get(i);
    EXPECT_EQ(s.label, want["label"].get<int>());
    std::string name = want["image"];
    EXPECT_LE(max_diff(s.image, name), name.ends_with(".png") ? 0 : 3) << ds.describe(i) << " " << name;
  }
  auto ranges = m["identities"].get<std::vector<std::vector<uint64_t>>>();
  for (int64_t c = 0; c < ds.num_classes(); ++c) {
    auto [begin, end] = ds.identity_range(c);
    EXPECT_EQ(begin, ranges[c][0]);
    EXPECT_EQ(end, ranges[c][1]);
  }
  EXPECT_NE(ds.describe(0).find("face.rec key 1"), std::string::npos) << ds.describe(0);
}

TEST(RecordIO, RejoinsSplitRecordsAndReadsMultiLabelHeaders) {
  const auto& m = manifest()["face_rec"];
  auto flags = physical_flags(fixture("rec/face.rec"));
  EXPECT_EQ(flags.size(), m["physical_records"].get<size_t>());
  // Key 2 has the magic word at payload offsets 8 and 12 (its id): parts 1, 2 (empty), 3.
  RecordIOReader reader(fixture("rec/face.rec"), fixture("rec/face.idx"));
  auto all = read_file_bytes(fixture("rec/face.rec"));
  uint64_t off2 = reader.offset(2);
  EXPECT_EQ(u32_at(all, off2 + 4) >> 29, 1u);
  std::vector<uint8_t> bytes2 = reader.read(2);
  RecordPayload p2 = parse_payload(bytes2);
  EXPECT_EQ(p2.header.id, uint64_t(kRecordIOMagic) | (uint64_t(kRecordIOMagic) << 32));
  EXPECT_EQ(p2.header.label, 0.0f);
  // Key 3: the magic word inside the JPEG (a comment segment) is restored, so the image decodes.
  std::vector<uint8_t> bytes3 = reader.read(3);  // the payload's image is a view into these bytes
  RecordPayload p3 = parse_payload(bytes3);
  uint32_t word = kRecordIOMagic;
  EXPECT_EQ(std::memcmp(p3.image.data() + 8, &word, 4), 0);
  // Key 4: flag 3, three float labels, the first is the class.
  std::vector<uint8_t> bytes4 = reader.read(4);
  RecordPayload p4 = parse_payload(bytes4);
  EXPECT_EQ(p4.header.flag, 3u);
  EXPECT_EQ(p4.labels, m["multi_labels"].get<std::vector<float>>());
  EXPECT_EQ(p4.class_label(), 1.0f);
}

TEST(RecordIO, WriterReproducesIndependentWriterByteForByte) {
  RecordIOReader reader(fixture("rec/face.rec"), fixture("rec/face.idx"));
  auto index = reader.index();
  std::sort(index.begin(), index.end(), [](auto& a, auto& b) { return a.second < b.second; });
  TempDir dir;
  {
    RecordIOWriter w(dir / "copy.rec", dir / "copy.idx");
    for (auto& [key, off] : index) EXPECT_EQ(w.write(key, reader.read(key)), off);
    w.close();
  }
  EXPECT_EQ(read_file_bytes(dir / "copy.rec"), read_file_bytes(fixture("rec/face.rec")));
  EXPECT_EQ(read_file_bytes(dir / "copy.idx"), read_file_bytes(fixture("rec/face.idx")));
}

TEST(RecordIO, ReadsPlainIm2recFile) {
  const auto& m = manifest()["plain_rec"];
  RecordDataset ds(fixture("rec/plain.rec"));  // the index path defaults to plain.idx
  EXPECT_FALSE(ds.face_layout());
  ASSERT_EQ(ds.size(), m["images"].size());
  EXPECT_EQ(ds.num_classes(), m["num_classes"].get<int>());
  for (size_t i = 0; i < ds.size(); ++i) {
    EXPECT_EQ(ds.key(i), i);  // keys come back sorted though the file holds them out of order
    const auto& want = m["images"][std::to_string(i)];
    Sample s = ds.get(i);
    EXPECT_EQ(s.label, want["label"].get<int>());
    std::string name = want["image"];
    EXPECT_LE(max_diff(s.image, name), name.ends_with(".png") ? 0 : 3) << name;
  }
  expect_error([&] { ds.identity_range(0); }, {"only in the face layout"});
}

// A JPEG with a comment segment that puts the magic word 4-byte aligned in the record payload.
std::vector<uint8_t> jpeg_with_magic(const std::vector<uint8_t>& jpg) {
  std::vector<uint8_t> out(jpg.begin(), jpg.begin() + 2);
  uint8_t seg[] = {0xFF, 0xFE, 0, 10, 'f', 'f', 0, 0, 0, 0, 'f', 'f'};
  uint32_t word = kRecordIOMagic;
  std::memcpy(seg + 6, &word, 4);
  out.insert(out.end(), seg, seg + sizeof seg);
  out.insert(out.end(), jpg.begin() + 2, jpg.end());
  return out;
}

TEST(RecordIO, RecordWriterRoundTrip) {
  const uint64_t seed = 4242;
  std::cout << "seed " << seed << "\n";
  Rng rng(seed);
  TempDir dir;
  // Classes 0, 1, 3 have images, class 2 none (it gets an empty identity range).
  std::vector<int64_t> labels = {0, 0, 1, 1, 1, 3, 3};
  std::vector<Image> images;
  {
    RecordWriter w(dir / "train.rec", dir / "train.idx");
    for (size_t i = 0; i < labels.size(); ++i) {
      Image img(6 + (int)i, 5, 3);
      for (auto& p : img.pixels) p = (uint8_t)rng.below(256);
      images.push_back(img);
      auto png = encode_png(img);
      w.add(i == 3 ? jpeg_with_magic(encode_jpeg(img, 90)) : png, labels[i]);
    }
    EXPECT_EQ(w.images(), labels.size());
    expect_error([&] { w.add(encode_png(images[0]), 1); }, {"label 1", "grouped by class"});
    w.close();
  }
  auto flags = physical_flags(dir / "train.rec");
  EXPECT_EQ(std::count(flags.begin(), flags.end(), 1u), 1) << "the JPEG with the magic word must be split";
  RecordDataset ds(dir / "train.rec", dir / "train.idx");
  EXPECT_TRUE(ds.face_layout());
  ASSERT_EQ(ds.size(), labels.size());
  EXPECT_EQ(ds.num_classes(), 4);
  for (size_t i = 0; i < labels.size(); ++i) {
    Sample s = ds.get(i);
    EXPECT_EQ(s.label, labels[i]);
    EXPECT_EQ(ds.label(i), labels[i]);
    ASSERT_EQ(s.image.height, images[i].height);
    if (i != 3) {
      EXPECT_EQ(s.image.pixels, images[i].pixels) << i;
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> want = {{1, 3}, {3, 6}, {6, 6}, {6, 8}};
  for (int c = 0; c < 4; ++c) EXPECT_EQ(ds.identity_range(c), want[c]) << "class " << c;
}

TEST(RecordIO, PacksImageFolderLikeImageFolderDataset) {
  TempDir dir;
  Rng rng(77);
  std::cout << "seed 77\n";
  for (std::string id : {"zed", "amy", "bob"}) {
    std::filesystem::create_directories(dir.path / "faces" / id);
    for (int k = 0; k < 2; ++k) {
      Image img(8, 8, 3);
      for (auto& p : img.pixels) p = (uint8_t)rng.below(256);
      write_file_bytes((dir.path / "faces" / id / ("img" + std::to_string(k) + ".png")).string(), encode_png(img));
    }
  }
  EXPECT_EQ(pack_image_folder(dir / "faces", dir / "faces.rec", dir / "faces.idx"), 6u);
  ImageFolderDataset folder(dir / "faces");
  RecordDataset rec(dir / "faces.rec");
  ASSERT_EQ(rec.size(), folder.size());
  EXPECT_EQ(rec.num_classes(), 3);
  for (size_t i = 0; i < rec.size(); ++i) {
    EXPECT_EQ(rec.label(i), folder.label(i));
    EXPECT_EQ(rec.get(i).image.pixels, folder.get(i).image.pixels) << folder.describe(i);
  }
}

// Files in a folder, as names.
std::vector<std::string> listing(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(RecordIO, FailedPackWritesNothingAndKeepsOldFiles) {
  TempDir dir;
  auto png = read_file_bytes(fixture("images/rgb.png"));
  for (std::string id : {"amy", "bob"}) {
    std::filesystem::create_directories(dir.path / "faces" / id);
    write_file_bytes(dir / ("faces/" + id + "/1.png"), png);
  }
  std::filesystem::create_directories(dir.path / "out");
  write_file_bytes(dir / "faces/amy/2.png",
                   std::vector<uint8_t>{'n', 'o', 'p', 'e'});  // between amy/1.png and bob/1.png
  expect_error([&] { pack_image_folder(dir / "faces", dir / "out/train.rec", dir / "out/train.idx"); },
               {"amy/2.png", "not a JPEG or PNG"});
  EXPECT_EQ(listing(dir.path / "out"), std::vector<std::string>{}) << "a failed pack must leave no files";
  // A good pair at the paths survives a failed pack untouched.
  std::filesystem::remove(dir.path / "faces/amy/2.png");
  ASSERT_EQ(pack_image_folder(dir / "faces", dir / "out/train.rec", dir / "out/train.idx"), 2u);
  auto rec = read_file_bytes(dir / "out/train.rec"), idx = read_file_bytes(dir / "out/train.idx");
  write_file_bytes(dir / "faces/amy/2.png", std::vector<uint8_t>{'n', 'o', 'p', 'e'});
  EXPECT_THROW(pack_image_folder(dir / "faces", dir / "out/train.rec", dir / "out/train.idx"), Error);
  EXPECT_EQ(listing(dir.path / "out"), (std::vector<std::string>{"train.idx", "train.rec"}));
  EXPECT_EQ(read_file_bytes(dir / "out/train.rec"), rec);
  EXPECT_EQ(read_file_bytes(dir / "out/train.idx"), idx);
  EXPECT_EQ(RecordDataset(dir / "out/train.rec").size(), 2u);
  {
    RecordWriter w(dir / "out/w.rec", dir / "out/w.idx");
    w.add(png, 0);
  }  // destroyed without close(): nothing written
  EXPECT_EQ(listing(dir.path / "out"), (std::vector<std::string>{"train.idx", "train.rec"}));
  expect_error([&] { RecordIOWriter w(dir / "out/x.idx", dir / "out/x.idx"); }, {"x.idx", "cannot be the record file"});
}

TEST(RecordIO, GetIsThreadSafe) {
  RecordDataset ds(fixture("rec/face.rec"), fixture("rec/face.idx"), {{8, 8, true}, false});
  std::vector<std::vector<uint8_t>> want;
  for (size_t i = 0; i < ds.size(); ++i) want.push_back(ds.get(i).image.pixels);
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 50; ++round)
        for (size_t i = 0; i < ds.size(); ++i)
          mismatches[t] += ds.get((i + t) % ds.size()).image.pixels != want[(i + t) % ds.size()];
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0);
}

// ---------------------------------------------------------------- bad input

struct FaceCopy {
  TempDir dir;
  std::vector<uint8_t> rec = read_file_bytes(fixture("rec/face.rec"));
  RecordIOReader reader{fixture("rec/face.rec"), fixture("rec/face.idx")};
  std::string rec_path() { return dir / "bad.rec"; }
  std::string idx_path() { return dir / "bad.idx"; }
  void save(const std::string& idx_text = "") {
    write_file_bytes(rec_path(), rec);
    if (idx_text.empty())
      std::filesystem::copy_file(fixture("rec/face.idx"), idx_path(),
                                 std::filesystem::copy_options::overwrite_existing);
    else
      write_text(idx_path(), idx_text);
  }
};

TEST(RecordIOBadInput, TruncatedRecord) {
  FaceCopy f;
  uint64_t off7 = f.reader.offset(7);
  f.rec.resize(off7 + 8 + 20);
  std::string idx;
  for (auto& [k, off] : f.reader.index())
    if (off < f.rec.size()) idx += std::to_string(k) + "\t" + std::to_string(off) + "\n";
  f.save(idx);
  RecordDataset ds(f.rec_path(), f.idx_path());
  expect_error([&] { ds.get(6); }, {"bad.rec key 7", "truncated record at offset " + std::to_string(off7)});
}

TEST(RecordIOBadInput, BadMagic) {
  FaceCopy f;
  uint64_t off5 = f.reader.offset(5);
  f.rec[off5] ^= 0x5A;
  f.save();
  RecordDataset ds(f.rec_path(), f.idx_path());
  expect_error([&] { ds.get(4); }, {"key 5", "bad magic", "at offset " + std::to_string(off5)});
  EXPECT_EQ(ds.get(3).label, 1);  // other records still read
}

TEST(RecordIOBadInput, IndexPointsIntoSplitRecord) {
  FaceCopy f;
  uint64_t off2 = f.reader.offset(2);
  uint32_t len1 = u32_at(f.rec, off2 + 4) & ((1u << 29) - 1);
  f.save("0\t0\n1\t" + std::to_string(off2 + 8 + len1) + "\n");
  RecordIOReader r(f.rec_path(), f.idx_path());
  expect_error([&] { r.read(1); }, {"continuation flag 2", "middle of a split record"});
}

TEST(RecordIOBadInput, IndexOffsetPastEnd) {
  FaceCopy f;
  f.save("0\t0\n1\t999999\n");
  expect_error([&] { RecordDataset ds(f.rec_path(), f.idx_path()); },
               {"bad.idx", "offset 999999 of key 1", "past the end", std::to_string(f.rec.size()) + " bytes"});
}

TEST(RecordIOBadInput, MalformedIndex) {
  FaceCopy f;
  f.save("0\t0\n1\tabc\n");
  expect_error([&] { RecordIOReader r(f.rec_path(), f.idx_path()); }, {"bad.idx line 2", "key<TAB>offset"});
  f.save("0\t0\n0\t0\n");
  expect_error([&] { RecordIOReader r(f.rec_path(), f.idx_path()); }, {"key 0 appears twice"});
}

TEST(RecordIOBadInput, FaceHeaderWithMissingImageKey) {
  FaceCopy f;
  f.save("0\t0\n1\t" + std::to_string(f.reader.offset(1)) + "\n");
  expect_error([&] { RecordDataset ds(f.rec_path(), f.idx_path()); }, {"key 2 is not in the index"});
}

void write_plain(const std::string& rec, const std::vector<float>& labels, const std::vector<uint8_t>& image) {
  RecordIOWriter w(rec, "");
  for (size_t k = 0; k < labels.size(); ++k) {
    IRHeader h;
    h.label = labels[k];
    w.write(k, pack_payload(h, {}, image));
  }
  w.close();
}

TEST(RecordIOBadInput, LabelOutOfRange) {
  TempDir dir;
  auto png = read_file_bytes(fixture("images/rgb.png"));
  write_plain(dir / "neg.rec", {0, -1, 2}, png);
  expect_error([&] { RecordDataset ds(dir / "neg.rec"); }, {"neg.rec key 1", "label -1 is out of range"});
  write_plain(dir / "frac.rec", {0, 2.5f}, png);
  expect_error([&] { RecordDataset ds(dir / "frac.rec"); }, {"frac.rec key 1", "label 2.5 is not an integer"});
  {
    RecordWriter w(dir / "face.rec", dir / "face.idx");
    w.add(png, 0);
    w.add(png, 1);
    w.close();
  }
  // Rewrite key 2's label to 5 with only 2 identities: detected when the label is read.
  RecordIOReader r(dir / "face.rec", dir / "face.idx");
  auto bytes = read_file_bytes(dir / "face.rec");
  float five = 5;
  std::memcpy(bytes.data() + r.offset(2) + 8 + 4, &five, 4);
  write_file_bytes(dir / "face5.rec", bytes);
  std::filesystem::copy_file(dir / "face.idx", dir / "face5.idx");
  RecordDataset ds(dir / "face5.rec");
  EXPECT_EQ(ds.label(0), 0);
  expect_error([&] { ds.label(1); }, {"face5.rec key 2", "label 5 is out of range [0, 2)"});
  expect_error([&] { ds.get(1); }, {"label 5 is out of range"});
}

// Labels float32 cannot hold exactly (and the writer refuses) are corrupt, not a class count.
TEST(RecordIOBadInput, HugeAndNonFiniteLabels) {
  TempDir dir;
  auto png = read_file_bytes(fixture("images/rgb.png"));
  write_plain(dir / "huge.rec", {0, 36028797018963968.0f}, png);  // 2^55
  expect_error([&] { RecordDataset ds(dir / "huge.rec"); },
               {"huge.rec key 1", "label 3.60288e+16 is out of range [0, 16777216)"});
  write_plain(dir / "big.rec", {0, 16777216.0f}, png);  // 2^24
  expect_error([&] { RecordDataset ds(dir / "big.rec"); }, {"big.rec key 1", "out of range [0, 16777216)"});
  write_plain(dir / "over.rec", {1e30f}, png);  // past int64: printed as the float
  expect_error([&] { RecordDataset ds(dir / "over.rec"); }, {"over.rec key 0", "label 1e+30 is out of range"});
  write_plain(dir / "nan.rec", {0, std::nanf("")}, png);
  expect_error([&] { RecordDataset ds(dir / "nan.rec"); }, {"nan.rec key 1", "is not an integer class id"});
  write_plain(dir / "top.rec", {0, 16777215.0f}, png);  // the largest allowed label
  EXPECT_EQ(RecordDataset(dir / "top.rec").num_classes(), 16777216);
}

// A face-layout file of 3 images in 2 classes, its bytes, and where key k's payload starts.
struct SmallFace {
  TempDir dir;
  std::vector<uint8_t> bytes;
  std::unique_ptr<RecordIOReader> reader;
  SmallFace() {
    auto png = read_file_bytes(fixture("images/rgb.png"));
    RecordWriter w(dir / "f.rec", dir / "f.idx");
    w.add(png, 0);
    w.add(png, 0);
    w.add(png, 1);
    w.close();
    bytes = read_file_bytes(dir / "f.rec");
    reader = std::make_unique<RecordIOReader>(dir / "f.rec", dir / "f.idx");
  }
  size_t payload_at(uint64_t key) { return reader->offset(key) + 8; }
  void set(size_t at, auto value) { std::memcpy(bytes.data() + at, &value, sizeof value); }
  // Saves the patched bytes as bad.rec (+ bad.idx) and returns its path.
  std::string save() {
    write_file_bytes(dir / "bad.rec", bytes);
    std::filesystem::copy_file(dir / "f.idx", dir / "bad.idx", std::filesystem::copy_options::overwrite_existing);
    return dir / "bad.rec";
  }
};

TEST(RecordIOBadInput, CorruptIdentityRanges) {
  for (float bad : {std::nanf(""), -1.0f, 1e30f, 2.5f}) {
    SmallFace f;
    f.set(f.payload_at(4) + 24, bad);  // key 4 = a: class 0's identity record, its first label
    RecordDataset ds(f.save());
    EXPECT_EQ(ds.identity_range(1), (std::pair<uint64_t, uint64_t>{3, 4}));
    expect_error([&] { ds.identity_range(0); }, {"bad.rec key 4", "identity record has labels", "image-key range"});
  }
  SmallFace f;
  f.set(f.payload_at(4) + 24, 4.0f);  // start after end
  RecordDataset ds(f.save());
  expect_error([&] { ds.identity_range(0); }, {"bad.rec key 4", "labels (4, 3)"});
}

TEST(RecordIOBadInput, HeaderAndIdentityParseErrorsNameFileAndKey) {
  SmallFace f;
  f.set(f.payload_at(5), uint32_t(200));  // class 1's identity record announces 200 labels
  RecordDataset ds(f.save());
  expect_error([&] { ds.identity_range(1); }, {"bad.rec key 5: IRHeader flag 200"});
  f.set(f.payload_at(0), uint32_t(200));  // so does record 0
  expect_error([&] { RecordDataset bad(f.save()); }, {"bad.rec key 0: IRHeader flag 200"});
}

TEST(RecordIOBadInput, UndecodableImageErrorsOrIsSkipped) {
  TempDir dir;
  auto png = read_file_bytes(fixture("images/rgb.png"));
  std::vector<uint8_t> junk = {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'};
  {
    RecordWriter w(dir / "t.rec", dir / "t.idx");
    w.add(png, 0);
    w.add(junk, 0);
    w.add(png, 1);
    w.close();
  }
  RecordDataset strict(dir / "t.rec");
  expect_error([&] { strict.get(1); }, {"t.rec key 2", "not a JPEG or PNG"});
  RecordDatasetOptions opt;
  opt.skip_undecodable = true;
  RecordDataset lenient(dir / "t.rec", "", opt);
  for (int round = 0; round < 3; ++round)
    for (size_t i = 0; i < lenient.size(); ++i) EXPECT_EQ(lenient.get(i).image.height, 8);
  EXPECT_EQ(lenient.get(1).label, 1);  // key 2 is replaced by key 3
  EXPECT_EQ(lenient.skipped(), std::vector<uint64_t>{2});
}

TEST(RecordIOBadInput, MissingFiles) {
  TempDir dir;
  expect_error([&] { RecordDataset ds(dir / "none.rec"); }, {"cannot open RecordIO index", "none.idx"});
  write_text(dir / "only.idx", "0\t0\n");
  expect_error([&] { RecordDataset ds(dir / "only.rec"); }, {"cannot open RecordIO file", "only.rec"});
}

TEST(RecordIOBadInput, PayloadShorterThanHeaderOrLabels) {
  expect_error([] { parse_payload(std::vector<uint8_t>(10)); }, {"10 bytes", "shorter than the 24-byte IRHeader"});
  std::vector<uint8_t> p(28, 0);
  p[0] = 200;  // flag 200: 800 bytes of labels announced, 4 present
  expect_error([&] { parse_payload(p); }, {"flag 200", "only 4 bytes"});
}

}  // namespace
}  // namespace ff::data
