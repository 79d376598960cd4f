// Shared by the CUDA tests (and the CPU emulation of the fused kernels): the sentinel guard values
// around device outputs, and comparisons against CPU twins that print each check's seed and worst
// error as a fraction of its tolerance. Host code only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/rng.h"

namespace ff::test {

constexpr int64_t kGuard = 64;  // sentinel elements either side of an output (keeps 256-byte alignment)

template <class T>
T sentinel() {
  if constexpr (std::is_integral_v<T>)
    return (T)-777;
  else
    return (T)-1.25e29;
}

// `all` is a downloaded buffer whose n output elements start at kGuard + offset; fails when any other
// element is no longer the sentinel (an out-of-bounds write).
template <class T>
void expect_guards_intact(const std::vector<T>& all, int64_t offset, int64_t n, const std::string& label) {
  const T s = sentinel<T>();
  int64_t bad = 0, first = 0;
  for (int64_t i = 0; i < (int64_t)all.size(); ++i) {
    if (i >= kGuard + offset && i < kGuard + offset + n) continue;
    if (std::memcmp(&all[(size_t)i], &s, sizeof(T)) != 0 && bad++ == 0) first = i - kGuard - offset;
  }
  EXPECT_EQ(bad, 0) << label << ": " << bad << " guard elements overwritten, first at offset " << first
                    << " of an output of " << n;
}

// |got − want| ≤ fixed + abs·scale + rel·|want|, scale the largest |want| of the output or, with
// row > 0, of each run of `row` elements (so a row of small gradients is held to its own size).
struct Tol {
  double abs, rel;
  int64_t row = 0;
  double fixed = 0;
};

template <class A, class B>
void expect_close(const std::string& label, uint64_t seed, const std::vector<A>& got, const std::vector<B>& want,
                  Tol t) {
  ASSERT_EQ(got.size(), want.size()) << label;
  const size_t row = t.row > 0 ? (size_t)t.row : std::max<size_t>(want.size(), 1);
  std::vector<double> scale((want.size() + row - 1) / row, 0.0);
  for (size_t i = 0; i < want.size(); ++i)
    if (std::isfinite((double)want[i])) scale[i / row] = std::max(scale[i / row], std::fabs((double)want[i]));
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = (double)got[i], w = (double)want[i];
    double ratio;
    if (!std::isfinite(w)) {
      ratio = (std::isnan(w) ? std::isnan(g) : g == w) ? 0 : INFINITY;
    } else {
      const double err = std::fabs(g - w), bound = t.fixed + t.abs * scale[i / row] + t.rel * std::fabs(w);
      ratio = err == 0 ? 0 : (bound > 0 ? err / bound : INFINITY);
      if (!std::isfinite(g)) ratio = INFINITY;
    }
    if (ratio > worst) {
      worst = ratio;
      at = i;
    }
  }
  std::printf("[cuda] %-78s seed %llu worst %.3f of tolerance\n", label.c_str(), (unsigned long long)seed, worst);
  EXPECT_LT(worst, 1.0) << label << " seed " << seed << ": element " << at << " got " << (double)got[at] << " want "
                        << (double)want[at] << " (" << got.size() << " elements)";
}

template <class T>
std::vector<T> rand_vec(int64_t n, Rng& rng, double lo = -1, double hi = 1) {
  std::vector<T> v((size_t)n);
  for (auto& x : v) x = (T)rng.uniform(lo, hi);
  return v;
}

template <class T>
std::string type_name() {
  return std::is_same_v<T, float> ? "f32" : "f64";
}

}  // namespace ff::test
