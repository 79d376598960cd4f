// flatface-embed: images (a folder tree, a list file, or a RecordIO set) -> embeddings .npy + names.
#include <filesystem>
#include <fstream>

#include "data/image_codec.h"
#include "data/npy.h"
#include "engine/atomic_file.h"
#include "engine/safetensors.h"
#include "tools/common/checkpoint.h"
#include "tools/common/cli.h"
#include "tools/common/evaluate.h"
#include "tools/common/progress.h"
#include "tools/common/trainer.h"

namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& p) {
  std::string e = p.extension().string();
  for (auto& c : e) c = (char)std::tolower(c);
  return e == ".jpg" || e == ".jpeg" || e == ".png";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Compute L2-normalisable embeddings of images with a trained backbone and write them as .npy "
               "(float32 [N, d]) or .safetensors (tensor 'embeddings') by the output's extension, plus a text file "
               "of the image names, one per line, in the same order.",
               "flatface-embed"};
  std::string model_path, input, out, names_path;
  int64_t batch = 64, threads = 0;
  std::string device = "auto";
  bool flip = true;
  app.add_option("-m,--model", model_path, "checkpoint folder or model .safetensors")->required();
  app.add_option("-i,--input", input,
                 "an image folder (searched recursively), a text file listing image paths, or a train.rec")
      ->required()
      ->check(CLI::ExistingPath);
  app.add_option("-o,--output", out, "output .npy or .safetensors")->required();
  app.add_option("--names", names_path, "names file (default: output with .txt)");
  app.add_option("--flip", flip, "add the embedding of the mirrored image (true/false)");
  app.add_option("--batch", batch, "batch size")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--device", device, "auto (the GPU when one is visible) | cpu | cuda");
  return ff::run_tool(app, argc, argv, [&] {
    const ff::Device dev = ff::resolve_device(device, "--device");
    const std::string ext = fs::path(out).extension().string();
    FF_CHECK(ext == ".npy" || ext == ".safetensors", "--output ", out, ": expected a .npy or .safetensors file name");
    ff::set_cpu_threads(threads);
    auto model = ff::load_model(model_path);
    model->to(dev);
    const int size = (int)model->config().backbone.input_size;
    std::vector<std::string> names;
    std::vector<ff::data::Image> images;
    if (fs::path(input).extension() == ".rec") {
      auto ds = ff::open_training_set(input, size);
      ff::Progress decoding("  decoding", ds->size());
      for (size_t i = 0; i < ds->size(); ++i) {
        names.push_back(ds->describe(i));
        images.push_back(ds->get(i).image);
        decoding.update(i + 1);
      }
    } else {
      std::vector<std::string> files;
      if (fs::is_directory(input)) {
        for (auto& e : fs::recursive_directory_iterator(input))
          if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path().string());
        std::sort(files.begin(), files.end());
      } else {
        std::ifstream list(input);
        for (std::string line; std::getline(list, line);)
          if (!line.empty()) files.push_back(line);
      }
      FF_CHECK(!files.empty(), input, ": no images found");
      ff::data::DecodeOptions opt;
      opt.height = opt.width = size;
      ff::Progress decoding("  decoding", files.size());
      for (auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        FF_CHECK(in, "cannot read image ", f);
        std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
        try {
          images.push_back(ff::data::decode_image(bytes, opt));
        } catch (const std::exception& e) {
          throw ff::Error(ff::msg(f, ": ", e.what()));
        }
        names.push_back(f);
        decoding.update(names.size());
      }
    }
    std::printf("embedding %zu images with %s\n", images.size(), model_path.c_str());
    int64_t dim = 0;
    std::vector<float> emb = ff::extract_embeddings(model->backbone(), images, batch, flip, &dim, "  embedding");
    const int64_t n = (int64_t)images.size();
    if (ext == ".npy")
      ff::data::write_npy(out, emb, n, dim);
    else
      ff::save_safetensors(out, {{"embeddings", ff::Tensor::from<float>({n, dim}, emb)}},
                           {{"model", model_path}, {"flip", flip ? "true" : "false"}});
    if (names_path.empty()) names_path = fs::path(out).replace_extension(".txt").string();
    std::string text;
    for (auto& n : names) text += n + "\n";
    ff::write_file_atomically(names_path, [&](ff::FileWriter& w) { w.write(text.data(), text.size()); });
    std::printf("wrote %s [%zu, %lld] and %s\n", out.c_str(), images.size(), (long long)dim, names_path.c_str());
    return 0;
  });
}
