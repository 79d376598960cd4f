// flatface-pack: image folder -> RecordIO (train.rec/train.idx, face layout); pair list -> .bin.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/bin_pairs.h"
#include "data/file_io.h"
#include "data/image_codec.h"
#include "data/recordio.h"
#include "tools/common/cli.h"
#include "tools/common/progress.h"

namespace fs = std::filesystem;

namespace {

// A listed image, checked as pack rec checks its files: a wrong one fails here with its path and
// list line, not later at evaluation time with only an image index.
std::vector<uint8_t> read_image(const fs::path& path, const std::string& where) {
  std::error_code ec;
  FF_CHECK(fs::exists(path, ec), where, ": ", path.string(), " does not exist");
  FF_CHECK(fs::is_regular_file(path, ec), where, ": ", path.string(), " is not a regular file");
  std::vector<uint8_t> bytes = ff::data::read_file_bytes(path.string());
  FF_CHECK(ff::data::sniff_image_format(bytes) != ff::data::ImageFormat::Unknown, where, ": ", path.string(),
           ": not a JPEG or PNG file");
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Pack data into the formats face-recognition tools read.", "flatface-pack"};
  app.require_subcommand(1);
  auto* rec = app.add_subcommand("rec", "image folder root/<identity>/<image> -> train.rec + train.idx");
  std::string root, rec_out;
  rec->add_option("root", root, "image folder root")->required()->check(CLI::ExistingDirectory);
  rec->add_option("-o,--output", rec_out, "output .rec (the .idx is written beside it)")->required();
  auto* bin = app.add_subcommand("bin", "pair list -> verification .bin (pickle protocol 4)");
  std::string list, bin_out, base;
  bin->add_option("pairs", list,
                  "text file: one pair per line, 'image_a image_b same' with same 1 or 0; JPEG or PNG images, "
                  "relative paths relative to the list's folder (or --base), absolute ones as they are")
      ->required()
      ->check(CLI::ExistingFile);
  bin->add_option("-o,--output", bin_out, "output .bin")->required();
  bin->add_option("--base", base, "folder the image paths are relative to (default: the list's folder)");
  return ff::run_tool(app, argc, argv, [&] {
    if (rec->parsed()) {
      fs::path idx = fs::path(rec_out).replace_extension(".idx");
      if (fs::path(rec_out).has_parent_path()) fs::create_directories(fs::path(rec_out).parent_path());
      ff::Progress meter("  packing", 0);
      size_t n = ff::data::pack_image_folder(root, rec_out, idx.string(), [&](size_t done, size_t total) {
        if (done == 1) meter = ff::Progress("  packing", total);
        meter.update(done);
      });
      std::printf("packed %zu images into %s (+ %s)\n", n, rec_out.c_str(), idx.string().c_str());
      return 0;
    }
    fs::path dir = base.empty() ? fs::path(list).parent_path() : fs::path(base);
    ff::data::BinPairs pairs;
    std::ifstream in(list);
    int line_no = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      if (line.empty() || line[0] == '#') continue;
      std::istringstream ss(line);
      std::string a, b;
      int same = -1;
      ss >> a >> b >> same;
      FF_CHECK(!a.empty() && !b.empty() && (same == 0 || same == 1), list, ":", line_no,
               ": expected 'image_a image_b same' with same 0 or 1, got '", line, "'");
      const std::string where = ff::msg(list, ":", line_no);
      pairs.images.push_back(read_image(dir / a, where));
      pairs.images.push_back(read_image(dir / b, where));
      pairs.issame.push_back(same == 1);
    }
    FF_CHECK(!pairs.issame.empty(), list, ": no pairs");
    ff::data::write_bin_pairs(bin_out, pairs);
    std::printf("wrote %zu pairs to %s\n", pairs.pairs(), bin_out.c_str());
    return 0;
  });
}
