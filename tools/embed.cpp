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
  // Decoded images are ~40 KB each at 112 px: a whole MS1MV2 would need ~220 GB, a chunk ~160 MB.
  int64_t batch = 64, threads = 0, chunk = 4096;
  std::string device = "auto";
  bool flip = true;
  app.add_option("-m,--model", model_path, "checkpoint folder or model .safetensors")->required();
  app.add_option("-i,--input", input,
                 "an image folder (searched recursively), a text file listing image paths (one per line; relative "
                 "paths are relative to the list's folder), or a train.rec")
      ->required()
      ->check(CLI::ExistingPath);
  app.add_option("-o,--output", out, "output .npy or .safetensors")->required();
  app.add_option("--names", names_path, "names file (default: output with .txt)");
  app.add_option("--flip", flip, "add the embedding of the mirrored image (true/false)");
  app.add_option("--batch", batch, "batch size")->check(ff::positive_int());
  app.add_option("--chunk", chunk, "images decoded at a time; only their embeddings are kept")
      ->check(ff::positive_int());
  app.add_option("--threads", threads, "CPU threads (0 = all cores)")->check(ff::thread_count());
  app.add_option("--device", device, "auto (the GPU when one is visible) | cpu | cuda");
  return ff::run_tool(app, argc, argv, [&] {
    const ff::Device dev = ff::resolve_device(device, "--device");
    const std::string ext = fs::path(out).extension().string();
    FF_CHECK(ext == ".npy" || ext == ".safetensors", "--output ", out, ": expected a .npy or .safetensors file name");
    ff::set_cpu_threads(threads);
    auto model = ff::load_model(model_path);
    model->to(dev);
    const int size = (int)model->config().backbone.input_size;
    // The inputs, named; image i is decoded only when its chunk comes.
    std::vector<std::string> names, files;
    std::shared_ptr<ff::data::Dataset> ds;
    if (fs::path(input).extension() == ".rec") {
      ds = ff::open_training_set(input, size, {}, "--input");
      for (size_t i = 0; i < ds->size(); ++i) names.push_back(ds->describe(i));
    } else {
      if (fs::is_directory(input)) {
        for (auto& e : fs::recursive_directory_iterator(input))
          if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path().string());
        std::sort(files.begin(), files.end());
        names = files;
      } else {
        std::ifstream list(input);
        for (std::string line; std::getline(list, line);) {
          if (!line.empty() && line.back() == '\r') line.pop_back();
          if (line.empty()) continue;
          names.push_back(line);  // as written; the file is found from the list's folder, as pack does
          files.push_back((fs::path(input).parent_path() / line).string());
        }
      }
      FF_CHECK(!files.empty(), input, ": no images found");
    }
    ff::data::DecodeOptions opt;
    opt.height = opt.width = size;
    auto decode = [&](size_t i) {
      if (ds) return ds->get(i).image;
      std::ifstream in(files[i], std::ios::binary);
      FF_CHECK(in, "cannot read image ", files[i]);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
      try {
        return ff::data::decode_image(bytes, opt);
      } catch (const std::exception& e) {
        throw ff::Error(ff::msg(files[i], ": ", e.what()));
      }
    };
    std::printf("embedding %zu images with %s\n", names.size(), model_path.c_str());
    std::fflush(stdout);
    const size_t total = names.size();
    ff::Progress decoding("  decoding", total), embedding("  embedding", total);
    int64_t dim = model->backbone().config().embedding_size;
    std::vector<float> emb;
    emb.reserve(total * (size_t)dim);
    for (size_t begin = 0; begin < total; begin += (size_t)chunk) {
      std::vector<ff::data::Image> images;
      for (size_t i = begin; i < std::min(total, begin + (size_t)chunk); ++i) {
        images.push_back(decode(i));
        decoding.update(i + 1);
      }
      std::vector<float> part = ff::extract_embeddings(model->backbone(), images, batch, flip, &dim, &embedding, begin);
      emb.insert(emb.end(), part.begin(), part.end());
    }
    const int64_t n = (int64_t)total;
    if (ext == ".npy")
      ff::data::write_npy(out, emb, n, dim);
    else
      ff::save_safetensors(out, {{"embeddings", ff::Tensor::from<float>({n, dim}, emb)}},
                           {{"model", model_path}, {"flip", flip ? "true" : "false"}});
    if (names_path.empty()) names_path = fs::path(out).replace_extension(".txt").string();
    std::string text;
    for (auto& n : names) text += n + "\n";
    ff::write_file_atomically(names_path, [&](ff::FileWriter& w) { w.write(text.data(), text.size()); });
    std::printf("wrote %s [%zu, %lld] and %s\n", out.c_str(), total, (long long)dim, names_path.c_str());
    return 0;
  });
}
