// Data throughput: synthetic faces rendered per second, JPEG faces decoded per second per core,
// and images batched per
// second per core by the Loader (over the synthetic dataset, and over pre-rendered images to
// show the loader's own cost). Run: build/bin/bench_data_loader
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "data/image_codec.h"
#include "data/loader.h"
#include "data/synth/dataset.h"
#include "data/synth/faces.h"

namespace {

using namespace ff::data;

// One thread renders 112x112 images at the default nuisance.
void BM_SynthRender(benchmark::State& state) {
  const synth::SynthFaces faces;
  const synth::Nuisance n = faces.training_nuisance();
  int64_t i = 0;
  for (auto _ : state) {
    Image img = faces.render(i / 8, i % 8, n);
    benchmark::DoNotOptimize(img.pixels.data());
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SynthRender)->Unit(benchmark::kMicrosecond);

// OpenMP over images, as a generator tool would run it; arg = threads.
void BM_SynthRenderParallel(benchmark::State& state) {
  const synth::SynthFaces faces;
  const synth::Nuisance n = faces.training_nuisance();
  const int threads = (int)state.range(0), per_iter = 64;
  int64_t base = 0;
  std::vector<Image> out(per_iter);
  for (auto _ : state) {
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (int k = 0; k < per_iter; ++k) out[k] = faces.render((base + k) / 8, (base + k) % 8, n);
    base += per_iter;
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * per_iter);
  state.counters["per_thread"] = benchmark::Counter((double)state.iterations() * per_iter / threads, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SynthRenderParallel)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// Images held in memory, so the loader's own work (copy, flip, normalise, batch) is measured.
class Prerendered final : public Dataset {
 public:
  explicit Prerendered(int n) {
    const synth::SynthFaces faces;
    for (int i = 0; i < n; ++i) images_.push_back(faces.render(i / 8, i % 8, faces.training_nuisance()));
  }
  size_t size() const override { return images_.size(); }
  int64_t num_classes() const override { return (int64_t)images_.size() / 8; }
  Sample get(size_t i) const override { return {images_[i], label(i)}; }
  int64_t label(size_t i) const override { return (int64_t)i / 8; }
  std::string describe(size_t i) const override { return "prerendered#" + std::to_string(i); }

 private:
  std::vector<Image> images_;
};

void run_loader(benchmark::State& state, std::shared_ptr<const Dataset> ds) {
  LoaderConfig cfg;
  cfg.batch_size = 64;
  cfg.workers = (int)state.range(0);
  cfg.prefetch = 4;
  Loader loader(std::move(ds), cfg);
  for (auto _ : state) {
    Batch b = loader.next();
    benchmark::DoNotOptimize(b.images.raw());
  }
  state.SetItemsProcessed(state.iterations() * cfg.batch_size);
  state.counters["per_core"] =
      benchmark::Counter((double)state.iterations() * cfg.batch_size / cfg.workers, benchmark::Counter::kIsRate);
}

// Rendered on the fly by the workers: what training on synthetic data gets; arg = workers.
void BM_LoaderSynth(benchmark::State& state) {
  run_loader(state, std::make_shared<synth::SynthDataset>(synth::SynthFaces(), 1000, 20));
}
BENCHMARK(BM_LoaderSynth)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// One thread decodes 112x112 JPEG faces (quality 90, as flatface-synth writes them): the
// per-core decode rate that bounds a RecordIO training run's input pipeline.
void BM_DecodeJpeg112(benchmark::State& state) {
  const synth::SynthFaces faces;
  std::vector<std::vector<uint8_t>> jpegs;
  for (int64_t i = 0; i < 64; ++i) jpegs.push_back(encode_jpeg(faces.render(i / 4, i % 4, faces.training_nuisance()), 90));
  size_t i = 0;
  for (auto _ : state) {
    Image img = decode_image(jpegs[i++ % jpegs.size()]);
    benchmark::DoNotOptimize(img.pixels.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeJpeg112)->Unit(benchmark::kMicrosecond);

void BM_LoaderPrerendered(benchmark::State& state) { run_loader(state, std::make_shared<Prerendered>(512)); }
BENCHMARK(BM_LoaderPrerendered)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
