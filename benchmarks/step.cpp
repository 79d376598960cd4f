// Wall time of one whole training step for each method (sgd, sam, asam, aace, flatface), ArcFace,
// f32, SGD with momentum, on the CPU or on a GPU:
//   device=cpu   iResNet-50, batch 32, 112x112, 1,000 classes; 1 warm-up + 2 timed steps (a step
//                takes seconds). benchmarks/torch_cpu_step.py runs this next to PyTorch's step.
//   device=cuda  iResNet-50, batch 128, 112x112, 10,000 classes; 3 warm-up + 20 timed steps, the
//                device drained before each clock reading. benchmarks/gpu/run.sh runs it and
//                benchmarks/gpu/torch_step.py times PyTorch's step on the same GPU.
//
// Usage: bench_step [device=auto|cpu|cuda] [methods=sgd,sam,asam,aace,flatface] [arch=r50] [batch]
//                   [size=112] [classes] [warmup] [iters]        (auto: cuda when a GPU is visible)
// Threads: OMP_NUM_THREADS (and OPENBLAS_NUM_THREADS for the margin head's BLAS calls).
// Prints one "RESULT {json}" line per method for the scripts: wall seconds of each timed step, and
// the process's CPU seconds (on the CPU less sensitive to other load on the machine, though
// spinning OpenMP threads count too), then on a GPU a line with the median step times.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "engine/device_hooks.h"
#include "engine/ops.h"
#include "models/face_model.h"
#include "optim/flatface_step.h"

namespace {

using namespace ff;

std::map<std::string, std::string> parse_args(int argc, char** argv) {
  std::map<std::string, std::string> a = {{"device", "auto"}, {"methods", "sgd,sam,asam,aace,flatface"},
                                          {"arch", "r50"},    {"batch", ""},
                                          {"size", "112"},    {"classes", ""},
                                          {"warmup", ""},     {"iters", ""}};
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    size_t eq = s.find('=');
    FF_CHECK(eq != std::string::npos && a.count(s.substr(0, eq)), "bench_step: unknown argument '", s,
             "' (expected key=value with key one of device methods arch batch size classes warmup iters)");
    a[s.substr(0, eq)] = s.substr(eq + 1);
  }
  const std::string& d = a["device"];
  FF_CHECK(d == "auto" || d == "cpu" || d == "cuda", "bench_step: device '", d, "' is not one of auto, cpu, cuda");
  if (d == "auto") a["device"] = cuda_available() ? "cuda" : "cpu";
  FF_CHECK(a["device"] == "cpu" || cuda_available(), "bench_step: device=cuda, but no CUDA device is visible");
  const bool gpu = a["device"] == "cuda";
  // The sizes of each device's benchmark unless given.
  for (auto [key, cpu_default, gpu_default] : {std::tuple{"batch", "32", "128"}, std::tuple{"classes", "1000", "10000"},
                                               std::tuple{"warmup", "1", "3"}, std::tuple{"iters", "2", "20"}})
    if (a[key].empty()) a[key] = gpu ? gpu_default : cpu_default;
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
Times time_method(Method method, const FaceModelConfig& cfg, Device dev, int64_t batch, int warmup, int iters) {
  FaceModel model(cfg);
  model.to(dev);
  Rng rng(7);
  const int64_t size = cfg.backbone.input_size;
  Tensor x = rand_uniform({batch, 3, size, size}, rng, -1, 1);
  Tensor y = Tensor::zeros({batch}, DType::I64);
  for (int64_t i = 0; i < batch; ++i) y.data<int64_t>()[i] = (i * 7919) % cfg.num_classes;  // spread over classes
  x = x.to(dev);

  std::vector<ParamRef> params = face_params(model);
  Sgd opt(make_param_groups(params, GroupingOptions{}), SgdOptions{});
  FlatFaceStep step(opt, PerturbConfig::preset(method));
  auto closure = [&](const PassInfo& p) {
    MarginLoss kind = p.loss == PerturbLoss::Aace ? MarginLoss::Aace : MarginLoss::Margin;
    return model.train_pass(x, y, kind, p.update_bn_stats).loss.item();
  };
  Times times;
  for (int k = 0; k < warmup + iters; ++k) {
    device_synchronize(dev);
    auto t0 = std::chrono::steady_clock::now();
    std::clock_t c0 = std::clock();
    StepResult r = step.step(k, 0.01, closure);
    device_synchronize(dev);
    double cpu = (double)(std::clock() - c0) / CLOCKS_PER_SEC;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  %-8s step %d: %.4f s, CPU %.4f s (loss %.3f%s)\n", method_name(method), k, s, cpu, r.loss,
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
    const Device dev = a["device"] == "cuda" ? Device::cuda() : Device::cpu();
    FaceModelConfig cfg;
    cfg.backbone.arch = a["arch"];
    cfg.backbone.input_size = std::stoll(a["size"]);
    cfg.num_classes = std::stoll(a["classes"]);
    const int64_t batch = std::stoll(a["batch"]);
    const int warmup = std::stoi(a["warmup"]), iters = std::stoi(a["iters"]);
    std::printf("bench_step: %s, %s, batch %lld, %lldx%lld, %lld classes, f32, %d threads, %d warm-up + %d timed\n",
                dev.str().c_str(), cfg.backbone.arch.c_str(), (long long)batch, (long long)cfg.backbone.input_size,
                (long long)cfg.backbone.input_size, (long long)cfg.num_classes, omp_get_max_threads(), warmup, iters);
    std::map<std::string, double> median;
    for (const std::string& m : split(a["methods"])) {
      Times t = time_method(parse_method(m), cfg, dev, batch, warmup, iters);
      std::printf(
          "RESULT {\"method\": \"%s\", \"device\": \"%s\", \"seconds\": [%s], \"cpu_seconds\": [%s], "
          "\"threads\": %d}\n",
          m.c_str(), dev.str().c_str(), join(t.wall).c_str(), join(t.cpu).c_str(), omp_get_max_threads());
      std::sort(t.wall.begin(), t.wall.end());
      median[m] = t.wall.empty() ? 0 : t.wall[t.wall.size() / 2];
      std::fflush(stdout);
    }
    std::printf("\n| method | median s/step | images/s | / sgd |\n|---|---:|---:|---:|\n");
    const double sgd = median.count("sgd") ? median["sgd"] : 0;
    for (auto& [m, s] : median) {
      char ratio[32] = "-";
      if (sgd > 0) std::snprintf(ratio, sizeof ratio, "%.2f", s / sgd);
      std::printf("| %s | %.4f | %.0f | %s |\n", m.c_str(), s, s > 0 ? batch / s : 0.0, ratio);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
