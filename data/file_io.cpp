// Whole-file reads and writes with errors that name the file.
#include "data/file_io.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "engine/error.h"

namespace ff::data {
namespace {
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  FF_CHECK(f, "cannot open '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) out.insert(out.end(), buf, buf + n);
  FF_CHECK(!std::ferror(f.get()), "cannot read '", path, "': ", std::strerror(errno));
  return out;
}

void write_file_bytes(const std::string& path, std::span<const uint8_t> bytes) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "wb"));
  FF_CHECK(f, "cannot create '", path, "': ", std::strerror(errno));
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f.get()) == bytes.size();
  ok = (std::fclose(f.release()) == 0) && ok;
  FF_CHECK(ok, "cannot write '", path, "': ", std::strerror(errno));
}

}  // namespace ff::data
