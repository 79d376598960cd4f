// flatface-compare: one table of finished runs: open-set and training-identity accuracy, the gap,
// sharpness and wall time, read from each run folder's eval.json, sharpness.json and metrics.jsonl.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>

#include "tools/common/cli.h"

namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  FF_CHECK(in, "cannot read ", p.string(), " (did the run's evaluation finish?)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ff::Error(ff::msg(p.string(), ": ", e.what()));
  }
}

double wall_time(const fs::path& metrics) {
  std::ifstream in(metrics);
  FF_CHECK(in, "cannot read ", metrics.string());
  double t = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("elapsed_s")) t = j["elapsed_s"].get<double>();
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Compare finished runs: name=folder[,folder...] (several folders, e.g. seeds, give mean ± std), "
               "each folder holding eval.json (flatface-eval --json), "
               "sharpness.json (flatface-sharpness --json) and metrics.jsonl (flatface-train).",
               "flatface-compare"};
  std::vector<std::string> runs;
  std::string open_set = "open_set", train_ids = "train_ids";
  app.add_option("runs", runs, "name=run_folder[,run_folder...] ...")->required();
  app.add_option("--open-set", open_set, "name of the open-set pair file (its stem)")->capture_default_str();
  app.add_option("--train-ids", train_ids, "name of the training-identity pair file (its stem)")->capture_default_str();
  return ff::run_tool(app, argc, argv, [&] {
    std::printf("| run (seeds) | open-set acc (%%) | open-set hard (%%) | training-id acc (%%) | training-id hard (%%) "
                "| gap (pp) | sharpness worst | sharpness random | train time (min) |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    for (auto& r : runs) {
      auto eq = r.find('=');
      FF_CHECK(eq != std::string::npos, "run '", r, "' is not of the form name=folder[,folder...]");
      std::string name = r.substr(0, eq);
      // Several folders (seeds) of one setting: each column is their mean ± std.
      std::vector<std::vector<double>> cols(8);
      std::stringstream dirs(r.substr(eq + 1));
      for (std::string d; std::getline(dirs, d, ',');) {
        fs::path dir = d;
        std::map<std::string, nlohmann::json> by_set;
        for (auto& e : read_json(dir / "eval.json")) by_set[e.at("set").get<std::string>()] = e;
        auto acc = [&](const std::string& set, const char* key) {
          auto it = by_set.find(set);
          return it == by_set.end() ? NAN : 100 * it->second.at(key).get<double>();
        };
        auto sharp = read_json(dir / "sharpness.json");
        double open = acc(open_set, "accuracy"), seen = acc(train_ids, "accuracy");
        double row[8] = {open, acc(open_set + "_hard", "accuracy"), seen, acc(train_ids + "_hard", "accuracy"),
                         seen - open, sharp.at("worst_rise").get<double>(), sharp.at("random_rise").get<double>(),
                         wall_time(dir / "metrics.jsonl") / 60};
        for (int k = 0; k < 8; ++k) cols[k].push_back(row[k]);
      }
      std::printf("| %s (%zu) |", name.c_str(), cols[0].size());
      for (int k = 0; k < 8; ++k) {
        double mean = 0, var = 0;
        for (double v : cols[k]) mean += v / cols[k].size();
        for (double v : cols[k]) var += (v - mean) * (v - mean) / cols[k].size();
        const char* fmt = k >= 5 && k <= 6 ? " %.4f" : " %.2f";
        std::printf(fmt, mean);
        if (cols[k].size() > 1) std::printf(k >= 5 && k <= 6 ? " ± %.4f" : " ± %.2f", std::sqrt(var));
        std::printf(" |");
      }
      std::printf("\n");
    }
    return 0;
  });
}
