// NumPy .npy format 1.0 writer and a strict reader for 2-D float32 arrays.
#include "data/npy.h"

#include <cstring>
#include <regex>

#include "data/file_io.h"
#include "engine/error.h"

namespace ff::data {
namespace {
const char kMagic[] = "\x93NUMPY";
}

void write_npy(const std::string& path, std::span<const float> values, int64_t rows, int64_t cols) {
  FF_CHECK(rows >= 0 && cols >= 0 && (uint64_t)rows * (uint64_t)cols == values.size(), "write_npy ", path, ": ",
           values.size(), " values do not make a ", rows, "x", cols, " matrix");
  std::string header = msg("{'descr': '<f4', 'fortran_order': False, 'shape': (", rows, ", ", cols, "), }");
  size_t unpadded = 10 + header.size() + 1;  // magic 6, version 2, length 2, header, '\n'
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  FF_CHECK(header.size() <= 0xFFFF, "write_npy: header too long");
  std::vector<uint8_t> out(kMagic, kMagic + 6);
  out.push_back(1);
  out.push_back(0);
  out.push_back((uint8_t)(header.size() & 0xFF));
  out.push_back((uint8_t)(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  size_t at = out.size();
  out.resize(at + 4 * values.size());
  if (!values.empty()) std::memcpy(out.data() + at, values.data(), 4 * values.size());
  write_file_bytes(path, out);
}

NpyMatrix read_npy(const std::string& path) {
  std::vector<uint8_t> b = read_file_bytes(path);
  FF_CHECK(b.size() >= 10 && std::memcmp(b.data(), kMagic, 6) == 0, path, ": not a .npy file (bad magic)");
  int major = b[6];
  FF_CHECK(major == 1 || major == 2, path, ": .npy format version ", major, ".", (int)b[7], " is not supported");
  size_t len_bytes = major == 1 ? 2 : 4, start = 8 + len_bytes;
  FF_CHECK(b.size() >= start, path, ": truncated .npy header");
  size_t hlen = 0;
  for (size_t i = 0; i < len_bytes; ++i) hlen |= (size_t)b[8 + i] << (8 * i);
  FF_CHECK(hlen <= b.size() - start, path, ": .npy header of ", hlen, " bytes runs past the end of the file");
  std::string header(b.begin() + start, b.begin() + start + hlen);
  static const std::regex kDescr("'descr':\\s*'([^']*)'"), kOrder("'fortran_order':\\s*(True|False)"),
      kShape("'shape':\\s*\\(\\s*(\\d{1,15})\\s*,\\s*(\\d{1,15})\\s*,?\\s*\\)");
  std::smatch m;
  FF_CHECK(std::regex_search(header, m, kDescr) && m[1] == "<f4", path,
           ": .npy dtype must be '<f4' (float32), header is ", header);
  FF_CHECK(std::regex_search(header, m, kOrder) && m[1] == "False", path, ": .npy array must be in C order");
  FF_CHECK(std::regex_search(header, m, kShape), path, ": .npy array must be 2-D, header is ", header);
  NpyMatrix out;
  out.rows = std::stoll(m[1]);
  out.cols = std::stoll(m[2]);
  size_t data = start + hlen;
  unsigned __int128 need = (unsigned __int128)out.rows * (unsigned __int128)out.cols * 4;
  FF_CHECK(need == b.size() - data, path, ": .npy shape (", out.rows, ", ", out.cols, ") does not match its ",
           b.size() - data, " data bytes");
  size_t n = (size_t)(out.rows * out.cols);
  out.values.resize(n);
  if (n) std::memcpy(out.values.data(), b.data() + data, 4 * n);
  return out;
}

}  // namespace ff::data
