// Atomic file writes: new files, replacement, and failures that must leave the old file as it was.
#include "engine/atomic_file.h"

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/rng.h"
#include "tests/engine/file_test_util.h"

namespace ff::test {
namespace {

struct WriterFailed {};

std::string random_bytes(uint64_t seed, size_t n) {
  Rng rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = (char)rng.below(256);
  return s;
}

TEST(AtomicFile, CreatesAndReplaces) {
  ScratchDir dir;
  std::string path = dir.file("model.bin"), first = random_bytes(1, 1000), second = random_bytes(2, 70000);
  uint64_t written = 0;
  write_file_atomically(path, [&](FileWriter& w) {
    w.write(first.data(), 10);
    w.write(first.data() + 10, first.size() - 10);
    written = w.bytes_written();
  });
  EXPECT_EQ(written, first.size());
  EXPECT_EQ(read_all(path), first);
  write_file_atomically(path, [&](FileWriter& w) { w.write(second.data(), second.size()); });
  EXPECT_EQ(read_all(path), second);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.bin"});  // no temporary left behind
}

TEST(AtomicFile, ThrowingWriterLeavesOldFileIntact) {
  ScratchDir dir;
  std::string path = dir.file("ckpt.safetensors"), old = random_bytes(3, 5000), fresh = random_bytes(4, 9000);
  write_all(path, old);
  EXPECT_THROW(write_file_atomically(path,
                                     [&](FileWriter& w) {
                                       w.write(fresh.data(), 4000);  // half-way, then the writer fails
                                       throw WriterFailed{};
                                     }),
               WriterFailed);
  EXPECT_EQ(read_all(path), old);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ckpt.safetensors"});
  // A failing write where no file existed yet creates nothing.
  std::string other = dir.file("new.bin");
  EXPECT_THROW(write_file_atomically(other, [&](FileWriter&) { throw Error("stop"); }), Error);
  EXPECT_FALSE(std::filesystem::exists(other));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ckpt.safetensors"});
}

TEST(AtomicFile, FailuresNameThePathAndLeaveNothing) {
  ScratchDir dir;
  std::string missing = dir.file("no/such/dir/x.bin");
  try {
    write_file_atomically(missing, [](FileWriter& w) { w.write("abc", 3); });
    ADD_FAILURE() << "no error for a missing directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  // The target is a directory: the rename fails after the data was written; the directory and
  // its content stay, and the temporary file is removed.
  std::filesystem::create_directory(dir.path() / "taken");
  write_all(dir.file("taken/inside"), "keep");
  try {
    write_file_atomically(dir.file("taken"), [](FileWriter& w) { w.write("abc", 3); });
    ADD_FAILURE() << "no error when the target is a directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot rename"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_all(dir.file("taken/inside")), "keep");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"taken"});
}

}  // namespace
}  // namespace ff::test
