// safetensors checkpoint files: read and write (F32, F64, I64; BF16 and F16 as raw 16-bit values).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace ff {

using SafetensorsMetadata = std::map<std::string, std::string>;

// One tensor's entry in a file's header; `begin`/`end` are byte offsets into the data section.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

// Reads and validates the header only: entries sorted by data offset; `metadata` (when given) is
// replaced by the file's `__metadata__` (empty when it has none). Throws ff::Error naming the
// file (and the tensor) on anything the format does not allow: a header length beyond the file
// or implausibly large (then, like a header that is not JSON, called "not a safetensors file"),
// JSON that is not an object of entries, an unknown or unsupported dtype, a negative dimension,
// offsets that do not match shape x dtype size, overlap, leave a gap, or do not end at the end of
// the file, duplicate names, or a `__metadata__` that is not a map of strings.
std::vector<SafetensorsEntry> read_safetensors_index(const std::string& path, SafetensorsMetadata* metadata = nullptr);

// Loads every tensor of the file to the CPU (copies; the file is not kept open or mapped).
std::map<std::string, Tensor> load_safetensors(const std::string& path, SafetensorsMetadata* metadata = nullptr);

// Writes the tensors in the given order, the header padded with spaces so the data starts 8-byte
// aligned, as the reference writer does. Any device; names must be unique, non-empty and not
// `__metadata__`. The write is atomic (engine/atomic_file.h): on failure the old file stays.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const SafetensorsMetadata& metadata = {});

}  // namespace ff
