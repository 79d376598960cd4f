// Wall time of one whole training step on the CPU for each method (sgd, sam, asam, aace, flatface):
// iResNet-50, batch 32, 112x112, 1,000 classes, ArcFace, f32, SGD with momentum. A plain main: a
// step takes seconds, so a few timed steps after a warm-up are all a loaded machine allows.
// benchmarks/torch_cpu_step.py runs this next to the same step in PyTorch and writes the table.
//
// Usage: bench_cpu_step [methods=sgd,sam,asam,aace,flatface] [arch=r50] [batch=32] [size=112]
//                       [classes=1000] [warmup=1] [iters=2]
// Threads: OMP_NUM_THREADS (and OPENBLAS_NUM_THREADS for the margin head's BLAS calls).
// Prints one "RESULT {json}" line per method for the script: wall seconds of each timed step, and
// the process's CPU seconds (less sensitive to other load on the machine, though spinning OpenMP
// threads count too).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "models/face_model.h"
#include "optim/flatface_step.h"

namespace {

using namespace ff;

std::map<std::string, std::string> parse_args(int argc, char** argv) {
  std::map<std::string, std::string> a = {{"methods", "sgd,sam,asam,aace,flatface"},
                                          {"arch", "r50"},
                                          {"batch", "32"},
                                          {"size", "112"},
                                          {"classes", "1000"},
                                          {"warmup", "1"},
                                          {"iters", "2"}};
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    size_t eq = s.find('=');
    FF_CHECK(eq != std::string::npos && a.count(s.substr(0, eq)), "bench_cpu_step: unknown argument '", s,
             "' (expected key=value with key one of methods arch batch size classes warmup iters)");
    a[s.substr(0, eq)] = s.substr(eq + 1);
  }
  return a;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

std::string join(const std::vector<double>& v) {
  std::string out;
  for (double x : v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.4f", out.empty() ? "" : ", ", x);
    out += buf;
  }
  return out;
}

std::vector<ParamRef> face_params(FaceModel& m) {
  std::vector<ParamRef> out;
  for (auto& [name, t] : m.backbone().named_parameters()) out.push_back({name, t, false, false});
  out.push_back({"head.weight", m.centres(), true, false});
  return out;
}

struct Times {
  std::vector<double> wall, cpu;  // seconds of each timed step: elapsed, and CPU time of the process
};

// The timed steps of `method`, after `warmup` untimed ones.
Times time_method(Method method, const FaceModelConfig& cfg, int64_t batch, int warmup, int iters) {
  FaceModel model(cfg);
  Rng rng(7);
  const int64_t size = cfg.backbone.input_size;
  Tensor x = rand_uniform({batch, 3, size, size}, rng, -1, 1);
  Tensor y = Tensor::zeros({batch}, DType::I64);
  for (int64_t i = 0; i < batch; ++i) y.data<int64_t>()[i] = (i * 7919) % cfg.num_classes;  // spread over classes

  std::vector<ParamRef> params = face_params(model);
  Sgd opt(make_param_groups(params, GroupingOptions{}), SgdOptions{});
  FlatFaceStep step(opt, PerturbConfig::preset(method));
  auto closure = [&](const PassInfo& p) {
    MarginLoss kind = p.loss == PerturbLoss::Aace ? MarginLoss::Aace : MarginLoss::Margin;
    return model.train_pass(x, y, kind, p.update_bn_stats).loss.item();
  };
  Times times;
  for (int k = 0; k < warmup + iters; ++k) {
    auto t0 = std::chrono::steady_clock::now();
    std::clock_t c0 = std::clock();
    StepResult r = step.step(k, 0.01, closure);
    double cpu = (double)(std::clock() - c0) / CLOCKS_PER_SEC;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  %-8s step %d: %.2f s, CPU %.2f s (loss %.3f%s)\n", method_name(method), k, s, cpu, r.loss,
                k < warmup ? ", warm-up" : "");
    std::fflush(stdout);
    if (k >= warmup) {
      times.wall.push_back(s);
      times.cpu.push_back(cpu);
    }
  }
  return times;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto a = parse_args(argc, argv);
    FaceModelConfig cfg;
    cfg.backbone.arch = a["arch"];
    cfg.backbone.input_size = std::stoll(a["size"]);
    cfg.num_classes = std::stoll(a["classes"]);
    const int64_t batch = std::stoll(a["batch"]);
    const int warmup = std::stoi(a["warmup"]), iters = std::stoi(a["iters"]);
    std::printf("bench_cpu_step: %s, batch %lld, %lldx%lld, %lld classes, f32, %d threads, %d warm-up + %d timed\n",
                cfg.backbone.arch.c_str(), (long long)batch, (long long)cfg.backbone.input_size,
                (long long)cfg.backbone.input_size, (long long)cfg.num_classes, omp_get_max_threads(), warmup, iters);
    for (const std::string& m : split(a["methods"])) {
      Times t = time_method(parse_method(m), cfg, batch, warmup, iters);
      std::printf("RESULT {\"method\": \"%s\", \"seconds\": [%s], \"cpu_seconds\": [%s], \"threads\": %d}\n", m.c_str(),
                  join(t.wall).c_str(), join(t.cpu).c_str(), omp_get_max_threads());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
