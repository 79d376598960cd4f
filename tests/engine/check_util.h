// Checks shared by the op tests: error messages that name their parts, and bitwise comparison of
// runs under different OpenMP thread counts.
#pragma once

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/tensor.h"

namespace ff::test {

// f must throw ff::Error whose message contains every one of parts.
inline void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning " << parts[0];
  } catch (const Error& e) {
    std::string m = e.what();
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
  }
}

// Runs f with omp_set_num_threads(threads), restoring the previous setting afterwards.
template <class F>
auto with_threads(int threads, F&& f) {
  struct Restore {
    int keep = omp_get_max_threads();
    ~Restore() { omp_set_num_threads(keep); }
  } restore;
  omp_set_num_threads(threads);
  return f();
}

// Compares two runs' tensors byte for byte (same count, shapes and dtypes expected) and returns the
// worst |a - b| over all elements (0 when bitwise equal, infinity when a NaN differs).
inline double expect_bitwise_equal(const std::vector<Tensor>& a, const std::vector<Tensor>& b,
                                   const std::string& what) {
  EXPECT_EQ(a.size(), b.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (a[i].shape() != b[i].shape() || a[i].dtype() != b[i].dtype()) {
      ADD_FAILURE() << what << " output " << i << ": " << a[i].str() << " vs " << b[i].str();
      continue;
    }
    EXPECT_EQ(std::memcmp(a[i].raw(), b[i].raw(), a[i].nbytes()), 0) << what << " output " << i << " " << a[i].str();
    std::vector<double> va = a[i].to_vector(), vb = b[i].to_vector();
    for (size_t k = 0; k < va.size(); ++k) {
      double d = std::fabs(va[k] - vb[k]);
      worst = std::isnan(d) && !(std::isnan(va[k]) && std::isnan(vb[k])) ? INFINITY : std::max(worst, d);
    }
  }
  return worst;
}

}  // namespace ff::test
