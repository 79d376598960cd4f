// Whole-file reads and writes with errors that name the file.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ff::data {

std::vector<uint8_t> read_file_bytes(const std::string& path);
void write_file_bytes(const std::string& path, std::span<const uint8_t> bytes);

}  // namespace ff::data
