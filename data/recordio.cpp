// MXNet RecordIO: split-record encoding, indexed memory-mapped reading, face-layout writing, and RecordDataset.
#include "data/recordio.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "data/file_io.h"
#include "data/image_folder.h"
#include "engine/atomic_file.h"
#include "engine/error.h"

namespace ff::data {
namespace {

constexpr uint32_t kLengthMask = (1u << 29) - 1;

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // the format and every machine we build for are little-endian
  return v;
}

void append_u32(std::vector<uint8_t>& out, uint32_t v) {
  uint8_t b[4];
  std::memcpy(b, &v, 4);
  out.insert(out.end(), b, b + 4);
}

size_t align4(size_t n) { return (n + 3) & ~size_t(3); }

std::string default_idx_path(const std::string& rec_path) {
  if (rec_path.size() > 4 && rec_path.compare(rec_path.size() - 4, 4, ".rec") == 0)
    return rec_path.substr(0, rec_path.size() - 4) + ".idx";
  return rec_path + ".idx";
}

std::string read_text_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  FF_CHECK(in.good(), "cannot open ", what, " '", path, "': ", std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses "key<TAB>offset" lines (any blank separation, as MXNet's line.strip().split('\t') accepts).
std::vector<std::pair<uint64_t, uint64_t>> parse_index(const std::string& text, const std::string& idx_path) {
  std::vector<std::pair<uint64_t, uint64_t>> index;
  std::istringstream lines(text);
  std::string line;
  for (size_t lineno = 1; std::getline(lines, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream fields(line);
    long long key = -1, offset = -1;
    std::string rest;
    bool ok = static_cast<bool>(fields >> key >> offset) && !(fields >> rest) && key >= 0 && offset >= 0;
    FF_CHECK(ok, idx_path, " line ", lineno, ": expected 'key<TAB>offset' with two non-negative integers, got '",
             line.substr(0, 80), "'");
    index.emplace_back((uint64_t)key, (uint64_t)offset);
  }
  std::sort(index.begin(), index.end());
  for (size_t i = 1; i < index.size(); ++i)
    FF_CHECK(index[i].first != index[i - 1].first, idx_path, ": key ", index[i].first, " appears twice");
  return index;
}

}  // namespace

// ---------------------------------------------------------------- payload

RecordPayload parse_payload(std::span<const uint8_t> payload) {
  FF_CHECK(payload.size() >= kIRHeaderSize, "record payload of ", payload.size(), " bytes is shorter than the ",
           kIRHeaderSize, "-byte IRHeader");
  RecordPayload p;
  std::memcpy(&p.header.flag, payload.data(), 4);
  std::memcpy(&p.header.label, payload.data() + 4, 4);
  std::memcpy(&p.header.id, payload.data() + 8, 8);
  std::memcpy(&p.header.id2, payload.data() + 16, 8);
  size_t rest = payload.size() - kIRHeaderSize;
  FF_CHECK(p.header.flag <= rest / 4, "IRHeader flag ", p.header.flag, " announces ", p.header.flag,
           " float labels but only ", rest, " bytes follow the header");
  p.labels.resize(p.header.flag);
  if (p.header.flag) std::memcpy(p.labels.data(), payload.data() + kIRHeaderSize, 4 * (size_t)p.header.flag);
  p.image = payload.subspan(kIRHeaderSize + 4 * (size_t)p.header.flag);
  return p;
}

std::vector<uint8_t> pack_payload(IRHeader header, std::span<const float> labels, std::span<const uint8_t> image) {
  if (!labels.empty()) {
    header.flag = (uint32_t)labels.size();
    header.label = 0;
  } else {
    header.flag = 0;
  }
  std::vector<uint8_t> out(kIRHeaderSize + 4 * labels.size() + image.size());
  std::memcpy(out.data(), &header.flag, 4);
  std::memcpy(out.data() + 4, &header.label, 4);
  std::memcpy(out.data() + 8, &header.id, 8);
  std::memcpy(out.data() + 16, &header.id2, 8);
  if (!labels.empty()) std::memcpy(out.data() + kIRHeaderSize, labels.data(), 4 * labels.size());
  if (!image.empty()) std::memcpy(out.data() + kIRHeaderSize + 4 * labels.size(), image.data(), image.size());
  return out;
}

// ---------------------------------------------------------------- record encoding

std::vector<uint8_t> encode_record(std::span<const uint8_t> payload) {
  FF_CHECK(payload.size() <= kLengthMask, "RecordIO: a record holds at most 2^29-1 bytes, got ", payload.size());
  std::vector<uint8_t> out;
  out.reserve(payload.size() + 16);
  auto emit = [&](uint32_t cflag, size_t begin, size_t end) {
    append_u32(out, kRecordIOMagic);
    append_u32(out, (cflag << 29) | (uint32_t)(end - begin));
    out.insert(out.end(), payload.begin() + begin, payload.begin() + end);
  };
  size_t part_begin = 0;
  for (size_t i = 0; i + 4 <= payload.size(); i += 4) {
    if (load_u32(payload.data() + i) != kRecordIOMagic) continue;
    emit(part_begin == 0 ? 1 : 2, part_begin, i);  // parts before the last are whole words: no padding
    part_begin = i + 4;
  }
  emit(part_begin == 0 ? 0 : 3, part_begin, payload.size());
  out.resize(align4(out.size()), 0);
  return out;
}

// ---------------------------------------------------------------- reader

RecordIOReader::RecordIOReader(const std::string& rec_path, const std::string& idx_path)
    : rec_path_(rec_path), idx_path_(idx_path.empty() ? default_idx_path(rec_path) : idx_path) {
  index_ = parse_index(read_text_file(idx_path_, "RecordIO index"), idx_path_);
  int fd = ::open(rec_path_.c_str(), O_RDONLY | O_CLOEXEC);
  FF_CHECK(fd >= 0, "cannot open RecordIO file '", rec_path_, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error(msg("cannot stat '", rec_path_, "': ", std::strerror(e)));
  }
  size_ = (size_t)st.st_size;
  for (auto& [key, off] : index_) {
    if (off + 8 <= size_) continue;
    ::close(fd);
    throw Error(
        msg(idx_path_, ": offset ", off, " of key ", key, " is past the end of ", rec_path_, " (", size_, " bytes)"));
  }
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    ::close(fd);
    FF_CHECK(p != MAP_FAILED, "cannot map '", rec_path_, "': ", std::strerror(e));
    data_ = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
}

RecordIOReader::~RecordIOReader() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

bool RecordIOReader::contains(uint64_t key) const {
  auto it = std::lower_bound(index_.begin(), index_.end(), std::make_pair(key, uint64_t(0)));
  return it != index_.end() && it->first == key;
}

uint64_t RecordIOReader::offset(uint64_t key) const {
  auto it = std::lower_bound(index_.begin(), index_.end(), std::make_pair(key, uint64_t(0)));
  FF_CHECK(it != index_.end() && it->first == key, rec_path_, ": key ", key, " is not in the index ", idx_path_);
  return it->second;
}

std::span<const uint8_t> RecordIOReader::payload_at(uint64_t offset, std::vector<uint8_t>& storage) const {
  storage.clear();
  uint64_t pos = offset;
  for (int part = 0;; ++part) {
    FF_CHECK(pos + 8 <= size_, rec_path_, ": truncated record at offset ", offset, ": part ", part, " header at ", pos,
             " runs past the end of the file (", size_, " bytes)");
    uint32_t magic = load_u32(data_ + pos), lrec = load_u32(data_ + pos + 4);
    FF_CHECK(magic == kRecordIOMagic, rec_path_, ": bad magic 0x", std::hex, magic, std::dec, " at offset ", pos,
             " (record at offset ", offset, "), expected 0xced7230a");
    uint32_t cflag = lrec >> 29, len = lrec & kLengthMask;
    FF_CHECK(pos + 8 + len <= size_, rec_path_, ": truncated record at offset ", offset, ": header says ", len,
             " payload bytes at ", pos + 8, " but the file ends at ", size_);
    const uint8_t* body = data_ + pos + 8;
    if (part == 0) {
      FF_CHECK(cflag == 0 || cflag == 1, rec_path_, ": record at offset ", offset, " starts with continuation flag ",
               cflag, " (expected 0 or 1): the index points into the middle of a split record");
      if (cflag == 0) return {body, len};
    } else {
      FF_CHECK(cflag == 2 || cflag == 3, rec_path_, ": split record at offset ", offset, ": part ", part, " at ", pos,
               " has continuation flag ", cflag, " (expected 2 or 3)");
      append_u32(storage, kRecordIOMagic);  // the writer dropped it where it split
    }
    storage.insert(storage.end(), body, body + len);
    if (cflag == 3) return {storage.data(), storage.size()};
    pos += 8 + align4(len);
  }
}

std::vector<uint8_t> RecordIOReader::read(uint64_t key) const {
  std::vector<uint8_t> storage;
  auto view = payload_at(offset(key), storage);
  if (view.data() != storage.data()) storage.assign(view.begin(), view.end());
  return storage;
}

// ---------------------------------------------------------------- writers

namespace {
std::string parent_dir(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  return dir.empty() ? "." : dir.string();
}

// A new file beside `path` (engine/atomic_file.h) opened for stdio; its name goes to `tmp` as soon
// as it exists, so the caller can remove it.
std::FILE* create_beside(const std::string& path, std::string& tmp) {
  const int fd = create_temp_beside(path, tmp);
  std::FILE* f = ::fdopen(fd, "wb");
  if (f) return f;
  const int e = errno;
  ::close(fd);
  throw Error(msg("cannot open '", tmp, "' (to write '", path, "'): ", std::strerror(e)));
}
}  // namespace

RecordIOWriter::TempFile::~TempFile() {
  file.reset();
  if (!tmp.empty()) ::unlink(tmp.c_str());
}

RecordIOWriter::RecordIOWriter(const std::string& rec_path, const std::string& idx_path) {
  rec_.path = rec_path;
  idx_.path = idx_path.empty() ? default_idx_path(rec_path) : idx_path;
  FF_CHECK(rec_.path != idx_.path, "RecordIO: the index '", idx_.path, "' cannot be the record file itself");
  rec_.file.reset(create_beside(rec_.path, rec_.tmp));
  idx_.file.reset(create_beside(idx_.path, idx_.tmp));
}

uint64_t RecordIOWriter::write(uint64_t key, std::span<const uint8_t> payload) {
  FF_CHECK(rec_.file, "RecordIOWriter: '", rec_.path, "' is closed");
  std::vector<uint8_t> bytes = encode_record(payload);
  uint64_t at = offset_;
  FF_CHECK(std::fwrite(bytes.data(), 1, bytes.size(), rec_.file.get()) == bytes.size(), "cannot write to '", rec_.tmp,
           "': ", std::strerror(errno));
  FF_CHECK(std::fprintf(idx_.file.get(), "%llu\t%llu\n", (unsigned long long)key, (unsigned long long)at) > 0,
           "cannot write to '", idx_.tmp, "': ", std::strerror(errno));
  offset_ += bytes.size();
  return at;
}

void RecordIOWriter::overwrite(uint64_t offset, std::span<const uint8_t> payload, size_t old_payload_size) {
  FF_CHECK(rec_.file, "RecordIOWriter: '", rec_.path, "' is closed");
  std::vector<uint8_t> bytes = encode_record(payload);
  FF_CHECK(payload.size() == old_payload_size && bytes.size() == align4(8 + old_payload_size),
           "RecordIOWriter::overwrite: the new record must have the old one's size and no split");
  std::FILE* f = rec_.file.get();
  bool ok = std::fseek(f, (long)offset, SEEK_SET) == 0 &&
            std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fseek(f, 0, SEEK_END) == 0;
  FF_CHECK(ok, "cannot rewrite the record at offset ", offset, " of '", rec_.tmp, "': ", std::strerror(errno));
}

void RecordIOWriter::close() {
  if (closed_) return;
  FF_CHECK(rec_.file && idx_.file, "RecordIOWriter: an earlier close() of '", rec_.path, "' failed");
  for (TempFile* t : {&rec_, &idx_}) {
    std::FILE* f = t->file.get();
    bool ok = std::fflush(f) == 0 && !std::ferror(f) && ::fsync(::fileno(f)) == 0;
    ok = (std::fclose(t->file.release()) == 0) && ok;
    FF_CHECK(ok, "error writing '", t->tmp, "' (for '", t->path, "'): ", std::strerror(errno));
  }
  // Both files are complete before either replaces what is at its path.
  for (TempFile* t : {&rec_, &idx_}) {
    FF_CHECK(std::rename(t->tmp.c_str(), t->path.c_str()) == 0, "cannot rename '", t->tmp, "' to '", t->path,
             "': ", std::strerror(errno));
    t->tmp.clear();
  }
  closed_ = true;
  for (TempFile* t : {&rec_, &idx_}) sync_directory(parent_dir(t->path), t->path);
}

namespace {
// Record 0 of the face layout: no image, labels (a, b).
std::vector<uint8_t> face_header(float a, float b) {
  const float labels[2] = {a, b};
  return pack_payload(IRHeader{}, labels, {});
}
constexpr uint64_t kMaxExactFloat = uint64_t(1) << 24;  // keys and labels are stored as float32
}  // namespace

RecordWriter::RecordWriter(const std::string& rec_path, const std::string& idx_path)
    : out_(rec_path, idx_path), rec_path_(rec_path) {
  auto header = face_header(0, 0);  // a placeholder until close() knows (a, b)
  header_payload_size_ = header.size();
  out_.write(0, header);
}

void RecordWriter::add(std::span<const uint8_t> encoded_image, int64_t label) {
  FF_CHECK(!closing_, "RecordWriter: '", rec_path_, "' is closed");
  FF_CHECK(label >= 0 && (uint64_t)label < kMaxExactFloat, "RecordWriter: label ", label, " of image ", next_key_,
           " is not in [0, 2^24)");
  FF_CHECK(ranges_.empty() || (size_t)label + 1 >= ranges_.size(), "RecordWriter: label ", label, " of image ",
           next_key_, " comes after label ", ranges_.size() - 1, ": images must be grouped by class in label order");
  FF_CHECK(next_key_ + (uint64_t)label + 2 < kMaxExactFloat, "RecordWriter: too many records for float32 key ranges");
  uint64_t key = next_key_++;
  while (ranges_.size() <= (size_t)label) ranges_.emplace_back(key, key);
  ranges_.back().second = key + 1;
  IRHeader h;
  h.label = (float)label;
  h.id = key;
  out_.write(key, pack_payload(h, {}, encoded_image));
}

void RecordWriter::close() {
  if (closed_) return;
  FF_CHECK(!closing_, "RecordWriter: an earlier close() of '", rec_path_, "' failed, so nothing was written");
  closing_ = true;
  uint64_t a = next_key_, b = a + ranges_.size();
  FF_CHECK(b < kMaxExactFloat, "RecordWriter: ", b, " records do not fit float32 key ranges");
  for (size_t c = 0; c < ranges_.size(); ++c) {
    const float labels[2] = {(float)ranges_[c].first, (float)ranges_[c].second};
    IRHeader h;
    h.id = a + c;
    out_.write(a + c, pack_payload(h, labels, {}));
  }
  out_.overwrite(0, face_header((float)a, (float)b), header_payload_size_);
  out_.close();
  closed_ = true;
}

size_t pack_image_folder(const std::string& root, const std::string& rec_path, const std::string& idx_path,
                         const std::function<void(size_t, size_t)>& progress) {
  ImageFolderDataset folder(root);
  RecordWriter writer(rec_path, idx_path);
  for (size_t i = 0; i < folder.size(); ++i) {
    std::vector<uint8_t> bytes = read_file_bytes(folder.path(i));
    FF_CHECK(sniff_image_format(bytes) != ImageFormat::Unknown, folder.path(i), ": not a JPEG or PNG file");
    writer.add(bytes, folder.label(i));
    if (progress) progress(i + 1, folder.size());
  }
  writer.close();
  return folder.size();
}

// ---------------------------------------------------------------- dataset

RecordDataset::RecordDataset(const std::string& rec_path, const std::string& idx_path, RecordDatasetOptions options)
    : reader_(rec_path, idx_path), options_(options) {
  std::vector<uint8_t> storage;
  if (reader_.contains(0)) {
    RecordPayload p0 = payload(0, reader_.offset(0), storage);
    face_layout_ = p0.header.flag == 2 && p0.image.empty();
  }
  if (face_layout_) {
    RecordPayload p0 = payload(0, reader_.offset(0), storage);
    float a = p0.labels[0], b = p0.labels[1];
    FF_CHECK(a >= 1 && b >= a && a == std::floor(a) && b == std::floor(b) && b < (float)kMaxExactFloat, rec_path,
             ": record 0 (face layout header) has labels (", a, ", ", b, "), expected integers 1 <= a <= b");
    for (uint64_t k = 1; k < (uint64_t)a; ++k) {
      keys_.push_back(k);
      offsets_.push_back(reader_.offset(k));
    }
    identity_begin_ = (uint64_t)a;
    num_classes_ = (int64_t)(b - a);
  } else {
    for (auto& [k, off] : reader_.index()) {
      keys_.push_back(k);
      offsets_.push_back(off);
    }
  }
  if (num_classes_ == 0) {
    // im2rec files (and face headers without identity records) say nothing about the class count.
    int64_t max_label = -1;
    for (size_t i = 0; i < keys_.size(); ++i) {
      RecordPayload p = payload(keys_[i], offsets_[i], storage);
      max_label = std::max(max_label, checked_label(keys_[i], p, INT64_MAX));
    }
    num_classes_ = max_label + 1;
  }
}

RecordPayload RecordDataset::payload(uint64_t key, uint64_t offset, std::vector<uint8_t>& storage) const {
  try {
    return parse_payload(reader_.payload_at(offset, storage));
  } catch (const Error& e) {
    // Reader messages start with the file name; say which key instead of repeating it.
    std::string what = e.what(), prefix = reader_.path() + ": ";
    if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
    throw Error(msg(reader_.path(), " key ", key, ": ", what));
  }
}

int64_t RecordDataset::checked_label(uint64_t key, const RecordPayload& p, int64_t num_classes) const {
  float v = p.class_label();
  FF_CHECK(std::isfinite(v) && v == std::floor(v), reader_.path(), " key ", key, ": label ", v,
           " is not an integer class id");
  // Past 2^24 float32 no longer holds every integer and the writer refuses such labels, so a larger
  // one is corrupt; plain im2rec files would otherwise take it as the class count. v is printed as a
  // float: it may not fit int64.
  const int64_t limit = std::min<int64_t>(num_classes, kMaxExactFloat);
  FF_CHECK(v >= 0 && (double)v < (double)limit, reader_.path(), " key ", key, ": label ", v, " is out of range [0, ",
           limit, ")");
  return (int64_t)v;
}

int64_t RecordDataset::label(size_t i) const {
  FF_CHECK(i < keys_.size(), "RecordDataset: index ", i, " out of range (", keys_.size(), " images)");
  std::vector<uint8_t> storage;
  return checked_label(keys_[i], payload(keys_[i], offsets_[i], storage), num_classes_);
}

std::string RecordDataset::describe(size_t i) const { return msg(reader_.path(), " key ", keys_.at(i)); }

Sample RecordDataset::get(size_t i) const {
  FF_CHECK(i < keys_.size(), "RecordDataset: index ", i, " out of range (", keys_.size(), " images)");
  std::vector<uint8_t> storage;
  // With skipping on, look ahead a bounded number of records for a decodable one.
  const size_t tries = options_.skip_undecodable ? std::min<size_t>(keys_.size(), 64) : 1;
  std::string first_error;
  for (size_t t = 0; t < tries; ++t) {
    size_t j = (i + t) % keys_.size();
    RecordPayload p = payload(keys_[j], offsets_[j], storage);
    int64_t lab = checked_label(keys_[j], p, num_classes_);
    try {
      return Sample{decode_image(p.image, options_.decode), lab};
    } catch (const Error& e) {
      std::string what = msg(describe(j), ": ", e.what());
      if (!options_.skip_undecodable) throw Error(what);
      if (first_error.empty()) first_error = what;
      std::lock_guard<std::mutex> lock(skipped_mutex_);
      if (std::find(skipped_.begin(), skipped_.end(), keys_[j]) == skipped_.end()) {
        skipped_.push_back(keys_[j]);
        std::cerr << "flatface: skipping undecodable record: " << what << "\n";
      }
    }
  }
  throw Error(msg("no decodable image in ", tries, " records from ", describe(i), " on (first: ", first_error, ")"));
}

std::vector<uint64_t> RecordDataset::skipped() const {
  std::lock_guard<std::mutex> lock(skipped_mutex_);
  return skipped_;
}

std::pair<uint64_t, uint64_t> RecordDataset::identity_range(int64_t c) const {
  FF_CHECK(face_layout_, reader_.path(), ": identity records exist only in the face layout");
  FF_CHECK(c >= 0 && c < num_classes_, reader_.path(), ": class ", c, " out of range [0, ", num_classes_, ")");
  uint64_t key = identity_begin_ + (uint64_t)c;
  std::vector<uint8_t> storage;
  RecordPayload p = payload(key, reader_.offset(key), storage);
  FF_CHECK(p.header.flag == 2, reader_.path(), " key ", key, ": identity record has flag ", p.header.flag,
           ", expected 2");
  // Checked before the casts to integers, which are undefined for NaN, negative or huge floats.
  float begin = p.labels[0], end = p.labels[1];
  auto is_key = [](float k) { return k >= 0 && k < (float)kMaxExactFloat && k == std::floor(k); };
  FF_CHECK(is_key(begin) && is_key(end) && begin <= end, reader_.path(), " key ", key, ": identity record has labels (",
           begin, ", ", end, "), expected an image-key range of integers 0 <= start <= end < 2^24");
  return {(uint64_t)begin, (uint64_t)end};
}

}  // namespace ff::data
