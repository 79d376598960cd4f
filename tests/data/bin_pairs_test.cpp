// .bin pairs and the restricted pickle reader: every protocol Python writes, Python 2 streams, refusals, round trips.
#include "data/bin_pairs.h"

#include <gtest/gtest.h>

#include <cstring>

#include "data/file_io.h"
#include "data/image_codec.h"
#include "data/pickle.h"
#include "engine/rng.h"
#include "test_util.h"

namespace ff::data {
namespace {
using test::expect_error;
using test::fixture;
using test::manifest;

using namespace std::string_literals;

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back((uint8_t)std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

TEST(BinPairs, ReadsEveryPickleVariantPythonWrites) {
  const auto& m = manifest()["bins"];
  const size_t n = m["pairs"];
  const std::string issame = m["issame"];
  auto image6 = from_hex(m["image6_hex"]);
  for (const std::string& name : m["files"].get<std::vector<std::string>>()) {
    SCOPED_TRACE(name);
    BinPairs p = read_bin_pairs(fixture("bins/" + name));
    ASSERT_EQ(p.pairs(), n);
    ASSERT_EQ(p.images.size(), 2 * n);
    for (size_t k = 0; k < n; ++k) ASSERT_EQ(p.issame[k], issame[k] == '1') << "pair " << k;
    for (auto& [idx, img] : m["real_images"].items())
      EXPECT_EQ(p.images[std::stoul(idx)], read_file_bytes(fixture("images/" + img.get<std::string>())));
    EXPECT_EQ(p.images[5], p.images[4]);
    EXPECT_EQ(p.images[6], image6);
    for (size_t i = 7; i < 2 * n; ++i) {
      char want[32];
      std::snprintf(want, sizeof want, "i%04zu", i);
      ASSERT_EQ(p.images[i], bytes_of(want)) << "image " << i;
    }
    EXPECT_EQ(decode_image(p.images[0]).height, 8);
  }
}

TEST(BinPairs, RefusesCodeAndObjects) {
  expect_error([] { read_bin_pairs(fixture("bins/forbidden_global.bin")); },
               {"forbidden_global.bin", "GLOBAL (0x63) at offset", "posix.system", "never imports or calls"});
  expect_error([] { read_bin_pairs(fixture("bins/forbidden_stack_global.bin")); },
               {"forbidden_stack_global.bin", "STACK_GLOBAL (0x93) at offset", "not allowed"});
  // Hand-made streams: a call without a global, object building, dicts, an unknown byte.
  expect_error([] { load_pickle(bytes_of("N)R."), "t"); }, {"REDUCE (0x52) at offset 2", "calls are not allowed"});
  expect_error([] { load_pickle(bytes_of("\x80\x02N}b."), "t"); }, {"EMPTY_DICT (0x7d) at offset 3"});
  expect_error([] { load_pickle(bytes_of("NNb."), "t"); }, {"BUILD (0x62) at offset 2"});
  expect_error([] { load_pickle(bytes_of("(i__main__\nX\n."), "t"); }, {"INST (0x69) at offset 1"});
  expect_error([] { load_pickle(bytes_of("N\xff."), "t"); }, {"unknown opcode", "0xff", "offset 1"});
  // The protocol-2 bytes idiom is allowed only as _codecs.encode(str, 'latin1').
  expect_error(
      [] { load_pickle(bytes_of("c_codecs\nencode\nX\x01\x00\x00\x00"s + "aX\x04\x00\x00\x00"s + "utf8\x86R."), "t"); },
      {"encoding 'utf8'"});
  expect_error([] { load_pickle(bytes_of("c_codecs\nencode\n."), "t"); }, {"a global, not data"});
  auto ok = load_pickle(bytes_of("c_codecs\nencode\nX\x02\x00\x00\x00\xc3\xbfX\x06\x00\x00\x00latin1\x86R."s), "t");
  ASSERT_EQ(ok->kind, PickleValue::Kind::Bytes);
  EXPECT_EQ(ok->bytes, std::vector<uint8_t>{0xFF});
}

TEST(BinPairs, MalformedStreams) {
  auto p4 = read_file_bytes(fixture("bins/pairs_p4.bin"));
  std::vector<uint8_t> half(p4.begin(), p4.begin() + p4.size() / 2);
  std::string m = test::error_of([&] { parse_bin_pairs(half, "half.bin"); });
  EXPECT_NE(m.find("half.bin"), std::string::npos) << m;
  EXPECT_TRUE(m.find("truncated") != std::string::npos || m.find("without STOP") != std::string::npos) << m;
  auto p3 = read_file_bytes(fixture("bins/pairs_p3.bin"));  // no frames: cut inside an opcode's argument
  for (size_t cut : {p3.size() / 2, p3.size() - 1, size_t(3)}) {
    std::vector<uint8_t> part(p3.begin(), p3.begin() + cut);
    std::string e = test::error_of([&] { parse_bin_pairs(part, "cut.bin"); });
    EXPECT_TRUE(e.find("truncated") != std::string::npos || e.find("without STOP") != std::string::npos) << e;
  }
  auto extra = p4;
  extra.push_back('N');
  expect_error([&] { parse_bin_pairs(extra, "extra.bin"); }, {"1 unexpected bytes after STOP"});
  expect_error([] { load_pickle(bytes_of("(h\x07."), "t"); }, {"BINGET", "memo entry 7 was never stored"});
  expect_error([] { load_pickle(bytes_of("Ne."), "t"); }, {"APPENDS", "no MARK"});
  expect_error([] { load_pickle(bytes_of("(a."), "t"); }, {"APPEND", "stack underflow"});
  expect_error([] { load_pickle(bytes_of("NN."), "t"); }, {"STOP with 2 values"});
  expect_error([] { load_pickle(bytes_of("\x80\x09N."), "t"); }, {"unsupported pickle protocol 9"});
  expect_error([] { load_pickle(bytes_of("\x80\x02\x8e\x01\x00\x00\x00\x00\x00\x00\x00x."s), "t"); },
               {"BINBYTES8", "needs pickle protocol 4"});
  expect_error([] { load_pickle(bytes_of("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f."), "t"); },
               {"BINBYTES8", "more bytes", "truncated"});
  expect_error([] { load_pickle(bytes_of("]]a."), "t"); }, {"a list may hold only"});
  std::string deep = "N" + std::string(20, '\x85') + ".";
  expect_error([&] { load_pickle(bytes_of("\x80\x02" + deep), "t"); }, {"nested deeper"});
  expect_error([] { load_pickle(bytes_of("I0x1\n."), "t"); }, {"bad integer literal"});
  expect_error([] { parse_bin_pairs(bytes_of("\x80\x02](U\x01"s + "aU\x01"s + "be](K\x02"s + "e\x86."), "t"); },
               {"issame_list[0] is a int 2"});
  expect_error([] { parse_bin_pairs(bytes_of("\x80\x02](NNe]\x88"s + "a\x86."), "t"); }, {"image 0 is a None"});
  expect_error([] { parse_bin_pairs(bytes_of("\x80\x02N."), "t"); }, {"(bins, issame_list)"});
}

TEST(BinPairs, HandAssembledOpcodesThePythonFixturesLack) {
  // BINBYTES8, LONG_BINPUT/LONG_BINGET, several FRAMEs, and flags as LONG1/BININT1 0/1 ints.
  std::string s = "\x80\x04";
  auto frame = [&](const std::string& body) {
    std::string len(8, '\0');
    for (int i = 0; i < 8; ++i) len[i] = (char)((body.size() >> (8 * i)) & 0xFF);
    s += "\x95" + len + body;
  };
  frame("](\x8e\x02\x00\x00\x00\x00\x00\x00\x00"s + "ab" + "r\x2c\x01\x00\x00"s + "j\x2c\x01\x00\x00"s +
        "\x8e\x01\x00\x00\x00\x00\x00\x00\x00"s + "c" + "C\x01" + "de");
  frame("](\x8a\x01\x01K\x00"s + "e\x86.");
  BinPairs p = parse_bin_pairs(bytes_of(s), "hand.bin");
  ASSERT_EQ(p.pairs(), 2u);
  EXPECT_EQ(p.images,
            (std::vector<std::vector<uint8_t>>{bytes_of("ab"), bytes_of("ab"), bytes_of("c"), bytes_of("d")}));
  EXPECT_EQ(p.issame, (std::vector<bool>{true, false}));
  // Plain ints: BININT2 / negative LONG1 read correctly (not as flags).
  auto v = load_pickle(bytes_of("\x80\x02(M\x34\x12\x8a\x01\xfeJ\xff\xff\xff\xff\x8a\x00t."s), "t");
  ASSERT_EQ(v->kind, PickleValue::Kind::Tuple);
  EXPECT_EQ(v->items[0]->integer, 0x1234);
  EXPECT_EQ(v->items[1]->integer, -2);
  EXPECT_EQ(v->items[2]->integer, -1);
  EXPECT_EQ(v->items[3]->integer, 0);
}

// One memoised string named many times: a small file must not expand into copies of it.
TEST(BinPairs, MemoReferencesCannotMultiplyImageBytes) {
  const std::string big(100000, 'x'), len = "\xa0\x86\x01\x00"s;  // 100000 little-endian
  const int images = 100;
  auto flags = "](" + std::string(images / 2, '\x88') + "e\x86.";
  std::string gets;
  for (int i = 1; i < images; ++i) gets += "h\x00"s;
  auto bomb = bytes_of("\x80\x04](B"s + len + big + "\x94" + gets + "e" + flags);
  expect_error([&] { parse_bin_pairs(bomb, "bomb.bin"); },
               {"bomb.bin", "expands to more image bytes than the file holds", "not a .bin pairs file"});
  // The same through _codecs.encode(memoised str, 'latin1') calls.
  std::string calls = "c_codecs\nencode\nq\x01X"s + len + big + "X\x06\x00\x00\x00latin1\x86q\x02R"s;
  for (int i = 1; i < images; ++i) calls += "h\x01h\x02R"s;
  auto encoded = bytes_of("\x80\x02]("s + calls + "e" + flags);
  expect_error([&] { parse_bin_pairs(encoded, "enc.bin"); },
               {"enc.bin", "REDUCE", "expand to more image bytes than the file holds", "not a .bin pairs file"});
  // A few shared references, as a real file may hold, still load.
  auto shared = bytes_of("\x80\x04](B"s + len + big + "\x94h\x00"s + "e](\x88"s + "e\x86.");
  EXPECT_EQ(parse_bin_pairs(shared, "shared.bin").images.size(), 2u);
}

TEST(BinPairs, OddImageCountAndPairMismatch) {
  expect_error([] { read_bin_pairs(fixture("bins/odd.bin")); }, {"odd.bin", "odd number of images (3)"});
  expect_error([] { read_bin_pairs(fixture("bins/mismatch.bin")); },
               {"mismatch.bin", "pair count mismatch", "4 images make 2 pairs", "1 flags"});
  expect_error([] { read_bin_pairs("/nonexistent/lfw.bin"); }, {"cannot open", "/nonexistent/lfw.bin"});
}

// Protocol 0 is refused with what to do about it; files that are no pickle are called that.
TEST(BinPairs, ProtocolZeroAndNonPickleFilesSayWhatTheyAre) {
  test::TempDir dir;
  auto refused = [&](const std::string& bytes, std::initializer_list<std::string> parts) {
    const std::string path = dir / "x.bin";
    write_file_bytes(path, bytes_of(bytes));
    expect_error([&] { read_bin_pairs(path); }, parts);
  };
  // pickle.dumps(([b'ab'], [True]), 0) and pickle.dumps((['ab'], [True]), 0) from Python 3, and
  // Python 2's protocol 0 with the memo off (fast mode): its first text opcode is then STRING.
  const std::initializer_list<std::string> p0 = {"x.bin", "protocol-0 (text) pickle", "not supported",
                                                 "protocol 2 or higher", "pickle.dump(obj, f, protocol=2)"};
  refused("((lp0\nc_codecs\nencode\np1\n(Vab\np2\nVlatin1\np3\ntp4\nRp5\na(lp6\nI01\natp7\n.", p0);
  refused("((lp0\nVab\np1\na(lp2\nI01\natp3\n.", p0);
  refused("((lS'ab'\na(lI01\nat.", p0);
  expect_error([] { load_pickle(bytes_of("((lp0\n"), "t"); }, {"PUT at offset 3"});
  // A JPEG, a text list, a PNG and an empty file given as a .bin.
  const std::initializer_list<std::string> no = {"x.bin", "not a pickle file"};
  refused("\xff\xd8\xff\xe0\x00\x10JFIF"s, no);
  refused("# pairs\nlfw/a.jpg lfw/b.jpg 1\n", no);
  refused("lfw/a.jpg lfw/b.jpg 1\n", no);
  refused("\x89PNG\r\n\x1a\n", no);
  refused("", {"x.bin", "empty file, not a pickle"});
  // A binary pickle using a protocol-0 opcode after PROTO is not called protocol 0.
  std::string m = test::error_of([] { load_pickle(bytes_of("\x80\x02Np0\n."), "t"); });
  EXPECT_NE(m.find("PUT (0x70) at offset 3"), std::string::npos) << m;
  EXPECT_EQ(m.find("protocol-0"), std::string::npos) << m;
}

BinPairs random_pairs(uint64_t seed, size_t n) {
  Rng rng(seed);
  BinPairs p;
  for (size_t i = 0; i < 2 * n; ++i) {
    size_t len = i % 97 == 0 ? 256 + rng.below(600) : rng.below(40);  // SHORT_BINBYTES and BINBYTES
    std::vector<uint8_t> b(len);
    for (auto& c : b) c = (uint8_t)rng.below(256);
    p.images.push_back(b);
  }
  for (size_t k = 0; k < n; ++k) p.issame.push_back(rng.below(2) == 1);
  return p;
}

TEST(BinPairs, WriterRoundTrip) {
  const uint64_t seed = 2024;
  std::cout << "seed " << seed << "\n";
  BinPairs p = random_pairs(seed, 1234);  // more than 1000 items: several APPENDS batches
  test::TempDir dir;
  write_bin_pairs(dir / "w.bin", p);
  BinPairs back = read_bin_pairs(dir / "w.bin");
  EXPECT_EQ(back.images, p.images);
  EXPECT_EQ(back.issame, p.issame);
  BinPairs empty = read_bin_pairs((write_bin_pairs(dir / "e.bin", BinPairs{}), dir / "e.bin"));
  EXPECT_EQ(empty.pairs(), 0u);
}

TEST(BinPairs, WriterOutputLoadsInPython) {
  ASSERT_TRUE(test::have_python())
      << "/usr/bin/python3 is needed to read the .bin back with pickle (tools/install-deps.sh)";
  BinPairs p = random_pairs(77, 1100);
  test::TempDir dir;
  write_bin_pairs(dir / "py.bin", p);
  std::string cmd =
      std::string(test::kPython) +
      " -c \"import pickle,sys; b,s=pickle.load(open(sys.argv[1],'rb')); "
      "assert all(type(x) is bytes for x in b) and all(type(v) is bool for v in s); "
      "print(len(b), len(s), sum(s), sum(len(x) for x in b), sum(sum(x)*(i+1) for i,x in enumerate(b)))\" " +
      (dir / "py.bin");
  int status = -1;
  std::string out = test::run_command(cmd, &status);
  ASSERT_EQ(status, 0) << out;
  size_t total = 0, same = 0;
  uint64_t weighted = 0;
  for (size_t i = 0; i < p.images.size(); ++i) {
    total += p.images[i].size();
    for (uint8_t c : p.images[i]) weighted += (uint64_t)c * (i + 1);
  }
  for (bool s : p.issame) same += s;
  EXPECT_EQ(out, std::to_string(p.images.size()) + " " + std::to_string(p.issame.size()) + " " + std::to_string(same) +
                     " " + std::to_string(total) + " " + std::to_string(weighted) + "\n");
}

}  // namespace
}  // namespace ff::data
