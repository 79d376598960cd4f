// Atomic file replacement by temporary file, fsync, rename and directory fsync (POSIX).
#include "engine/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "engine/error.h"

namespace ff {

namespace {

std::string errno_text(int e) { return std::strerror(e); }

// Closes the descriptor and removes the temporary file unless the rename took it over.
struct TempFile {
  int fd = -1;
  std::string path;
  bool renamed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!renamed && !path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

void FileWriter::write(const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    FF_CHECK(n > 0, "write to ", tmp_path_, " failed after ", written_, " bytes: ", errno_text(n < 0 ? errno : EIO));
    p += n;
    bytes -= (size_t)n;
    written_ += (uint64_t)n;
  }
}

int create_temp_beside(const std::string& path, std::string& tmp_path) {
  namespace fs = std::filesystem;
  FF_CHECK(!path.empty(), "create_temp_beside: empty path");
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // A name no other writer (thread or process) picks: pid plus a per-process counter.
  static std::atomic<uint64_t> counter{0};
  for (int attempt = 0;; ++attempt) {
    std::string candidate = (dir / msg(".", target.filename().string(), ".tmp.", ::getpid(), ".", counter++)).string();
    int fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      tmp_path = candidate;
      return fd;
    }
    int e = errno;
    FF_CHECK(e == EEXIST && attempt < 100, "cannot create a temporary file in ", dir.string(), " to write ", path,
             ": ", errno_text(e));
  }
}

void write_file_atomically(const std::string& path, const std::function<void(FileWriter&)>& fill) {
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  TempFile tmp;
  tmp.fd = create_temp_beside(path, tmp.path);
  FileWriter writer(tmp.fd, tmp.path);
  fill(writer);
  FF_CHECK(::fsync(tmp.fd) == 0, "fsync of ", tmp.path, " (for ", path, ") failed: ", errno_text(errno));
  int fd = tmp.fd;
  tmp.fd = -1;
  FF_CHECK(::close(fd) == 0, "close of ", tmp.path, " (for ", path, ") failed: ", errno_text(errno));
  FF_CHECK(::rename(tmp.path.c_str(), path.c_str()) == 0, "cannot rename ", tmp.path, " to ", path, ": ",
           errno_text(errno));
  tmp.renamed = true;
  sync_directory(dir.string(), path);
}

void sync_directory(const std::string& dir, const std::string& what) {
  // Some file systems cannot sync a directory (EINVAL); the entries are then as durable as that
  // file system allows.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  FF_CHECK(dfd >= 0, what, " was written but its directory ", dir, " cannot be opened to sync it: ", errno_text(errno));
  int rc = ::fsync(dfd);
  int e = errno;
  ::close(dfd);
  FF_CHECK(rc == 0 || e == EINVAL, what, " was written but syncing its directory ", dir, " failed: ", errno_text(e));
}

}  // namespace ff
