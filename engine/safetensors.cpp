// safetensors reader and writer: header validation, tensor data copied in and out of CPU tensors.
#include "engine/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/atomic_file.h"

namespace ff {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian, as this host must be");

namespace {

using nlohmann::json;

// The reference implementation refuses larger headers; so does this reader, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// A header nests 3 levels ({"name": {"shape": [...]}}); much deeper is no header, and nlohmann
// functions that recurse (dump(), copies) would overflow the stack on it.
constexpr int kMaxJsonDepth = 8;

// Header text quoted in a one-line message: its start only.
std::string clip(const std::string& text, size_t n) { return text.size() > n ? text.substr(0, n) + "..." : text; }

// A wrong value for a message: its type and, for a scalar, the start of its text. Never the
// whole dump(), which recurses through nesting and can be megabytes long.
std::string describe(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_structured()) return msg("an ", v.type_name(), " of ", v.size(), " items");
  return msg(v.type_name(), " ", clip(v.dump(-1, ' ', false, json::error_handler_t::replace), 40));
}

// A shape for messages, cut after a few dimensions.
std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size() && i < 8; ++i) s += msg(i ? ", " : "", shape[i]);
  return s + (shape.size() > 8 ? ", ...]" : "]");
}

struct DTypeName {
  const char* name;
  DType dtype;
};
constexpr DTypeName kSupported[] = {
    {"F32", DType::F32}, {"F64", DType::F64}, {"I64", DType::I64}, {"BF16", DType::BF16}, {"F16", DType::F16}};
// Valid in the format but with no engine dtype: named as such rather than as unknown.
constexpr const char* kUnsupported[] = {"BOOL",    "U8",      "I8",      "I16", "U16",     "I32",     "U32", "U64",
                                        "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64", "C128"};

const char* safetensors_dtype_name(DType t) {
  for (const auto& d : kSupported)
    if (d.dtype == t) return d.name;
  throw Error(msg("safetensors: no name for dtype ", dtype_name(t)));
}

DType parse_dtype(const std::string& path, const std::string& tensor, const std::string& name) {
  for (const auto& d : kSupported)
    if (name == d.name) return d.dtype;
  for (const char* u : kUnsupported)
    FF_CHECK(name != u, path, ": tensor '", tensor, "' has dtype ", name,
             ", which is not supported (F32, F64, I64, BF16, F16)");
  throw Error(msg(path, ": tensor '", tensor, "' has unknown dtype '", name, "'"));
}

uint64_t parse_offset(const std::string& path, const std::string& tensor, const json& v) {
  FF_CHECK(v.is_number_unsigned(), path, ": tensor '", tensor, "': data_offsets must be non-negative integers, got ",
           describe(v));
  return v.get<uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const json& v) {
  FF_CHECK(v.is_object(), path, ": tensor '", name, "': entry must be an object, got ", describe(v));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    FF_CHECK(v.contains(key), path, ": tensor '", name, "' has no '", key, "'");
  SafetensorsEntry e;
  e.name = name;
  FF_CHECK(v["dtype"].is_string(), path, ": tensor '", name, "': dtype must be a string, got ", describe(v["dtype"]));
  e.dtype = parse_dtype(path, name, v["dtype"].get<std::string>());
  const json& shape = v["shape"];
  FF_CHECK(shape.is_array(), path, ": tensor '", name, "': shape must be an array, got ", describe(shape));
  uint64_t numel = 1;
  for (const json& d : shape) {
    FF_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= (uint64_t)INT64_MAX, path, ": tensor '", name,
             "': shape must hold non-negative integers, got ", describe(d), " at index ", e.shape.size());
    uint64_t n = d.get<uint64_t>();
    FF_CHECK(n == 0 || numel <= ((uint64_t)INT64_MAX / 8) / n, path, ": tensor '", name,
             "': shape is too large (over 2^60 elements)");
    numel *= n;
    e.shape.push_back((int64_t)n);
  }
  const json& off = v["data_offsets"];
  FF_CHECK(off.is_array() && off.size() == 2, path, ": tensor '", name, "': data_offsets must be [begin, end], got ",
           describe(off));
  e.begin = parse_offset(path, name, off[0]);
  e.end = parse_offset(path, name, off[1]);
  FF_CHECK(e.begin <= e.end, path, ": tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
           "] end before they begin");
  uint64_t bytes = numel * dtype_size(e.dtype);
  FF_CHECK(e.end - e.begin == bytes, path, ": tensor '", name, "': data_offsets [", e.begin, ", ", e.end, "] span ",
           e.end - e.begin, " bytes but ", v["dtype"].get<std::string>(), shape_text(e.shape), " needs ", bytes);
  return e;
}

struct OpenedFile {
  std::ifstream in;
  uint64_t header_bytes = 0, data_begin = 0, data_bytes = 0;
};

// Opens `path` and checks its header length against the file size; leaves the stream at the header.
OpenedFile open_checked(const std::string& path) {
  OpenedFile f;
  std::error_code ec;
  uint64_t size = std::filesystem::file_size(path, ec);
  FF_CHECK(!ec, path, ": cannot read safetensors file: ", ec.message());
  f.in.open(path, std::ios::binary);
  FF_CHECK(f.in, path, ": cannot open safetensors file");
  FF_CHECK(size >= 8, path, ": ", size, " bytes is too short for a safetensors file (8-byte header length first)");
  unsigned char len[8];
  f.in.read(reinterpret_cast<char*>(len), 8);
  FF_CHECK(f.in, path, ": cannot read the header length");
  for (int i = 7; i >= 0; --i) f.header_bytes = (f.header_bytes << 8) | len[i];
  // Any other file (an image, a pickle, text) read as a length gives an absurd number: say so.
  const bool fits = f.header_bytes <= size - 8;
  FF_CHECK(f.header_bytes <= kMaxHeaderBytes, path, ": not a safetensors file: header length ", f.header_bytes,
           " is implausible (over the ", kMaxHeaderBytes, "-byte limit)",
           fits ? "" : msg(" and runs past the end of the file (", size, " bytes)"));
  FF_CHECK(fits, path, ": header length ", f.header_bytes, " runs past the end of the file (", size,
           " bytes): the file is truncated or not a safetensors file");
  f.data_begin = 8 + f.header_bytes;
  f.data_bytes = size - f.data_begin;
  return f;
}

std::vector<SafetensorsEntry> parse_header(const std::string& path, OpenedFile& f, SafetensorsMetadata* metadata) {
  std::string text(f.header_bytes, '\0');
  f.in.read(text.data(), (std::streamsize)text.size());
  FF_CHECK(f.in, path, ": cannot read the ", f.header_bytes, "-byte header");
  // nlohmann keeps the last of repeated keys; the format has one entry per name, so find repeats.
  std::string repeated;
  std::set<std::string> keys;
  auto on_event = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1 && !keys.insert(parsed.get<std::string>()).second)
      repeated = parsed.get<std::string>();
    bool opens = ev == json::parse_event_t::object_start || ev == json::parse_event_t::array_start;
    FF_CHECK(!opens || depth < kMaxJsonDepth, path, ": not a safetensors file: the header nests JSON deeper than ",
             kMaxJsonDepth, " levels");
    return true;
  };
  json header;
  try {
    header = json::parse(text, on_event);
  } catch (const json::exception& e) {
    throw Error(msg(path, ": not a safetensors file: header is not valid JSON: ", clip(e.what(), 200)));
  }
  FF_CHECK(header.is_object(), path, ": header must be a JSON object, got ", header.type_name());
  FF_CHECK(repeated.empty(), path, ": tensor '", repeated, "' appears more than once in the header");
  if (metadata) metadata->clear();
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      FF_CHECK(v.is_object(), path, ": __metadata__ must be an object of strings, got ", describe(v));
      for (const auto& [k, s] : v.items()) {
        FF_CHECK(s.is_string(), path, ": __metadata__ value of '", k, "' must be a string, got ", describe(s));
        if (metadata) (*metadata)[k] = s.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, v));
  }
  // The data section must be covered exactly: in offset order, each tensor starts where the last ended.
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t at = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const auto& e : entries) {
    FF_CHECK(e.end <= f.data_bytes, path, ": tensor '", e.name, "': data_offsets [", e.begin, ", ", e.end,
             "] run past the end of the data section (", f.data_bytes, " bytes)");
    FF_CHECK(e.begin >= at, path, ": tensor '", e.name, "': data_offsets [", e.begin, ", ", e.end, "] overlap tensor '",
             prev ? prev->name : "", "' (which ends at ", at, ")");
    FF_CHECK(e.begin == at, path, ": tensor '", e.name, "': data_offsets [", e.begin, ", ", e.end,
             "] leave a gap after byte ", at, " of the data section");
    at = e.end;
    prev = &e;
  }
  FF_CHECK(at == f.data_bytes, path, ": the tensors cover ", at, " bytes but the data section has ", f.data_bytes,
           " (trailing bytes)");
  return entries;
}

}  // namespace

std::vector<SafetensorsEntry> read_safetensors_index(const std::string& path, SafetensorsMetadata* metadata) {
  OpenedFile f = open_checked(path);
  return parse_header(path, f, metadata);
}

std::map<std::string, Tensor> load_safetensors(const std::string& path, SafetensorsMetadata* metadata) {
  OpenedFile f = open_checked(path);
  std::vector<SafetensorsEntry> entries = parse_header(path, f, metadata);
  std::map<std::string, Tensor> out;
  for (const auto& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (t.nbytes()) {
      f.in.seekg((std::streamoff)(f.data_begin + e.begin));
      f.in.read(static_cast<char*>(t.raw()), (std::streamsize)t.nbytes());
      FF_CHECK(f.in, path, ": cannot read the data of tensor '", e.name, "'");
    }
    t.set_name(e.name);
    out.emplace(e.name, std::move(t));
  }
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const SafetensorsMetadata& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;
  uint64_t at = 0;
  for (const auto& [name, t] : tensors) {
    FF_CHECK(!name.empty() && name != "__metadata__", path, ": cannot save a tensor named '", name, "'");
    FF_CHECK(!header.contains(name), path, ": tensor '", name, "' is given twice");
    FF_CHECK(t.defined(), path, ": tensor '", name, "' is undefined");
    host.push_back(t.device().is_cpu() ? t : t.to(Device::cpu()));
    uint64_t bytes = t.nbytes();
    header[name] = {
        {"dtype", safetensors_dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {at, at + bytes}}};
    at += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    throw Error(msg(path, ": cannot write the header (names and metadata must be UTF-8): ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  write_file_atomically(path, [&](FileWriter& w) {
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = (unsigned char)((uint64_t)text.size() >> (8 * i));
    w.write(len, 8);
    w.write(text.data(), text.size());
    for (const Tensor& t : host) w.write(t.raw(), t.nbytes());
  });
}

}  // namespace ff
