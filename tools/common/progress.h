// Progress lines of the tools' long loops (decoding, embedding, packing).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

namespace ff {

// Progress of a long loop on stderr: "<what>: done/total (rate/s, ETA)" at most every two seconds,
// and once at the end when it took longer than that.
class Progress {
 public:
  Progress(std::string what, size_t total, const char* unit = "images")
      : what_(std::move(what)), unit_(unit), total_(total), start_(Clock::now()), last_(start_) {}
  void update(size_t done) {
    auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(2) && done < total_) return;
    if (done >= total_ && now - start_ < std::chrono::seconds(2)) return;  // quick: no line at all
    last_ = now;
    double s = std::chrono::duration<double>(now - start_).count(), rate = done / std::max(s, 1e-9);
    std::fprintf(stderr, "%s: %zu/%zu %s (%.0f/s, %s %.0f s)\n", what_.c_str(), done, total_, unit_, rate,
                 done < total_ ? "ETA" : "took", done < total_ ? (total_ - done) / std::max(rate, 1e-9) : s);
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::string what_;
  const char* unit_;
  size_t total_;
  Clock::time_point start_, last_;
};

}  // namespace ff
