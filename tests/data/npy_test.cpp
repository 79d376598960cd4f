// .npy: reading what numpy.save wrote, our writer read back here and by numpy, and malformed files.
#include "data/npy.h"

#include <gtest/gtest.h>

#include "data/file_io.h"
#include "engine/rng.h"
#include "test_util.h"

namespace ff::data {
namespace {
using test::expect_error;

TEST(Npy, ReadsNumpySave) {
  const auto& m = test::manifest()["npy"];
  NpyMatrix a = read_npy(test::fixture("npy/emb.npy"));
  EXPECT_EQ(a.rows, m["rows"].get<int>());
  EXPECT_EQ(a.cols, m["cols"].get<int>());
  EXPECT_EQ(a.values, m["values"].get<std::vector<float>>());
}

std::vector<float> random_values(uint64_t seed, size_t n) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = (float)rng.normal();
  return v;
}

TEST(Npy, WriteReadRoundTripWithAlignedData) {
  std::cout << "seed 11\n";
  auto v = random_values(11, 5 * 7);
  test::TempDir dir;
  write_npy(dir / "e.npy", v, 5, 7);
  NpyMatrix back = read_npy(dir / "e.npy");
  EXPECT_EQ(back.rows, 5);
  EXPECT_EQ(back.cols, 7);
  EXPECT_EQ(back.values, v);
  EXPECT_EQ((read_file_bytes(dir / "e.npy").size() - 4 * v.size()) % 64, 0u);
  write_npy(dir / "z.npy", {}, 0, 512);
  EXPECT_EQ(read_npy(dir / "z.npy").cols, 512);
  expect_error([&] { write_npy(dir / "bad.npy", v, 6, 7); }, {"35 values", "6x7"});
}

TEST(Npy, WriterOutputLoadsInNumpy) {
  ASSERT_TRUE(test::have_python()) << "/usr/bin/python3 with numpy is needed (tools/install-deps.sh installs them)";
  auto v = random_values(12, 3 * 4);
  test::TempDir dir;
  write_npy(dir / "e.npy", v, 3, 4);
  std::string cmd =
      std::string(test::kPython) +
      " -c \"import numpy as np,sys; a=np.load(sys.argv[1]); print(a.dtype, a.shape, repr(float(a[2,1])))\" " +
      (dir / "e.npy");
  int status = -1;
  std::string out = test::run_command(cmd, &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(out.substr(0, out.find(')') + 1), "float32 (3, 4)");
  EXPECT_FLOAT_EQ(std::stof(out.substr(out.find(')') + 2)), v[2 * 4 + 1]);
}

TEST(Npy, MalformedFiles) {
  test::TempDir dir;
  auto write = [&](const std::string& name, const std::string& header, size_t data_bytes) {
    std::string h = header + std::string((64 - (10 + header.size() + 1) % 64) % 64, ' ') + "\n";
    std::string b = std::string("\x93NUMPY\x01\x00", 8) + (char)(h.size() & 0xFF) + (char)(h.size() >> 8) + h +
                    std::string(data_bytes, '\1');
    write_file_bytes(dir / name, std::vector<uint8_t>(b.begin(), b.end()));
    return dir / name;
  };
  expect_error([&] { read_npy(write("f8.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", 32)); },
               {"f8.npy", "'<f4'"});
  expect_error([&] { read_npy(write("f.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16)); },
               {"C order"});
  expect_error([&] { read_npy(write("3d.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", 32)); },
               {"2-D"});
  expect_error([&] { read_npy(write("short.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20)); },
               {"(2, 3)", "20 data bytes"});
  write_file_bytes(dir / "junk.npy", std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  expect_error([&] { read_npy(dir / "junk.npy"); }, {"junk.npy", "bad magic"});
}

}  // namespace
}  // namespace ff::data
