// The training run behind flatface-train: config -> data, model, method, optimizer -> steps with
// logs, evaluation, checkpoints and exact resume.
#pragma once

#include <memory>
#include <string>

#include "data/dataset.h"
#include "models/face_model.h"
#include "optim/param_groups.h"
#include "optim/perturb.h"
#include "tools/common/config.h"

namespace ff {

struct TrainOptions {
  bool resume = false;    // continue from the output folder's last checkpoint
  std::string init;       // start from this checkpoint's weights (class centres too when shapes match)
  std::string save;       // also write the final model here
  int64_t stop_at = 0;    // > 0: stop after this step as if interrupted (checkpoint, then --resume)
  bool quiet = false;     // no progress lines (tests)
};

// The method's perturbation settings: its preset, then every key the config sets explicitly.
PerturbConfig perturb_config_from(const Config& cfg);
MarginConfig margin_config_from(const Config& cfg);
// The parameters an optimizer steps, in order: the backbone's (BatchNorm and PReLU tensors flagged
// for optim.no_decay_bn), then the class centres as "head.weight".
std::vector<ParamRef> model_param_refs(FaceModel& model);
// cfg with the values the run uses written in for the keys whose defaults depend on the method or
// the margin type (method.rho/adaptive/normalize/loss/head, head.m1/m2/m3).
Config resolved_config(const Config& cfg, const PerturbConfig& p, const MarginConfig& m);
struct TrainingSetOptions {
  bool resize = true;             // images not at the input size are resized (false: refused, naming the key)
  bool skip_undecodable = false;  // RecordIO: skip undecodable records (counted, reported) instead of stopping
};
// Opens a training set: a .rec file (train.idx beside it) or an image-folder root; `what` names
// the option in errors ("data.train", "--data").
std::shared_ptr<data::Dataset> open_training_set(const std::string& path, int64_t input_size,
                                                 const TrainingSetOptions& options = {},
                                                 const std::string& what = "data.train");
// "auto" (the GPU when this build has CUDA and one is visible, else the CPU), "cpu" or "cuda";
// `what` names the option in errors ("train.device", "--device").
Device resolve_device(const std::string& name, const std::string& what);
// Sets the CPU thread count (OpenMP; 0 = all cores).
void set_cpu_threads(int64_t threads);

// Runs training; returns the process exit code (0 also when interrupted by SIGINT/SIGTERM after
// writing a checkpoint). Errors are thrown as ff::Error.
int run_training(const Config& cfg, const TrainOptions& opts);

}  // namespace ff
