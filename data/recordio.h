// MXNet RecordIO (train.rec + train.idx): record reader/writer, the IRHeader payload, and a Dataset over it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "data/dataset.h"
#include "data/image_codec.h"

namespace ff::data {

inline constexpr uint32_t kRecordIOMagic = 0xced7230a;
inline constexpr size_t kIRHeaderSize = 24;  // uint32 flag, float32 label, uint64 id, uint64 id2

struct IRHeader {
  uint32_t flag = 0;  // number of float32 labels after the header (0: the scalar label is used)
  float label = 0;
  uint64_t id = 0, id2 = 0;
};

// A parsed payload; `image` points into the bytes that were parsed.
struct RecordPayload {
  IRHeader header;
  std::vector<float> labels;  // header.flag labels when flag > 0
  std::span<const uint8_t> image;
  float class_label() const { return header.flag > 0 ? labels[0] : header.label; }
};

RecordPayload parse_payload(std::span<const uint8_t> payload);
// Like mx.recordio.pack: with labels, flag = labels.size() and the scalar label is written as 0.
std::vector<uint8_t> pack_payload(IRHeader header, std::span<const float> labels, std::span<const uint8_t> image);

// The on-disk bytes of one logical record: split into flag 1/2/3 parts wherever the magic word
// sits 4-byte aligned in the payload (the magic itself dropped), each part padded to 4 bytes.
std::vector<uint8_t> encode_record(std::span<const uint8_t> payload);

// Reads a whole file of records through its index, by key. Thread-safe (read-only memory map).
class RecordIOReader {
 public:
  RecordIOReader(const std::string& rec_path, const std::string& idx_path);
  ~RecordIOReader();
  RecordIOReader(const RecordIOReader&) = delete;
  RecordIOReader& operator=(const RecordIOReader&) = delete;

  const std::string& path() const { return rec_path_; }
  // (key, offset) pairs sorted by key.
  const std::vector<std::pair<uint64_t, uint64_t>>& index() const { return index_; }
  bool contains(uint64_t key) const;
  uint64_t offset(uint64_t key) const;  // throws for a key not in the index
  // The payload of the record at `offset`, parts re-joined. Unsplit records come back as a view
  // into the map without copying; split ones are joined into `storage` and the view points there.
  std::span<const uint8_t> payload_at(uint64_t offset, std::vector<uint8_t>& storage) const;
  std::vector<uint8_t> read(uint64_t key) const;

 private:
  std::string rec_path_, idx_path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> index_;
};

// Writes records and their index lines; keys are whatever the caller gives. Both files are written
// under temporary names beside their paths and renamed into place only by a successful close(), so
// a write that fails part way never leaves a truncated pair that reads as complete, and files
// already at the paths stay as they were until then.
class RecordIOWriter {
 public:
  RecordIOWriter(const std::string& rec_path, const std::string& idx_path);
  ~RecordIOWriter() = default;  // without a successful close(): removes the temporaries
  RecordIOWriter(const RecordIOWriter&) = delete;
  RecordIOWriter& operator=(const RecordIOWriter&) = delete;

  uint64_t write(uint64_t key, std::span<const uint8_t> payload);  // returns the record's offset
  // Replaces the record at `offset` by one of exactly the same encoded length (used for headers).
  void overwrite(uint64_t offset, std::span<const uint8_t> payload, size_t old_payload_size);
  void close();  // flushes and syncs both files, then renames them into place

 private:
  struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  // One output under its temporary name, removed unless close() renamed it into place.
  struct TempFile {
    std::string path, tmp;
    std::unique_ptr<std::FILE, FileCloser> file;
    ~TempFile();
  };
  TempFile rec_, idx_;
  uint64_t offset_ = 0;
  bool closed_ = false;
};

// Writes the face layout one image at a time: record 0 (flag 2, labels (a, b)), images as keys
// 1 … a−1 with their class label, then at close one identity record per class (keys a … b−1,
// labels = that class's image-key range [start, end)). Labels must come in non-decreasing order;
// a class with no image gets an empty range. Only close() puts the files in place: a writer
// destroyed without it (an exception part way) writes nothing, as RecordIOWriter.
class RecordWriter {
 public:
  RecordWriter(const std::string& rec_path, const std::string& idx_path);
  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;

  void add(std::span<const uint8_t> encoded_image, int64_t label);
  void close();
  uint64_t images() const { return next_key_ - 1; }

 private:
  RecordIOWriter out_;
  std::string rec_path_;
  uint64_t next_key_ = 1;
  std::vector<std::pair<uint64_t, uint64_t>> ranges_;  // per class: [first key, end key)
  size_t header_payload_size_ = 0;
  bool closing_ = false, closed_ = false;  // closing_ stays set when close() fails: nothing is written then
};

// Packs root/<identity>/<image> into the face layout, class ids by sorted identity name. Image
// bytes are copied as they are (only their JPEG/PNG magic is checked). Returns the image count.
// When it throws (an unreadable or non-image file), no output is written and old files stay.
// `progress`, when set, is called with (images written, total) after each image.
size_t pack_image_folder(const std::string& root, const std::string& rec_path, const std::string& idx_path,
                         const std::function<void(size_t, size_t)>& progress = {});

struct RecordDatasetOptions {
  DecodeOptions decode;
  // Undecodable images: throw naming the key (false), or skip them (true): the next decodable
  // record is returned instead, and the key is counted, reported once on stderr and listed by skipped().
  bool skip_undecodable = false;
};

// Images of a RecordIO file. Face layout (record 0 has flag 2, no image, labels (a, b)): images are
// keys 1 … a−1 and num_classes is the identity count b − a; opening reads only record 0. Otherwise
// (plain im2rec) every key is an image and num_classes = max label + 1, which takes one pass over
// the record headers at open. Labels are checked (integers in [0, min(num_classes, 2^24))) whenever they are read.
class RecordDataset : public Dataset {
 public:
  explicit RecordDataset(const std::string& rec_path, const std::string& idx_path = "",
                         RecordDatasetOptions options = {});
  size_t size() const override { return keys_.size(); }
  int64_t num_classes() const override { return num_classes_; }
  Sample get(size_t i) const override;
  int64_t label(size_t i) const override;
  std::string describe(size_t i) const override;

  bool face_layout() const { return face_layout_; }
  uint64_t key(size_t i) const { return keys_.at(i); }
  // Image-key range [start, end) of class c from its identity record (face layout only).
  std::pair<uint64_t, uint64_t> identity_range(int64_t c) const;
  std::vector<uint64_t> skipped() const;

 private:
  // Parses the record of `key` at `offset`; errors name the file and key.
  RecordPayload payload(uint64_t key, uint64_t offset, std::vector<uint8_t>& storage) const;
  int64_t checked_label(uint64_t key, const RecordPayload& p, int64_t num_classes) const;
  RecordIOReader reader_;
  RecordDatasetOptions options_;
  std::vector<uint64_t> keys_, offsets_;
  int64_t num_classes_ = 0;
  bool face_layout_ = false;
  uint64_t identity_begin_ = 0;
  mutable std::mutex skipped_mutex_;
  mutable std::vector<uint64_t> skipped_;
};

}  // namespace ff::data
