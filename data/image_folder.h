// Image-folder datasets: root/<identity>/<image>.jpg|png, identities sorted by name give class ids.
#pragma once

#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/image_codec.h"

namespace ff::data {

// Identity folders sorted by name (byte order, as Python's sorted() on UTF-8 names) give class ids
// 0 … C−1; images in each sorted by name. Files ending in .jpg/.jpeg/.png (any case) are images;
// other files, hidden entries (".name") and files directly under root are ignored. An identity
// folder with no image is an error naming it.
class ImageFolderDataset : public Dataset {
 public:
  explicit ImageFolderDataset(const std::string& root, DecodeOptions decode = {});
  size_t size() const override { return files_.size(); }
  int64_t num_classes() const override { return (int64_t)identities_.size(); }
  Sample get(size_t i) const override;
  int64_t label(size_t i) const override { return labels_.at(i); }
  std::string describe(size_t i) const override { return files_.at(i); }

  const std::string& path(size_t i) const { return files_.at(i); }
  const std::vector<std::string>& identities() const { return identities_; }

 private:
  DecodeOptions decode_;
  std::vector<std::string> identities_, files_;
  std::vector<int64_t> labels_;
};

}  // namespace ff::data
