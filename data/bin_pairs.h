// Verification pairs in the .bin format (pickle of (bins, issame_list)): reader and protocol-4 writer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ff::data {

struct BinPairs {
  std::vector<std::vector<uint8_t>> images;  // 2N encoded images; pair k is images[2k], images[2k+1]
  std::vector<bool> issame;                  // N flags
  size_t pairs() const { return issame.size(); }
};

// Reads the .bin files in circulation (Python 2 protocols 1-2 with str images and I01/I00,
// NEWTRUE/NEWFALSE or 0/1 ints as flags; Python 3 protocols 2-5) through the restricted pickle
// reader. Protocol 0 (text, Python 2's default) is not supported: the error says to re-save.
BinPairs read_bin_pairs(const std::string& path);
BinPairs parse_bin_pairs(std::span<const uint8_t> data, const std::string& name);

// Protocol-4 pickle of (list of bytes, list of bools), as Python's pickle.load reads it.
std::vector<uint8_t> serialize_bin_pairs(const BinPairs& pairs);
void write_bin_pairs(const std::string& path, const BinPairs& pairs);

}  // namespace ff::data
