// safetensors: round trip, a file from an independent Python writer, and malformed files.
#include "engine/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "engine/ops.h"
#include "tests/engine/file_test_util.h"
#include "tests/engine/gradcheck.h"

namespace ff::test {
namespace {

const std::string kFixtures = std::string(FLATFACE_SOURCE_DIR) + "/tests/engine/fixtures/";

Tensor raw16(DType dt, const std::vector<uint16_t>& bits) {
  Tensor t = Tensor::empty({(int64_t)bits.size()}, dt);
  std::memcpy(t.raw(), bits.data(), bits.size() * 2);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// The file as the 8-byte length, the header text and the data.
std::string file_bytes(const std::string& header, const std::string& data, uint64_t length) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = (char)(length >> (8 * i));
  return s + header + data;
}
std::string file_bytes(const std::string& header, const std::string& data) {
  return file_bytes(header, data, header.size());
}

void expect_load_error(const std::string& path, const std::vector<std::string>& parts) {
  try {
    (void)load_safetensors(path);
    ADD_FAILURE() << "no ff::Error loading " << path;
  } catch (const Error& e) {
    std::string m = e.what();
    std::printf("[bad file] %s\n", m.c_str());
    EXPECT_NE(m.find(path), std::string::npos) << "message does not name the file: " << m;
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "message lacks '" << p << "': " << m;
  }
}

TEST(Safetensors, RoundTripKeepsEveryByte) {
  ScratchDir dir;
  uint64_t seed = test_seed(31);
  Rng rng(seed);
  std::printf("seed %llu\n", (unsigned long long)seed);
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"layer1.0.conv1.weight", randn({4, 3, 3, 3}, rng, 1.0, DType::F32)},
      {"bn1.running_var", rand_uniform({5}, rng, 0.1, 2.0, DType::F64)},
      {"bn1.num_batches_tracked", Tensor::from<int64_t>({}, std::vector<int64_t>{987654321012LL})},
      {"ids", Tensor::from<int64_t>({2, 2}, std::vector<int64_t>{INT64_MIN, -1, 0, INT64_MAX})},
      {"scalar", Tensor::full({}, -2.75, DType::F32)},
      {"empty", Tensor::empty({0, 7}, DType::F32)},
      {"bf", raw16(DType::BF16, {0x3fc0, 0xbe20, 0x7f80})},
      {"h", raw16(DType::F16, {0x3c00, 0xc100})},
  };
  SafetensorsMetadata meta = {{"format", "pt"}, {"step", "1200"}, {"note", "ünïcode ok"}};
  std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, tensors, meta);

  std::string bytes = read_all(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | (unsigned char)bytes[i];
  EXPECT_EQ((8 + n) % 8, 0u) << "data section must start 8-byte aligned";

  SafetensorsMetadata meta_back;
  auto loaded = load_safetensors(path, &meta_back);
  EXPECT_EQ(meta_back, meta);
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(loaded.count(name)) << name;
    EXPECT_TRUE(same_bytes(loaded.at(name), t)) << name << ": " << loaded.at(name).str() << " vs " << t.str();
    EXPECT_EQ(loaded.at(name).name(), name);
  }
  // Data is laid out in the order given.
  auto index = read_safetensors_index(path);
  ASSERT_EQ(index.size(), tensors.size());
  for (size_t i = 0; i < index.size(); ++i) EXPECT_EQ(index[i].name, tensors[i].first);

  // Saving again replaces the file (no metadata this time).
  save_safetensors(path, {{"only", Tensor::full({2}, 1.0, DType::F64)}});
  auto again = load_safetensors(path, &meta_back);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again.at("only").to_vector(), (std::vector<double>{1.0, 1.0}));
  EXPECT_TRUE(meta_back.empty());
}

TEST(Safetensors, ReadsFileFromIndependentPythonWriter) {
  std::string path = kFixtures + "small.safetensors";
  std::ifstream ej(kFixtures + "small.expected.json");
  nlohmann::json expected = nlohmann::json::parse(ej);
  SafetensorsMetadata meta;
  auto loaded = load_safetensors(path, &meta);
  EXPECT_EQ(meta, expected["__metadata__"].get<SafetensorsMetadata>());
  EXPECT_EQ(loaded.size(), expected.size() - 1);
  for (const auto& [name, e] : expected.items()) {
    if (name == "__metadata__") continue;
    ASSERT_TRUE(loaded.count(name)) << name;
    const Tensor& t = loaded.at(name);
    EXPECT_EQ(t.shape(), e["shape"].get<Shape>()) << name;
    std::string dt = e["dtype"];
    if (dt == "F16" || dt == "BF16") {
      EXPECT_EQ(t.dtype(), dt == "F16" ? DType::F16 : DType::BF16);
      auto bits = e["bits"].get<std::vector<uint16_t>>();
      ASSERT_EQ((size_t)t.numel(), bits.size()) << name;
      EXPECT_EQ(std::memcmp(t.raw(), bits.data(), bits.size() * 2), 0) << name;
    } else if (dt == "I64") {
      auto v = e["values"].get<std::vector<int64_t>>();
      ASSERT_EQ((size_t)t.numel(), v.size()) << name;
      for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(t.data<int64_t>()[i], v[i]) << name << "[" << i << "]";
    } else {
      EXPECT_EQ(t.dtype(), dt == "F32" ? DType::F32 : DType::F64) << name;
      auto v = e["values"].get<std::vector<double>>();
      ASSERT_EQ((size_t)t.numel(), v.size()) << name;
      for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(t.item((int64_t)i), v[i]) << name << "[" << i << "]";
    }
  }
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  ScratchDir dir;
  int k = 0;
  auto bad = [&](const std::string& bytes, const std::vector<std::string>& parts) {
    std::string path = dir.file("bad" + std::to_string(k++) + ".safetensors");
    write_all(path, bytes);
    expect_load_error(path, parts);
  };
  const std::string d8(8, '\x01');
  auto one = [](const std::string& entry) { return "{\"t\":" + entry + "}"; };

  bad("abc", {"too short"});
  bad(file_bytes("{}", "", 1000), {"header length 1000 runs past the end of the file"});
  bad(file_bytes("{}", "", ~0ULL), {"runs past the end of the file"});
  bad(file_bytes("{\"t\": {", ""), {"not valid JSON"});
  bad(file_bytes("[1, 2]", ""), {"must be a JSON object"});
  bad(file_bytes(one("5"), ""), {"'t'", "must be an object"});
  bad(file_bytes(one("{\"shape\":[2],\"data_offsets\":[0,8]}"), d8), {"'t'", "no 'dtype'"});
  bad(file_bytes(one("{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}"), d8), {"'t'", "unknown dtype 'F33'"});
  bad(file_bytes(one("{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}"), d8), {"'t'", "I32", "not supported"});
  bad(file_bytes(one("{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}"), d8), {"'t'", "non-negative"});
  bad(file_bytes(one("{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}"), d8), {"'t'", "shape must be an array"});
  bad(file_bytes(one("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}"), d8), {"'t'", "needs 12"});
  bad(file_bytes(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}"), d8), {"'t'", "end before"});
  bad(file_bytes(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}"), d8), {"'t'", "[begin, end]"});
  bad(file_bytes(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}"), d8), {"'t'", "run past the end"});
  bad(file_bytes(one("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"), d8), {"trailing bytes"});
  bad(file_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 d8),
      {"'b'", "overlap tensor 'a'"});
  bad(file_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                 d8 + "1234"),
      {"'b'", "gap"});
  bad(file_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 d8),
      {"'a'", "more than once"});
  bad(file_bytes("{\"__metadata__\":{\"step\":5}}", ""), {"__metadata__", "'step'", "must be a string"});

  // A good file cut short: its last tensor now runs past the end.
  std::string good = dir.file("good.safetensors");
  save_safetensors(good, {{"w", Tensor::full({4, 4}, 0.5)}, {"b", Tensor::full({4}, 1.5)}});
  std::string whole = read_all(good);
  bad(whole.substr(0, whole.size() - 5), {"'b'", "run past the end of the data section"});
  bad(whole.substr(0, 12), {"runs past the end of the file"});
  expect_load_error(dir.file("missing.safetensors"), {"cannot read"});
}

// A deeply nested header (valid JSON, 2 MB) must not crash the reader, and no message may paste a
// megabyte of header.
TEST(Safetensors, DeepOrHugeHeaderValuesGiveShortErrors) {
  ScratchDir dir;
  const size_t depth = 1'000'000;
  std::string path = dir.file("deep.safetensors");
  write_all(path, file_bytes("{\"t\":" + std::string(depth, '[') + std::string(depth, ']') + "}", ""));
  expect_load_error(path, {"nests JSON deeper than 8 levels"});
  write_all(path, file_bytes("{\"t\":[[[[[[[[1]]]]]]]]}", ""));  // 9 levels
  expect_load_error(path, {"nests JSON deeper than 8 levels"});
  write_all(path, file_bytes("{\"t\":[[[[[[[1]]]]]]]}", ""));  // 8 levels: only the entry is wrong
  expect_load_error(path, {"'t': entry must be an object, got an array"});
  // A megabyte string, a long number (the JSON error quotes it), a long array.
  std::string long_string(1'000'000, 'x'), long_number(500'000, '1'), long_array(999'999, ',');
  long_string.front() = long_string.back() = '"';
  long_number.front() = '[', long_number.back() = ']';
  for (size_t i = 1; i + 1 < long_array.size(); i += 2) long_array[i] = '1';
  long_array.front() = '[', long_array.back() = ']';
  for (const std::string& entry : {long_string, long_number, long_array}) {
    write_all(path, file_bytes("{\"t\":" + entry + "}", ""));
    try {
      (void)load_safetensors(path);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_LT(m.size(), 500u) << m.substr(0, 500);
      EXPECT_NE(m.find(path), std::string::npos) << m.substr(0, 300);
    }
  }
}

// Files of other kinds passed as a model: one line saying it is not a safetensors file, with the detail.
TEST(Safetensors, OtherFilesAreCalledNotSafetensors) {
  ScratchDir dir;
  auto other = [&](const std::string& name, const std::string& bytes, const std::vector<std::string>& parts) {
    std::string path = dir.file(name);
    write_all(path, bytes);
    expect_load_error(path, parts);
  };
  // A JPEG and a text file: their first 8 bytes read as an absurd header length.
  other("photo.jpg", std::string("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", 12) + std::string(100, 'x'),
        {"not a safetensors file", "header length 5064878326892452095 is implausible", "runs past the end"});
  other("notes.txt", "# model notes\nfine-tuned on lfw\n",
        {"not a safetensors file", "header length 2336353788739002403 is implausible"});
  // A plausible length with no JSON behind it (a small binary blob).
  other("blob.bin", file_bytes("\x01\x02\x03\x04", ""), {"not a safetensors file", "header is not valid JSON"});
  // A plausible length past the end is a cut-short file more likely than another kind.
  other("cut.safetensors", file_bytes("{}", "", 1000), {"runs past the end of the file", "truncated"});
}

TEST(Safetensors, BadSaveArgumentsLeaveOldFile) {
  ScratchDir dir;
  std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"w", Tensor::full({3}, 2.0)}});
  std::string before = read_all(path);
  Tensor t = Tensor::full({2}, 1.0);
  auto expect_save_error = [&](const std::vector<std::pair<std::string, Tensor>>& ts, const std::string& part) {
    try {
      save_safetensors(path, ts);
      ADD_FAILURE() << "no error (expected '" << part << "')";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  expect_save_error({{"a", t}, {"a", t}}, "given twice");
  expect_save_error({{"__metadata__", t}}, "cannot save a tensor named");
  expect_save_error({{"", t}}, "cannot save a tensor named");
  expect_save_error({{"a", t}, {"u", Tensor()}}, "undefined");
  expect_save_error({{"bad\xff", t}}, "UTF-8");
  EXPECT_EQ(read_all(path), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ckpt.safetensors"});
}

}  // namespace
}  // namespace ff::test
