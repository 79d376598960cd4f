// What the loader reads from: any indexed set of labelled images (RecordIO, image folder, synthetic).
#pragma once

#include <cstdint>
#include <string>

#include "data/image.h"

namespace ff::data {

struct Sample {
  Image image;        // decoded RGB
  int64_t label = 0;  // class id in [0, num_classes)
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual size_t size() const = 0;
  virtual int64_t num_classes() const = 0;
  // Decodes example i. Must be safe to call from several threads at once.
  virtual Sample get(size_t i) const = 0;
  // Label of example i without decoding the image (for samplers and statistics).
  virtual int64_t label(size_t i) const = 0;
  // Human-readable name of example i (file path, record key) for error messages.
  virtual std::string describe(size_t i) const = 0;
};

}  // namespace ff::data
