// flatface-synth: writes the built-in synthetic face benchmark: a RecordIO training set, LFW-style
// verification .bin files (open set, training identities on unseen images, and hard variants of
// both), and a preview PNG.
#include <omp.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/bin_pairs.h"
#include "data/image_codec.h"
#include "data/recordio.h"
#include "data/synth/faces.h"
#include "data/synth/pairs.h"
#include "engine/atomic_file.h"
#include "tools/common/cli.h"
#include "tools/common/trainer.h"

namespace fs = std::filesystem;
using namespace ff::data;

namespace {

void write_pairs(const synth::SynthFaces& faces, const std::vector<synth::Pair>& pairs, int quality,
                 const std::string& path) {
  BinPairs bin;
  bin.images.resize(2 * pairs.size());
  bin.issame.resize(pairs.size());
#pragma omp parallel for schedule(dynamic, 8)
  for (size_t k = 0; k < pairs.size(); ++k) {
    const auto& p = pairs[k];
    auto n = synth::Nuisance::level(p.nuisance);
    bin.images[2 * k] = encode_jpeg(faces.render(p.id_a, p.sample_a, n), quality);
    bin.images[2 * k + 1] = encode_jpeg(faces.render(p.id_b, p.sample_b, n), quality);
  }
  for (size_t k = 0; k < pairs.size(); ++k) bin.issame[k] = pairs[k].same;
  write_bin_pairs(path, bin);
  size_t same = 0;
  for (bool s : bin.issame) same += s;
  std::printf("  %-28s %zu pairs (%zu same, %zu different)\n", fs::path(path).filename().c_str(), pairs.size(), same,
              pairs.size() - same);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Generate the synthetic face benchmark: train.rec/train.idx (N identities x K images), verification "
               ".bin files on held-out identities (open set) and on training identities' unseen images, their "
               "hard variants (near-twin negatives, stronger nuisance), and preview.png.",
               "flatface-synth"};
  std::string out = "datasets/synth";
  int64_t identities = 1000, images = 20, open_ids = 0, threads = 0;
  int size = 112, quality = 90, folds = 10, per_fold = 300, family = 4;
  double difficulty = 0.5, pair_nuisance = -1;
  uint64_t seed = 0;
  app.add_option("-o,--output", out, "output folder")->capture_default_str();
  app.add_option("-n,--identities", identities, "training identities")->capture_default_str()->check(ff::positive_int());
  app.add_option("-k,--images", images, "images per training identity")->capture_default_str()->check(CLI::Range(2, 100000));
  app.add_option("--open-identities", open_ids, "held-out identities for the open-set pairs (0: as many as needed)");
  app.add_option("--size", size, "image side in pixels")->capture_default_str()->check(CLI::Range(16, 1024));
  app.add_option("--difficulty", difficulty, "0..1: nuisance strength and how alike family members are")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--family-size", family, "identities per family of near-twins (1: none)")->capture_default_str()->check(CLI::Range(1, 64));
  app.add_option("--pair-nuisance", pair_nuisance, "nuisance level of verification images (default: the difficulty)");
  app.add_option("--folds", folds, "verification folds")->capture_default_str()->check(CLI::Range(2, 100));
  app.add_option("--pairs-per-fold", per_fold, "positive (and negative) pairs per fold")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--quality", quality, "JPEG quality")->capture_default_str()->check(CLI::Range(1, 100));
  app.add_option("--seed", seed, "seed of the whole population")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0 = all cores)")->check(ff::thread_count());
  return ff::run_tool(app, argc, argv, [&] {
    ff::set_cpu_threads(threads);
    auto t0 = std::chrono::steady_clock::now();
    fs::create_directories(out);
    synth::SynthConfig cfg;
    cfg.image_size = size;
    cfg.difficulty = difficulty;
    cfg.seed = seed;
    cfg.family_size = family;
    synth::SynthFaces faces(cfg);
    const synth::Nuisance train_n = faces.training_nuisance();

    // Training set, rendered in parallel chunks and written in order.
    RecordWriter writer((fs::path(out) / "train.rec").string(), (fs::path(out) / "train.idx").string());
    const int64_t total = identities * images, chunk = 512;
    std::vector<std::vector<uint8_t>> encoded(chunk);
    for (int64_t start = 0; start < total; start += chunk) {
      int64_t n = std::min(chunk, total - start);
#pragma omp parallel for schedule(dynamic, 4)
      for (int64_t i = 0; i < n; ++i) {
        int64_t ex = start + i;
        encoded[i] = encode_jpeg(faces.render(ex / images, ex % images, train_n), quality);
      }
      for (int64_t i = 0; i < n; ++i) writer.add(encoded[i], (start + i) / images);
      std::printf("\rtraining images %lld/%lld", (long long)(start + n), (long long)total);
      std::fflush(stdout);
    }
    writer.close();
    std::printf("\n");

    synth::PairConfig pc;
    pc.folds = folds;
    pc.positives = pc.negatives = per_fold;
    pc.nuisance = pair_nuisance >= 0 ? pair_nuisance : difficulty;
    pc.seed = seed ^ 0x9a1e5ULL;
    // Open-set identities follow the training ones; LFW-style folds draw from disjoint identities.
    int64_t open_count = open_ids > 0 ? open_ids : std::max<int64_t>(identities / 2, (int64_t)folds * family * 8);
    auto path = [&](const char* name) { return (fs::path(out) / name).string(); };
    std::printf("verification pairs:\n");
    write_pairs(faces, synth::open_set_pairs(faces, identities, open_count, pc), quality, path("open_set.bin"));
    write_pairs(faces, synth::hard_pairs(faces, identities, open_count, pc), quality, path("open_set_hard.bin"));
    write_pairs(faces, synth::seen_identity_pairs(faces, identities, images, pc), quality, path("train_ids.bin"));
    synth::PairConfig hard_seen = pc;
    hard_seen.nuisance = std::min(1.0, pc.nuisance + pc.hard_extra);
    write_pairs(faces, synth::seen_identity_pairs(faces, identities, images, hard_seen), quality,
                path("train_ids_hard.bin"));

    Image preview = synth::preview_grid(faces, 0, 6, 8, train_n);
    std::vector<uint8_t> png = encode_png(preview);
    ff::write_file_atomically(path("preview.png"), [&](ff::FileWriter& w) { w.write(png.data(), png.size()); });
    nlohmann::json info = {{"identities", identities}, {"images_per_identity", images}, {"open_identities", open_count},
                           {"size", size}, {"difficulty", difficulty}, {"family_size", family}, {"seed", seed},
                           {"pair_nuisance", pc.nuisance}, {"folds", folds}, {"pairs_per_fold", per_fold}};
    std::string text = info.dump(2) + "\n";
    ff::write_file_atomically(path("synth.json"), [&](ff::FileWriter& w) { w.write(text.data(), text.size()); });
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("wrote %s: %lld training images of %lld identities, 4 pair files, preview.png in %.1f s\n",
                out.c_str(), (long long)total, (long long)identities, dt);
    return 0;
  });
}
