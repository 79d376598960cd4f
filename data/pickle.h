// A restricted pickle reader for .bin verification files: plain data only, never builds objects or runs code.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace ff::data {

struct PickleValue {
  // CodecsEncode is internal: the callable `_codecs.encode` that Python 3 uses for bytes at protocol 2.
  enum class Kind { None, Bool, Int, Bytes, String, List, Tuple, CodecsEncode };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  std::vector<uint8_t> bytes;  // Bytes (Python 3 bytes, Python 2 str) and String (UTF-8 of a unicode str)
  std::vector<std::shared_ptr<PickleValue>> items;  // List and Tuple
  int depth = 0;                                    // nesting depth of containers
};

// Reads one binary pickle (protocols 1-5: opcodes for None, bools, ints, byte and unicode strings,
// lists, tuples, the memo and frames) that must end at STOP with nothing after it. Protocol-0 (text)
// pickles are refused with a message saying so, and a file that cannot start a pickle as not one. Lists may hold only
// scalars; tuples may nest a few levels. The one allowed global is `_codecs.encode`, and only in
// the call `_codecs.encode(str, 'latin1')` that Python 3 writes for bytes at protocol 2; it is
// evaluated here as Latin-1 encoding. Any other opcode (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST,
// OBJ, NEWOBJ, dicts, sets, ...) throws ff::Error naming the opcode and its byte offset.
// Memo references let a small file name one large string many times, so whatever turns the
// parsed values into separate byte buffers (the images of a .bin, _codecs.encode results) stays
// within this many bytes for a file of `file_size` bytes: each image of a real file is its own
// string in it, and the slack allows some sharing.
inline uint64_t pickle_byte_budget(size_t file_size) { return 2 * (uint64_t)file_size + 65536; }

std::shared_ptr<const PickleValue> load_pickle(std::span<const uint8_t> data, const std::string& name);

const char* pickle_kind_name(PickleValue::Kind kind);

}  // namespace ff::data
