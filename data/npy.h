// NumPy .npy files (format 1.0) of 2-D float32 arrays, e.g. embedding dumps.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ff::data {

struct NpyMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> values;  // row-major
};

// Writes '<f4', C order, shape (rows, cols); the header is padded so the data starts 64-byte aligned.
void write_npy(const std::string& path, std::span<const float> values, int64_t rows, int64_t cols);
// Reads 2-D little-endian float32 C-order arrays (format 1.0 or 2.0); anything else is an error.
NpyMatrix read_npy(const std::string& path);

}  // namespace ff::data
