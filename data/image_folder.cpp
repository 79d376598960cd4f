// Image-folder dataset: lists root/<identity>/<image> once, decodes on demand.
#include "data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "data/file_io.h"
#include "engine/error.h"

namespace ff::data {
namespace fs = std::filesystem;

namespace {
bool is_image_name(const std::string& name) {
  std::string ext = fs::path(name).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return (char)std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

std::vector<fs::directory_entry> sorted_entries(const fs::path& dir) {
  std::vector<fs::directory_entry> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind('.', 0) != 0) out.push_back(e);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.path().filename().string() < b.path().filename().string(); });
  return out;
}
}  // namespace

ImageFolderDataset::ImageFolderDataset(const std::string& root, DecodeOptions decode) : decode_(decode) {
  std::error_code ec;
  FF_CHECK(fs::is_directory(root, ec), "image folder '", root, "' does not exist or is not a directory");
  try {
    for (const auto& id_dir : sorted_entries(root)) {
      if (!id_dir.is_directory()) continue;
      int64_t label = (int64_t)identities_.size();
      size_t before = files_.size();
      for (const auto& f : sorted_entries(id_dir.path())) {
        if (!f.is_regular_file() || !is_image_name(f.path().filename().string())) continue;
        files_.push_back(f.path().string());
        labels_.push_back(label);
      }
      FF_CHECK(files_.size() > before, "image folder: identity folder '", id_dir.path().string(),
               "' holds no .jpg/.jpeg/.png image");
      identities_.push_back(id_dir.path().filename().string());
    }
  } catch (const fs::filesystem_error& e) {
    throw Error(msg("image folder '", root, "': ", e.what()));
  }
  FF_CHECK(!identities_.empty(), "image folder '", root,
           "' has no identity folders (expected root/<identity>/<image>)");
}

Sample ImageFolderDataset::get(size_t i) const {
  FF_CHECK(i < files_.size(), "ImageFolderDataset: index ", i, " out of range (", files_.size(), " images)");
  try {
    return Sample{decode_image(read_file_bytes(files_[i]), decode_), labels_[i]};
  } catch (const Error& e) {
    std::string what = e.what();
    if (what.find(files_[i]) != std::string::npos) throw;  // read errors already name the file
    throw Error(msg(files_[i], ": ", what));
  }
}

}  // namespace ff::data
