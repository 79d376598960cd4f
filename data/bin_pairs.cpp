// .bin verification pairs: checked conversion from the restricted pickle, and a protocol-4 writer.
#include "data/bin_pairs.h"

#include <algorithm>
#include <cstring>

#include "data/file_io.h"
#include "data/pickle.h"
#include "engine/error.h"

namespace ff::data {

BinPairs parse_bin_pairs(std::span<const uint8_t> data, const std::string& name) {
  auto root = load_pickle(data, name);
  using Kind = PickleValue::Kind;
  auto is_seq = [](const PickleValue& v) { return v.kind == Kind::Tuple || v.kind == Kind::List; };
  FF_CHECK(is_seq(*root) && root->items.size() == 2, name, ": expected a pickled (bins, issame_list) pair, got a ",
           pickle_kind_name(root->kind), root->items.empty() ? "" : msg(" of ", root->items.size(), " items"));
  const PickleValue &bins = *root->items[0], &same = *root->items[1];
  FF_CHECK(is_seq(bins), name, ": bins should be a list of encoded images, got a ", pickle_kind_name(bins.kind));
  FF_CHECK(is_seq(same), name, ": issame_list should be a list of booleans, got a ", pickle_kind_name(same.kind));
  FF_CHECK(bins.items.size() % 2 == 0, name, ": odd number of images (", bins.items.size(),
           "): pairs need 2 images each");
  FF_CHECK(bins.items.size() == 2 * same.items.size(), name, ": pair count mismatch: ", bins.items.size(),
           " images make ", bins.items.size() / 2, " pairs but issame_list has ", same.items.size(), " flags");
  // Memo references can name one image many times; the copies below must not outgrow the file.
  uint64_t total = 0;
  for (size_t i = 0; i < bins.items.size(); ++i) {
    const PickleValue& v = *bins.items[i];
    FF_CHECK(v.kind == Kind::Bytes, name, ": image ", i, " is a ", pickle_kind_name(v.kind), ", expected bytes");
    total += v.bytes.size();
  }
  FF_CHECK(total <= pickle_byte_budget(data.size()), name, ": expands to more image bytes than the file holds (", total,
           " bytes of images from ", data.size(), " bytes): not a .bin pairs file");
  BinPairs out;
  out.images.reserve(bins.items.size());
  for (const auto& v : bins.items) out.images.push_back(v->bytes);
  out.issame.reserve(same.items.size());
  for (size_t k = 0; k < same.items.size(); ++k) {
    const PickleValue& v = *same.items[k];
    bool ok = v.kind == Kind::Bool || (v.kind == Kind::Int && (v.integer == 0 || v.integer == 1));
    FF_CHECK(ok, name, ": issame_list[", k, "] is a ", pickle_kind_name(v.kind),
             v.kind == Kind::Int ? msg(" ", v.integer) : "", ", expected a boolean");
    out.issame.push_back(v.kind == Kind::Bool ? v.boolean : v.integer == 1);
  }
  return out;
}

BinPairs read_bin_pairs(const std::string& path) { return parse_bin_pairs(read_file_bytes(path), path); }

std::vector<uint8_t> serialize_bin_pairs(const BinPairs& p) {
  FF_CHECK(p.images.size() == 2 * p.issame.size(), "serialize_bin_pairs: ", p.images.size(), " images for ",
           p.issame.size(), " pairs");
  std::vector<uint8_t> out = {0x80, 4};  // PROTO 4; frames are optional for readers, so none are written
  auto put_uint = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back((uint8_t)(v >> (8 * i)));
  };
  // Lists are built like Python does: EMPTY_LIST, then MARK ... APPENDS in batches of 1000.
  auto put_list = [&](size_t n, auto&& put_item) {
    out.push_back(']');
    for (size_t begin = 0; begin < n; begin += 1000) {
      out.push_back('(');
      for (size_t i = begin; i < std::min(n, begin + 1000); ++i) put_item(i);
      out.push_back('e');
    }
  };
  put_list(p.images.size(), [&](size_t i) {
    const auto& b = p.images[i];
    if (b.size() < 256) {
      out.push_back('C');  // SHORT_BINBYTES
      put_uint(b.size(), 1);
    } else if (b.size() <= 0xFFFFFFFFu) {
      out.push_back('B');  // BINBYTES
      put_uint(b.size(), 4);
    } else {
      out.push_back(0x8e);  // BINBYTES8
      put_uint(b.size(), 8);
    }
    out.insert(out.end(), b.begin(), b.end());
  });
  put_list(p.issame.size(), [&](size_t k) { out.push_back(p.issame[k] ? 0x88 : 0x89); });
  out.push_back(0x86);  // TUPLE2
  out.push_back('.');
  return out;
}

void write_bin_pairs(const std::string& path, const BinPairs& pairs) {
  write_file_bytes(path, serialize_bin_pairs(pairs));
}

}  // namespace ff::data
