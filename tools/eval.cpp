// flatface-eval: checkpoints x verification .bin files -> accuracy-flip (mean ± std) and TAR@FAR table.
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/atomic_file.h"
#include "tools/common/checkpoint.h"
#include "tools/common/cli.h"
#include "tools/common/evaluate.h"
#include "tools/common/plot.h"
#include "tools/common/trainer.h"

int main(int argc, char** argv) {
  CLI::App app{"Evaluate checkpoints on verification pair files (.bin: lfw, cfp_fp, agedb_30, ...) with the "
               "standard protocol: flip-summed embeddings, 10 folds, accuracy mean ± std, TAR at FAR=1e-3.",
               "flatface-eval"};
  std::vector<std::string> models, bins;
  std::string json_path, roc_path;
  int64_t batch = 64, threads = 0;
  std::string device = "auto";
  app.add_option("-m,--model", models, "checkpoint folders or model .safetensors files")->required();
  app.add_option("-b,--bin", bins, ".bin pair files")->required()->check(CLI::ExistingFile);
  app.add_option("--json", json_path, "also write the results as JSON here");
  app.add_option("--roc", roc_path, "write a ROC plot (TAR against FAR, SVG) here");
  app.add_option("--batch", batch, "embedding batch size")->check(ff::positive_int());
  app.add_option("--threads", threads, "CPU threads (0 = all cores)")->check(ff::thread_count());
  app.add_option("--device", device, "auto (the GPU when one is visible) | cpu | cuda");
  return ff::run_tool(app, argc, argv, [&] {
    const ff::Device dev = ff::resolve_device(device, "--device");
    ff::set_cpu_threads(threads);
    nlohmann::json out = nlohmann::json::array();
    std::vector<ff::PlotSeries> roc;
    std::printf("%-40s %-20s %18s %12s %10s\n", "model", "pairs", "accuracy-flip (%)", "TAR@1e-3 (%)", "threshold");
    // Each .bin is decoded once per input size, however many models use it.
    std::map<std::pair<std::string, int64_t>, ff::PairSet> sets;
    for (auto& m : models) {
      auto model = ff::load_model(m);
      model->to(dev);
      const int64_t size = model->config().backbone.input_size;
      for (auto& b : bins) {
        auto it = sets.find({b, size});
        if (it == sets.end()) it = sets.emplace(std::pair{b, size}, ff::load_pair_set(b, size)).first;
        const ff::PairSet& set = it->second;
        ff::PairSetResult r = ff::evaluate_pair_set(model->backbone(), set, batch, "  embedding " + set.name);
        const auto& v = r.verification;
        char tar[32] = "n/a";  // a set of only same or only different pairs has no TAR (a warning said so)
        if (r.has_tar) std::snprintf(tar, sizeof tar, "%.2f", 100 * v.tar_mean);
        std::printf("%-40s %-20s %10.2f ± %5.2f %12s %10.2f\n", m.c_str(), set.name.c_str(), 100 * v.accuracy_mean,
                    100 * v.accuracy_std, tar, v.threshold_mean);
        nlohmann::json rocj = nlohmann::json::array();
        ff::PlotSeries series{m + " / " + set.name, {}};
        for (auto& p : r.roc) {
          rocj.push_back({{"far_target", p.far_target}, {"tar", p.tar}, {"far", p.far}, {"threshold", p.threshold}});
          series.points.push_back({std::log10(p.far_target), 100 * p.tar});
        }
        if (r.has_tar) roc.push_back(series);
        auto or_null = [&](const nlohmann::json& j) { return r.has_tar ? j : nlohmann::json(); };
        out.push_back({{"model", m}, {"pairs", b}, {"set", set.name}, {"accuracy", v.accuracy_mean},
                       {"accuracy_std", v.accuracy_std}, {"fold_accuracy", v.fold_accuracy},
                       {"threshold", v.threshold_mean}, {"tar_at_far_1e-3", or_null(v.tar_mean)},
                       {"tar_std", or_null(v.tar_std)}, {"roc", or_null(rocj)}});
      }
    }
    if (!json_path.empty()) {
      std::string text = out.dump(2) + "\n";
      ff::write_file_atomically(json_path, [&](ff::FileWriter& w) { w.write(text.data(), text.size()); });
    }
    if (!roc_path.empty()) ff::write_svg_plot(roc_path, "ROC: TAR (%) at FAR", "log10 FAR", roc);
    return 0;
  });
}
