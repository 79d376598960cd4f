// Restricted pickle reader: a stack machine over the data-only opcodes, rejecting everything else.
#include "data/pickle.h"

#include <cstring>
#include <string_view>
#include <unordered_map>

#include "engine/error.h"

namespace ff::data {
namespace {

using Ref = std::shared_ptr<PickleValue>;
using Kind = PickleValue::Kind;
constexpr int kMaxDepth = 16;

const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(':
      return "MARK";
    case '.':
      return "STOP";
    case '0':
      return "POP";
    case '1':
      return "POP_MARK";
    case '2':
      return "DUP";
    case 'F':
      return "FLOAT";
    case 'I':
      return "INT";
    case 'J':
      return "BININT";
    case 'K':
      return "BININT1";
    case 'L':
      return "LONG";
    case 'M':
      return "BININT2";
    case 'N':
      return "NONE";
    case 'P':
      return "PERSID";
    case 'Q':
      return "BINPERSID";
    case 'R':
      return "REDUCE";
    case 'S':
      return "STRING";
    case 'T':
      return "BINSTRING";
    case 'U':
      return "SHORT_BINSTRING";
    case 'V':
      return "UNICODE";
    case 'X':
      return "BINUNICODE";
    case 'a':
      return "APPEND";
    case 'b':
      return "BUILD";
    case 'c':
      return "GLOBAL";
    case 'd':
      return "DICT";
    case '}':
      return "EMPTY_DICT";
    case 'e':
      return "APPENDS";
    case 'g':
      return "GET";
    case 'h':
      return "BINGET";
    case 'i':
      return "INST";
    case 'j':
      return "LONG_BINGET";
    case 'l':
      return "LIST";
    case ']':
      return "EMPTY_LIST";
    case 'o':
      return "OBJ";
    case 'p':
      return "PUT";
    case 'q':
      return "BINPUT";
    case 'r':
      return "LONG_BINPUT";
    case 's':
      return "SETITEM";
    case 't':
      return "TUPLE";
    case ')':
      return "EMPTY_TUPLE";
    case 'u':
      return "SETITEMS";
    case 'G':
      return "BINFLOAT";
    case 'B':
      return "BINBYTES";
    case 'C':
      return "SHORT_BINBYTES";
    case 0x80:
      return "PROTO";
    case 0x81:
      return "NEWOBJ";
    case 0x82:
      return "EXT1";
    case 0x83:
      return "EXT2";
    case 0x84:
      return "EXT4";
    case 0x85:
      return "TUPLE1";
    case 0x86:
      return "TUPLE2";
    case 0x87:
      return "TUPLE3";
    case 0x88:
      return "NEWTRUE";
    case 0x89:
      return "NEWFALSE";
    case 0x8a:
      return "LONG1";
    case 0x8b:
      return "LONG4";
    case 0x8c:
      return "SHORT_BINUNICODE";
    case 0x8d:
      return "BINUNICODE8";
    case 0x8e:
      return "BINBYTES8";
    case 0x8f:
      return "EMPTY_SET";
    case 0x90:
      return "ADDITEMS";
    case 0x91:
      return "FROZENSET";
    case 0x92:
      return "NEWOBJ_EX";
    case 0x93:
      return "STACK_GLOBAL";
    case 0x94:
      return "MEMOIZE";
    case 0x95:
      return "FRAME";
    case 0x96:
      return "BYTEARRAY8";
    case 0x97:
      return "NEXT_BUFFER";
    case 0x98:
      return "READONLY_BUFFER";
    default:
      return nullptr;
  }
}

bool is_scalar(const PickleValue& v) {
  return v.kind == Kind::None || v.kind == Kind::Bool || v.kind == Kind::Int || v.kind == Kind::Bytes ||
         v.kind == Kind::String;
}

// Code points of UTF-8 text, or false when it is not valid UTF-8.
bool decode_utf8(const std::vector<uint8_t>& s, std::vector<uint32_t>& out) {
  for (size_t i = 0; i < s.size();) {
    uint8_t c = s[i];
    int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (n < 0 || i + n >= s.size()) return false;
    uint32_t cp = n == 0 ? c : (uint32_t)(c & (0x3F >> n));
    for (int k = 1; k <= n; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    out.push_back(cp);
    i += n + 1;
  }
  return true;
}

class Unpickler {
 public:
  Unpickler(std::span<const uint8_t> data, const std::string& name) : d_(data), name_(name) {}

  Ref run() {
    // A file that is no pickle at all (an image, a text list, a .rec given as .bin) is named as
    // such instead of by the opcode its first byte happens to be: every pickle starts with PROTO
    // (protocol 2+) or, at protocols 0-1, with an opcode that pushes a value or a MARK.
    FF_CHECK(!d_.empty(), name_, ": empty file, not a pickle");
    FF_CHECK(std::string_view("\x80(])}NIJKMLFGSTUVXcP").find((char)d_[0]) != std::string_view::npos, name_,
             ": not a pickle file (its first byte 0x", std::hex, (int)d_[0], std::dec, " starts no pickle)");
    while (true) {
      op_at_ = pos_;
      FF_CHECK(pos_ < d_.size(), "pickle ", name_, ": ends at offset ", pos_, " without STOP (truncated file?)");
      op_ = d_[pos_++];
      if (step()) break;
    }
    if (stack_.size() != 1 || !marks_.empty())
      fail("STOP with ", stack_.size(), " values and ", marks_.size(),
           " open MARKs on the stack (expected exactly one value)");
    FF_CHECK(pos_ == d_.size(), "pickle ", name_, ": ", d_.size() - pos_, " unexpected bytes after STOP at offset ",
             op_at_);
    if (stack_[0]->kind == Kind::CodecsEncode) fail("the pickled value is a global, not data");
    return stack_[0];
  }

 private:
  template <class... A>
  [[noreturn]] void fail(const A&... parts) const {
    const char* nm = opcode_name(op_);
    throw Error(msg("pickle ", name_, ": ", nm ? nm : "opcode", " (0x", std::hex, (int)op_, std::dec, ") at offset ",
                    op_at_, ": ", parts...));
  }

  std::span<const uint8_t> take(uint64_t n) {
    if (n > d_.size() - pos_) fail("needs ", n, " more bytes but the file has ", d_.size() - pos_, " (truncated?)");
    auto s = d_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  uint64_t take_uint(int bytes) {
    auto s = take(bytes);
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | s[i];
    return v;
  }
  std::string take_line() {
    size_t start = pos_;
    while (pos_ < d_.size() && d_[pos_] != '\n' && pos_ - start < 256) ++pos_;
    if (pos_ >= d_.size() || d_[pos_] != '\n') fail("line argument not terminated by a newline");
    std::string s(d_.begin() + start, d_.begin() + pos_);
    ++pos_;
    return s;
  }

  Ref make(Kind k) {
    auto v = std::make_shared<PickleValue>();
    v->kind = k;
    return v;
  }
  void push(Ref v) { stack_.push_back(std::move(v)); }
  Ref pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    Ref v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  Ref& top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    return stack_.back();
  }
  std::vector<Ref> pop_to_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Ref> items(std::make_move_iterator(stack_.begin() + m), std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }
  void push_bytes(Kind k, uint64_t n) {
    auto s = take(n);
    Ref v = make(k);
    v->bytes.assign(s.begin(), s.end());
    push(std::move(v));
  }
  void push_int(int64_t i) {
    Ref v = make(Kind::Int);
    v->integer = i;
    push(std::move(v));
  }
  void push_bool(bool b) {
    Ref v = make(Kind::Bool);
    v->boolean = b;
    push(std::move(v));
  }
  void push_tuple(std::vector<Ref> items) {
    Ref t = make(Kind::Tuple);
    int depth = 0;
    for (auto& it : items) {
      if (it->kind == Kind::CodecsEncode) fail("a global inside a tuple is not data");
      depth = std::max(depth, it->depth);
    }
    t->depth = depth + 1;
    if (t->depth > kMaxDepth) fail("tuples nested deeper than ", kMaxDepth);
    t->items = std::move(items);
    push(std::move(t));
  }
  void extend_list(Ref& list, std::vector<Ref> items) {
    if (list->kind != Kind::List) fail("appends to a ", pickle_kind_name(list->kind), ", not a list");
    for (auto& it : items)
      if (!is_scalar(*it))
        fail("a list may hold only None, bools, ints and strings, not a ", pickle_kind_name(it->kind));
    list->items.insert(list->items.end(), std::make_move_iterator(items.begin()), std::make_move_iterator(items.end()));
  }
  void memo_put(uint64_t idx) { memo_[idx] = top(); }
  void memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo entry ", idx, " was never stored");
    push(it->second);
  }
  void check_proto(int needed) {
    if (proto_ < needed) fail("needs pickle protocol ", needed, " but the stream declared ", proto_);
  }

  // Executes the opcode in op_; returns true at STOP.
  bool step() {
    switch (op_) {
      case 0x80: {  // PROTO
        uint64_t v = take_uint(1);
        if (v > 5) fail("unsupported pickle protocol ", v);
        proto_ = (int)v;
        return false;
      }
      case 0x95: {  // FRAME: a length prefix for buffering; the opcodes inside are read as usual
        uint64_t n = take_uint(8);
        if (n > d_.size() - pos_) fail("frame of ", n, " bytes runs past the end of the file (truncated?)");
        return false;
      }
      case '.':
        return true;
      case '(':
        marks_.push_back(stack_.size());
        return false;
      case 'N':
        push(make(Kind::None));
        return false;
      case 0x88:
        push_bool(true);
        return false;
      case 0x89:
        push_bool(false);
        return false;
      case 'I': {  // protocol 0/1 int; Python 2 writes True/False as I01/I00
        std::string s = take_line();
        if (s == "01" || s == "00") {
          push_bool(s == "01");
          return false;
        }
        size_t used = 0;
        long long v = 0;
        try {
          v = std::stoll(s, &used, 10);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != s.size()) fail("bad integer literal '", s, "'");
        push_int(v);
        return false;
      }
      case 'J':
        push_int((int32_t)(uint32_t)take_uint(4));
        return false;
      case 'K':
        push_int((int64_t)take_uint(1));
        return false;
      case 'M':
        push_int((int64_t)take_uint(2));
        return false;
      case 0x8a: {  // LONG1: little-endian two's complement
        uint64_t n = take_uint(1);
        if (n > 8) fail("integer of ", n, " bytes does not fit 64 bits");
        uint64_t v = n ? take_uint((int)n) : 0;
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t(0) << (8 * n);
        push_int((int64_t)v);
        return false;
      }
      case 'U':
        push_bytes(Kind::Bytes, take_uint(1));
        return false;  // Python 2 str
      case 'T': {
        int32_t n = (int32_t)(uint32_t)take_uint(4);
        if (n < 0) fail("negative string length ", n);
        push_bytes(Kind::Bytes, (uint64_t)n);
        return false;
      }
      case 'C':
        check_proto(3);
        push_bytes(Kind::Bytes, take_uint(1));
        return false;
      case 'B':
        check_proto(3);
        push_bytes(Kind::Bytes, take_uint(4));
        return false;
      case 0x8e:
        check_proto(4);
        push_bytes(Kind::Bytes, take_uint(8));
        return false;
      case 0x8c:
        check_proto(4);
        push_bytes(Kind::String, take_uint(1));
        return false;
      case 'X':
        push_bytes(Kind::String, take_uint(4));
        return false;
      case 0x8d:
        check_proto(4);
        push_bytes(Kind::String, take_uint(8));
        return false;
      case ']':
        push(make(Kind::List));
        return false;
      case 'l': {
        Ref l = make(Kind::List);
        extend_list(l, pop_to_mark());
        push(std::move(l));
        return false;
      }
      case 'a': {
        Ref item = pop();
        extend_list(top(), {std::move(item)});
        return false;
      }
      case 'e': {
        std::vector<Ref> items = pop_to_mark();
        extend_list(top(), std::move(items));
        return false;
      }
      case ')':
        push_tuple({});
        return false;
      case 't':
        push_tuple(pop_to_mark());
        return false;
      case 0x85:
      case 0x86:
      case 0x87: {
        size_t n = op_ - 0x84;
        std::vector<Ref> items(n);
        for (size_t i = n; i-- > 0;) items[i] = pop();
        push_tuple(std::move(items));
        return false;
      }
      case 'q':
        memo_put(take_uint(1));
        return false;
      case 'r':
        memo_put(take_uint(4));
        return false;
      case 0x94:
        check_proto(4);
        memo_put(memo_.size());
        return false;
      case 'h':
        memo_get(take_uint(1));
        return false;
      case 'j':
        memo_get(take_uint(4));
        return false;
      case 'c': {
        std::string module = take_line(), attr = take_line();
        if (module != "_codecs" || attr != "encode")
          fail("global '", module, ".", attr, "' is not allowed: this reader never imports or calls anything");
        push(make(Kind::CodecsEncode));
        return false;
      }
      case 'R': {
        Ref args = pop(), callable = pop();
        if (callable->kind != Kind::CodecsEncode) fail("calls are not allowed: this reader never runs code");
        latin1_encode(*args);
        return false;
      }
      default: {
        const char* nm = opcode_name(op_);
        // Without PROTO the stream is protocol 0 or 1; these text opcodes only protocol 0 writes.
        if (proto_ == 0 && std::string_view("pgSVF").find((char)op_) != std::string_view::npos)
          throw Error(msg(name_, ": a protocol-0 (text) pickle (", nm, " at offset ", op_at_,
                          "), which is not supported: re-save it with protocol 2 or higher, e.g. "
                          "pickle.dump(obj, f, protocol=2)"));
        if (nm) fail("opcode not allowed in a .bin pairs file: this reader only reads plain data");
        fail("unknown opcode");
      }
    }
  }

  // Python 3 pickles bytes at protocol 2 as _codecs.encode(text, 'latin1'): each code point is a byte.
  void latin1_encode(const PickleValue& args) {
    if (args.kind != Kind::Tuple || args.items.size() != 2 || args.items[0]->kind != Kind::String ||
        args.items[1]->kind != Kind::String)
      fail("_codecs.encode must be called with (str, 'latin1')");
    std::string enc(args.items[1]->bytes.begin(), args.items[1]->bytes.end());
    if (enc != "latin1" && enc != "latin-1") fail("_codecs.encode with encoding '", enc, "' (only latin1 is allowed)");
    std::vector<uint32_t> cps;
    if (!decode_utf8(args.items[0]->bytes, cps)) fail("_codecs.encode argument is not valid UTF-8");
    encoded_bytes_ += cps.size();
    if (encoded_bytes_ > pickle_byte_budget(d_.size()))
      fail("_codecs.encode calls expand to more image bytes than the file holds: not a .bin pairs file");
    Ref v = make(Kind::Bytes);
    v->bytes.reserve(cps.size());
    for (uint32_t cp : cps) {
      if (cp > 0xFF) fail("_codecs.encode argument has code point ", cp, " outside Latin-1");
      v->bytes.push_back((uint8_t)cp);
    }
    push(std::move(v));
  }

  std::span<const uint8_t> d_;
  const std::string& name_;
  size_t pos_ = 0, op_at_ = 0;
  uint8_t op_ = 0;
  int proto_ = 0;
  uint64_t encoded_bytes_ = 0;  // made by _codecs.encode, which a memoised argument could repeat without end
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Ref> memo_;
};

}  // namespace

const char* pickle_kind_name(PickleValue::Kind kind) {
  switch (kind) {
    case Kind::None:
      return "None";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Bytes:
      return "bytes";
    case Kind::String:
      return "str";
    case Kind::List:
      return "list";
    case Kind::Tuple:
      return "tuple";
    case Kind::CodecsEncode:
      return "global _codecs.encode";
  }
  return "?";
}

std::shared_ptr<const PickleValue> load_pickle(std::span<const uint8_t> data, const std::string& name) {
  return Unpickler(data, name).run();
}

}  // namespace ff::data
