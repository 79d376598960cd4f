// The training loop: one FlatFace (or baseline) step per batch, progress lines, JSON-lines
// metrics, SVG plots, periodic evaluation, atomic checkpoints, exact resume and clean interrupts.
#include "tools/common/trainer.h"

#include <omp.h>

#include <atomic>
#include <cmath>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/image_folder.h"
#include "data/loader.h"
#include "data/recordio.h"
#include "engine/atomic_file.h"
#include "engine/backend.h"
#include "engine/device_hooks.h"
#include "optim/flatface_step.h"
#include "optim/optimizer.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"
#include "tools/common/checkpoint.h"
#include "tools/common/evaluate.h"
#include "tools/common/plot.h"

namespace fs = std::filesystem;

namespace ff {

namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal = sig; }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string format_duration(double s) {
  char b[32];
  int h = (int)(s / 3600), m = (int)(s / 60) % 60, sec = (int)s % 60;
  if (h) std::snprintf(b, sizeof b, "%dh%02dm", h, m);
  else std::snprintf(b, sizeof b, "%dm%02ds", m, sec);
  return b;
}

// Metrics of the run: appended as JSON lines and kept in memory for the plots.
class MetricsLog {
 public:
  MetricsLog(const std::string& out_dir, int64_t resume_step) : dir_(out_dir), path_(out_dir + "/metrics.jsonl") {
    // A resumed run drops what the interrupted one logged after its checkpoint, so the log reads
    // as one uninterrupted run.
    std::vector<std::string> kept;
    if (resume_step >= 0 && fs::exists(path_)) {
      std::ifstream in(path_);
      for (std::string line; std::getline(in, line);) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || j.value("step", (int64_t)0) > resume_step) continue;
        kept.push_back(line);
        remember(j);
      }
    }
    std::ofstream out(path_, std::ios::trunc);
    for (auto& l : kept) out << l << "\n";
  }
  void add(const nlohmann::json& j) {
    std::ofstream(path_, std::ios::app) << j.dump() << "\n";
    remember(j);
  }
  void plot() const {
    std::vector<PlotSeries> loss{{"update-pass loss", loss_}}, lr{{"learning rate", lr_}}, acc;
    if (!perturb_loss_.empty()) loss.push_back({"gradient-pass loss", perturb_loss_});
    for (auto& [name, pts] : val_) acc.push_back({name, pts});
    write_svg_plot(dir_ + "/loss.svg", "Training loss", "step", loss);
    write_svg_plot(dir_ + "/lr.svg", "Learning rate", "step", lr);
    if (!acc.empty()) write_svg_plot(dir_ + "/val_accuracy.svg", "Verification accuracy (%)", "step", acc);
  }

 private:
  void remember(const nlohmann::json& j) {
    double step = j.value("step", 0.0);
    if (j.value("type", "") == "train") {
      loss_.push_back({step, j.value("loss", 0.0)});
      lr_.push_back({step, j.value("lr", 0.0)});
      if (j.contains("perturb_loss")) perturb_loss_.push_back({step, j.value("perturb_loss", 0.0)});
    } else if (j.value("type", "") == "eval") {
      val_[j.value("set", "")].push_back({step, 100 * j.value("accuracy", 0.0)});
    }
  }
  std::string dir_, path_;
  std::vector<std::pair<double, double>> loss_, lr_, perturb_loss_;
  std::map<std::string, std::vector<std::pair<double, double>>> val_;
};

}  // namespace

PerturbConfig perturb_config_from(const Config& cfg) {
  PerturbConfig p = PerturbConfig::preset(parse_method(cfg.get_string("method.name")));
  // -1 (the schema default) keeps the method's own radius; any other value is validated below.
  if (cfg.get_double("method.rho") != -1.0) p.rho = cfg.get_double("method.rho");
  if (cfg.is_set("method.adaptive")) p.adaptive = cfg.get_bool("method.adaptive");
  if (cfg.is_set("method.normalize")) p.normalize = cfg.get_bool("method.normalize");
  if (cfg.is_set("method.loss")) p.loss = parse_perturb_loss(cfg.get_string("method.loss"));
  if (cfg.is_set("method.head")) p.head = cfg.get_bool("method.head");
  p.sync = cfg.get_bool("method.sync");
  validate(p);
  return p;
}

MarginConfig margin_config_from(const Config& cfg) {
  const std::string& type = cfg.get_string("head.margin");
  double s = cfg.get_double("head.s");
  MarginConfig m;
  // Each type takes its defaults for the margins the config leaves unset, so a default meant for
  // another type (m2 for ArcFace, m3 for CosFace) never leaks in.
  auto pick = [&](const char* key, double fallback) { return cfg.is_set(key) ? cfg.get_double(key) : fallback; };
  if (type == "arcface") m = arcface_config(s, cfg.get_double("head.m2"));
  else if (type == "cosface") m = cosface_config(s, cfg.get_double("head.m3"));
  else if (type == "combined") m = combined_config(s, pick("head.m1", 1.0), pick("head.m2", 0.3), pick("head.m3", 0.2));
  else throw Error(msg("head.margin '", type, "' is not one of arcface, cosface, combined"));
  if (type == "arcface") m.m1 = pick("head.m1", 1.0), m.m3 = pick("head.m3", 0.0);
  if (type == "cosface") m.m1 = pick("head.m1", 1.0), m.m2 = pick("head.m2", 0.0);
  m.grad = parse_margin_grad(cfg.get_string("head.margin_grad"));
  check_margin_config(m);
  return m;
}

std::vector<ParamRef> model_param_refs(FaceModel& model) {
  const NamedTensors params = model.backbone().named_parameters();
  std::map<std::string, int64_t> dims;
  for (auto& [name, t] : params) dims[name] = t.dim();
  // BatchNorm and PReLU tensors are 1-D and not the bias of a layer whose weight is a matrix or a
  // kernel (fc.bias keeps its weight decay under optim.no_decay_bn).
  auto norm_or_prelu = [&](const std::string& name, const Tensor& t) {
    const std::string suffix = ".bias";
    if (t.dim() != 1) return false;
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      return true;
    auto w = dims.find(name.substr(0, name.size() - suffix.size()) + ".weight");
    return w == dims.end() || w->second == 1;
  };
  std::vector<ParamRef> refs;
  for (auto& [name, t] : params) refs.push_back({name, t, false, norm_or_prelu(name, t)});
  refs.push_back({"head.weight", model.centres(), true, false});
  return refs;
}

Config resolved_config(const Config& cfg, const PerturbConfig& p, const MarginConfig& m) {
  Config r = cfg;
  auto exact = [](double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.17g", v);
    return std::string(b);
  };
  r.set("method.rho=" + exact(p.rho));
  r.set(std::string("method.adaptive=") + (p.adaptive ? "true" : "false"));
  r.set(std::string("method.normalize=") + (p.normalize ? "true" : "false"));
  r.set(std::string("method.loss=") + perturb_loss_name(p.loss));
  r.set(std::string("method.head=") + (p.head ? "true" : "false"));
  r.set("head.m1=" + exact(m.m1));
  r.set("head.m2=" + exact(m.m2));
  r.set("head.m3=" + exact(m.m3));
  return r;
}

namespace {

// Keys a resumed run may change without changing what it computes: output, logging, evaluation,
// checkpointing and threads (not the device: CPU and CUDA kernels round differently).
bool harmless_on_resume(const std::string& key) {
  static const char* keys[] = {"data.val",        "data.workers",     "train.threads",    "train.output",
                               "train.log_every", "train.eval_every", "train.save_every", "train.keep",
                               "train.eval_batch"};
  for (const char* k : keys)
    if (key == k) return true;
  return false;
}

// Keys without which the checkpoint cannot be continued at all: the model's shape, the data and
// its order, the optimizer's state layout and the method.
bool fixed_on_resume(const std::string& key) {
  static const char* keys[] = {"data.train", "data.input_size", "data.shuffle", "train.batch_size", "train.seed",
                               "optim.name", "method.name"};
  for (const char* k : keys)
    if (key == k) return true;
  return key.rfind("model.", 0) == 0;
}

// A resumed run must be the run that was started: refuses changes that make continuing
// meaningless and warns about the rest (the run then continues with the new values).
void check_resume_config(const Config& now, const std::string& saved_toml, const std::string& checkpoint) {
  Config saved;
  saved.load_toml_text(saved_toml, checkpoint + " (saved config)");
  std::string refused;
  std::vector<std::string> changed;
  for (const std::string& key : now.differing_keys(saved)) {
    if (harmless_on_resume(key)) continue;
    std::string change = key + " " + saved.value_text(key) + " -> " + now.value_text(key);
    if (fixed_on_resume(key)) refused += (refused.empty() ? "" : "; ") + change;
    else changed.push_back(change);
  }
  FF_CHECK(refused.empty(), "--resume: ", checkpoint, " belongs to a run with other settings (", refused,
           "): resume with the run's own settings (its config.toml) or start a new run in another train.output");
  for (const std::string& c : changed)
    std::fprintf(stderr, "warning: --resume with %s (changed since the checkpoint): the run continues with the new "
                 "value, so it is no longer exactly the run that was started\n", c.c_str());
}

// A fresh run must not write into another run's checkpoints: pruning keeps the highest step numbers,
// so the new run's checkpoints would be deleted and --resume would continue the old run.
void check_fresh_output(const std::string& out) {
  auto ckpts = list_checkpoints(out);
  FF_CHECK(ckpts.empty(), "train.output '", out, "' already holds a run's checkpoints (newest ",
           fs::path(ckpts.empty() ? "" : ckpts.back()).filename().string(),
           "): continue that run with --resume, or give another train.output (or delete ", out, ")");
}

std::vector<int64_t> parse_milestones(const std::vector<std::string>& items) {
  std::vector<int64_t> steps;
  for (const std::string& m : items) {
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(m, &used);
    } catch (const std::logic_error&) {
      used = 0;
    }
    FF_CHECK(used == m.size() && v > 0, "optim.milestones: '", m, "' is not a positive step number");
    steps.push_back(v);
  }
  return steps;
}

// Range checks of the numeric keys, each naming its key (the schema only checks types).
void check_ranges(const Config& cfg) {
  auto at_least = [&](const char* key, int64_t lo) {
    FF_CHECK(cfg.get_int(key) >= lo, key, " = ", cfg.get_int(key), " must be >= ", lo);
  };
  at_least("train.steps", 0);
  at_least("train.epochs", 0);
  at_least("train.threads", 0);
  at_least("train.log_every", 1);
  at_least("train.eval_every", 0);
  at_least("train.save_every", 0);
  at_least("train.keep", 1);
  at_least("train.eval_batch", 1);
  at_least("data.workers", 1);
  at_least("optim.warmup_steps", 0);
  auto finite_at_least = [&](const char* key, double lo) {
    const double v = cfg.get_double(key);
    FF_CHECK(std::isfinite(v) && v >= lo, key, " = ", v, " must be a finite number >= ", lo);
  };
  finite_at_least("optim.lr", 0);
  finite_at_least("optim.weight_decay", 0);
  finite_at_least("optim.momentum", 0);
  FF_CHECK(cfg.get_double("optim.momentum") < 1, "optim.momentum = ", cfg.get_double("optim.momentum"),
           " must be < 1");
  finite_at_least("model.dropout", 0);
  FF_CHECK(cfg.get_double("model.dropout") < 1, "model.dropout = ", cfg.get_double("model.dropout"), " must be < 1");
}

}  // namespace

std::shared_ptr<data::Dataset> open_training_set(const std::string& path, int64_t input_size,
                                                 const TrainingSetOptions& options, const std::string& what) {
  FF_CHECK(!path.empty(), what, " is not set (a train.rec file or an image-folder root)");
  FF_CHECK(fs::exists(path), what, " '", path, "' does not exist");
  data::DecodeOptions decode;
  decode.height = decode.width = (int)input_size;
  decode.resize = options.resize;
  if (fs::is_directory(path)) {
    FF_CHECK(!options.skip_undecodable, "data.skip_undecodable applies to RecordIO sets; ", path,
             " is an image folder (remove its unreadable files instead)");
    return std::make_shared<data::ImageFolderDataset>(path, decode);
  }
  fs::path idx = fs::path(path).replace_extension(".idx");
  FF_CHECK(fs::exists(idx), what, " '", path, "': its index ", idx.string(), " is missing");
  data::RecordDatasetOptions opt;
  opt.decode = decode;
  opt.skip_undecodable = options.skip_undecodable;
  return std::make_shared<data::RecordDataset>(path, idx.string(), opt);
}

Device resolve_device(const std::string& name, const std::string& what) {
  FF_CHECK(name == "auto" || name == "cpu" || name == "cuda", what, " '", name, "' is not one of auto, cpu, cuda");
  FF_CHECK(name != "cuda" || cuda_available(), what, " = cuda, but ",
           kCudaBuild ? "no CUDA device is visible" : "this build has no CUDA backend (rebuild with nvcc present)",
           " (use cpu or auto)");
  return name == "cuda" || (name == "auto" && cuda_available()) ? Device::cuda() : Device::cpu();
}

void set_cpu_threads(int64_t threads) {
  int n = threads > 0 ? (int)threads : omp_get_num_procs();
  // OpenBLAS stays single-threaded (kernels/cpu/gemm.h): all parallelism is OpenMP's.
  omp_set_num_threads(n);
}

int run_training(const Config& cfg, const TrainOptions& opts) {
  const auto t_start = std::chrono::steady_clock::now();
  const std::string out = cfg.get_string("train.output");
  check_ranges(cfg);
  if (!opts.resume) check_fresh_output(out);
  const Device dev = resolve_device(cfg.get_string("train.device"), "train.device");
  set_cpu_threads(cfg.get_int("train.threads"));

  const int64_t input_size = cfg.get_int("data.input_size");
  TrainingSetOptions set_options;
  set_options.resize = cfg.get_bool("data.resize");
  set_options.skip_undecodable = cfg.get_bool("data.skip_undecodable");
  auto dataset = open_training_set(cfg.get_string("data.train"), input_size, set_options);
  const uint64_t seed = (uint64_t)cfg.get_int("train.seed");

  FaceModelConfig mcfg;
  mcfg.backbone.arch = cfg.get_string("model.backbone");
  mcfg.backbone.input_size = input_size;
  mcfg.backbone.width = cfg.get_double("model.width");
  mcfg.backbone.embedding_size = cfg.get_int("model.embedding_size");
  mcfg.backbone.dropout = cfg.get_double("model.dropout");
  mcfg.backbone.seed = seed;
  mcfg.num_classes = dataset->num_classes();
  mcfg.margin = margin_config_from(cfg);
  FaceModel model(mcfg);
  if (!opts.init.empty()) {
    // Class centres come along only when the identity count matches (fine-tuning on new classes
    // keeps fresh centres).
    bool with_head = true;
    try {
      load_weights(opts.init, model, true);
    } catch (const Error&) {
      with_head = false;
      load_weights(opts.init, model, false);
    }
    if (!opts.quiet)
      std::printf("initialised from %s (%s)\n", opts.init.c_str(), with_head ? "backbone and class centres" : "backbone");
  }

  // On its device before the optimizer and the perturbation allocate their state beside it.
  model.to(dev);

  const PerturbConfig pcfg = perturb_config_from(cfg);
  const Config run_cfg = resolved_config(cfg, pcfg, mcfg.margin);
  std::vector<ParamRef> refs = model_param_refs(model);
  GroupingOptions gopt;
  gopt.weight_decay = cfg.get_double("optim.weight_decay");
  gopt.no_decay_on_flagged = cfg.get_bool("optim.no_decay_bn");
  auto groups = make_param_groups(refs, gopt);
  std::unique_ptr<Optimizer> opt;
  const std::string& opt_name = cfg.get_string("optim.name");
  if (opt_name == "sgd") {
    SgdOptions o;
    o.momentum = cfg.get_double("optim.momentum");
    o.nesterov = cfg.get_bool("optim.nesterov");
    opt = std::make_unique<Sgd>(groups, o);
  } else if (opt_name == "adamw") {
    opt = std::make_unique<AdamW>(groups, AdamWOptions{});
  } else {
    throw Error(msg("optim.name '", opt_name, "' is not one of sgd, adamw"));
  }

  data::LoaderConfig lcfg;
  lcfg.batch_size = cfg.get_int("train.batch_size");
  lcfg.image_height = lcfg.image_width = (int)input_size;
  lcfg.workers = (int)cfg.get_int("data.workers");
  lcfg.shuffle = cfg.get_bool("data.shuffle");
  lcfg.seed = seed;
  lcfg.augment.flip = cfg.get_bool("data.flip");
  if (cfg.get_bool("data.augment")) {
    bool flip = lcfg.augment.flip;
    lcfg.augment = data::AugmentConfig::strong();
    lcfg.augment.flip = flip;
  }
  FF_CHECK(lcfg.batch_size > 0 && (size_t)lcfg.batch_size <= dataset->size(), "train.batch_size ", lcfg.batch_size,
           " must be in [1, ", dataset->size(), "] (the training set's size)");

  // Resume: model, optimizer, step, data position and dropout stream of the newest checkpoint.
  TrainingState state;
  int64_t resume_step = -1;
  if (opts.resume) {
    auto ckpts = list_checkpoints(out);
    FF_CHECK(!ckpts.empty(), "--resume: no checkpoint in ", out, "/checkpoints");
    const std::string& last = ckpts.back();
    try {
      load_weights(last, model, true);
      state = load_training_state(last, *opt);
    } catch (const Error& e) {
      std::string hint = ckpts.size() > 1 ? " (the previous one, " + ckpts[ckpts.size() - 2] +
                                                ", can be used by removing this one)"
                                          : "";
      throw Error(msg("cannot resume from ", last, ": ", e.what(), hint));
    }
    check_resume_config(run_cfg, state.config_toml, last);
    model.backbone().dropout_rng().set_state(state.dropout_rng);
    resume_step = state.step;
  }
  data::Loader loader(dataset, lcfg, state.position);
  const int64_t per_epoch = loader.batches_per_epoch();
  FF_CHECK(per_epoch > 0, "the training set (", dataset->size(), " images) has no full batch of ", lcfg.batch_size);
  const int64_t total = cfg.get_int("train.steps") > 0 ? cfg.get_int("train.steps") : cfg.get_int("train.epochs") * per_epoch;
  FF_CHECK(total > 0, "nothing to train: train.steps and train.epochs give 0 steps");

  ScheduleConfig sched;
  sched.kind = parse_schedule_kind(cfg.get_string("optim.schedule"));
  sched.base_lr = cfg.get_double("optim.lr");
  sched.total_steps = total;
  sched.warmup_steps = cfg.get_int("optim.warmup_steps");
  sched.power = cfg.get_double("optim.power");
  sched.gamma = cfg.get_double("optim.gamma");
  sched.milestones = parse_milestones(cfg.get_list("optim.milestones"));
  validate(sched);

  std::vector<PairSet> val_sets;
  for (auto& path : cfg.get_list("data.val")) val_sets.push_back(load_pair_set(path, input_size));

  fs::create_directories(out);
  // The config as it ran: method- and margin-dependent defaults written out, so the file describes
  // the run and gives the same run when loaded again.
  const std::string resolved = run_cfg.to_toml();
  write_file_atomically(out + "/config.toml", [&](FileWriter& w) { w.write(resolved.data(), resolved.size()); });
  MetricsLog metrics(out, resume_step);
  FlatFaceStep stepper(*opt, pcfg);

  if (!opts.quiet) {
    std::printf(
        "flatface-train: %s %s (%.2fM parameters) on %s, %lld classes, %zu images, %s (rho %.3g%s%s), "
        "%lld steps of batch %lld (%lld per epoch), output %s\n",
        mcfg.backbone.arch.c_str(), margin_type_name(mcfg.margin.type), model.backbone().parameter_count() / 1e6,
        dev.str().c_str(), (long long)mcfg.num_classes, dataset->size(), method_name(pcfg.method), pcfg.rho,
        pcfg.head && pcfg.perturbs() ? ", class centres too" : "", pcfg.adaptive ? ", adaptive" : "", (long long)total,
        (long long)lcfg.batch_size, (long long)per_epoch, out.c_str());
    if (resume_step >= 0) std::printf("resumed at step %lld\n", (long long)resume_step);
    std::fflush(stdout);
  }

  auto evaluate_all = [&](int64_t step) {
    for (auto& set : val_sets) {
      PairSetResult r = evaluate_pair_set(model.backbone(), set, cfg.get_int("train.eval_batch"));
      const auto& v = r.verification;
      metrics.add({{"type", "eval"}, {"step", step}, {"set", set.name}, {"accuracy", v.accuracy_mean},
                   {"accuracy_std", v.accuracy_std}, {"threshold", v.threshold_mean}, {"tar_at_far_1e-3", v.tar_mean}});
      if (!opts.quiet)
        std::printf("  eval step %lld  %-20s acc %.2f%% ± %.2f  TAR@FAR=1e-3 %.2f%%\n", (long long)step,
                    set.name.c_str(), 100 * v.accuracy_mean, 100 * v.accuracy_std, 100 * v.tar_mean);
    }
  };
  auto save = [&](int64_t step) {
    TrainingState s;
    s.step = step;
    s.position = loader.position();
    s.dropout_rng = model.backbone().dropout_rng().state();
    s.config_toml = resolved;
    save_checkpoint(checkpoint_dir(out, step), model, opt.get(), &s);
    prune_checkpoints(out, cfg.get_int("train.keep"));
  };

  g_signal = 0;
  auto prev_int = std::signal(SIGINT, on_signal);
  auto prev_term = std::signal(SIGTERM, on_signal);
  struct RestoreSignals {
    decltype(prev_int) i, t;
    ~RestoreSignals() {
      std::signal(SIGINT, i);
      std::signal(SIGTERM, t);
    }
  } restore_signals{prev_int, prev_term};

  const int64_t log_every = std::max<int64_t>(1, cfg.get_int("train.log_every"));
  const int64_t eval_every = cfg.get_int("train.eval_every"), save_every = cfg.get_int("train.save_every");
  int64_t step = std::max<int64_t>(resume_step, 0);
  auto t_window = std::chrono::steady_clock::now();
  int64_t images_window = 0;
  double acc_sum = 0;
  int64_t acc_n = 0;
  while (step < total) {
    data::Batch batch = loader.next();
    // Labels stay on the host: the margin op checks their range there and uploads them itself.
    const Tensor images = batch.images.to(dev), labels = batch.labels;
    double lr = lr_at(sched, step);
    double batch_acc = 0;
    StepResult r = stepper.step(step, lr, [&](const PassInfo& pass) {
      FaceModel::Loss l = model.train_pass(
          images, labels, pass.loss == PerturbLoss::Aace ? MarginLoss::Aace : MarginLoss::Margin, pass.update_bn_stats);
      if (pass.pass == Pass::Gradient) batch_acc = l.accuracy;
      return l.loss.item();
    });
    ++step;
    images_window += lcfg.batch_size;
    acc_sum += batch_acc;
    ++acc_n;
    if (step % log_every == 0 || step == total) {
      double dt = seconds_since(t_window), ips = images_window / std::max(dt, 1e-9);
      double eta = (double)(total - step) * lcfg.batch_size / std::max(ips, 1e-9);
      nlohmann::json j = {{"type", "train"}, {"step", step}, {"epoch", (double)step / per_epoch}, {"loss", r.loss},
                          {"lr", lr}, {"accuracy", acc_sum / acc_n}, {"images_per_s", ips},
                          {"elapsed_s", seconds_since(t_start)}};
      if (r.perturbed) j["perturb_loss"] = r.perturb_loss, j["grad_norm"] = r.grad_norm;
      metrics.add(j);
      if (!opts.quiet) {
        std::printf("step %6lld/%lld  epoch %6.2f  loss %.4f", (long long)step, (long long)total,
                    (double)step / per_epoch, r.loss);
        if (r.perturbed) std::printf(" (gradient pass %.4f)", r.perturb_loss);
        std::printf("  acc %5.1f%%  lr %.5f  %6.1f img/s  ETA %s\n", 100 * acc_sum / acc_n, lr, ips,
                    format_duration(eta).c_str());
        std::fflush(stdout);
      }
      metrics.plot();
      t_window = std::chrono::steady_clock::now();
      images_window = 0;
      acc_sum = 0;
      acc_n = 0;
    }
    if (eval_every > 0 && step % eval_every == 0 && step < total) evaluate_all(step);
    if (save_every > 0 && step % save_every == 0 && step < total) save(step);
    if (g_signal || (opts.stop_at > 0 && step == opts.stop_at && step < total)) {
      save(step);
      if (!opts.quiet)
        std::printf("stopped at step %lld (%s): checkpoint written to %s; continue with --resume\n", (long long)step,
                    g_signal ? "signal" : "--stop-at", checkpoint_dir(out, step).c_str());
      return 0;
    }
  }
  evaluate_all(step);
  metrics.plot();
  save(step);
  if (auto* rec = dynamic_cast<const data::RecordDataset*>(dataset.get()); rec && !rec->skipped().empty()) {
    metrics.add({{"type", "data"}, {"step", step}, {"skipped_undecodable", rec->skipped()}});
    std::printf("skipped %zu undecodable records (keys in metrics.jsonl)\n", rec->skipped().size());
  }
  if (!opts.save.empty()) save_model_file(opts.save, model);
  if (!opts.quiet) {
    std::printf("done: %lld steps in %s; checkpoint %s%s%s\n", (long long)step,
                format_duration(seconds_since(t_start)).c_str(), checkpoint_dir(out, step).c_str(),
                opts.save.empty() ? "" : ", model ", opts.save.c_str());
  }
  return 0;
}

}  // namespace ff
