// Atomic file replacement: a file is either its old content or its complete new content, never a mix.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace ff {

// The sink a write_file_atomically callback fills; every write reaches the temporary file or throws.
class FileWriter {
 public:
  void write(const void* data, size_t bytes);
  uint64_t bytes_written() const { return written_; }

 private:
  friend void write_file_atomically(const std::string&, const std::function<void(FileWriter&)>&);
  FileWriter(int fd, std::string tmp_path) : fd_(fd), tmp_path_(std::move(tmp_path)) {}
  int fd_;
  std::string tmp_path_;  // for messages
  uint64_t written_ = 0;
};

// Writes `path` through `fill`: the bytes go to a new temporary file in the same directory, which
// is fsync'ed and renamed over `path`, and then the directory is fsync'ed so the rename survives a
// crash. If `fill` throws or any step fails before the rename, the temporary file is removed, the
// previous `path` (if any) is untouched, and an ff::Error naming the file is thrown (an exception
// of `fill` is passed on as it is). The new file gets mode 0666 minus the umask.
void write_file_atomically(const std::string& path, const std::function<void(FileWriter&)>& fill);

// Creates a new, empty temporary file in the directory of `path` (a name no other thread or process
// picks; mode 0666 minus the umask) and returns its descriptor; its name goes to `tmp_path`. For
// writers that cannot use write_file_atomically (several files, seeks): they rename it into place.
int create_temp_beside(const std::string& path, std::string& tmp_path);

// fsyncs directory `dir` so renames and new entries in it survive a crash; `what` names the
// written thing in the error.
void sync_directory(const std::string& dir, const std::string& what);

}  // namespace ff
