// Checkpoints on disk. A checkpoint is a folder holding model.safetensors (backbone under the
// PyTorch iResNet names + head.weight, with the model's shape in the metadata) and, for training
// runs, state.safetensors (optimizer state, step, data position, RNG, config). The folder is
// written under a temporary name and renamed into place, so a crash never leaves a half one.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/loader.h"
#include "models/face_model.h"
#include "optim/optimizer.h"

namespace ff {

struct TrainingState {
  int64_t step = 0;
  data::LoaderPosition position;
  std::array<uint64_t, 4> dropout_rng{};
  std::string config_toml;  // the resolved config of the run
};

// Model metadata stored in model.safetensors, enough to rebuild the model without the config.
std::map<std::string, std::string> model_metadata(const FaceModelConfig& cfg);
FaceModelConfig model_config_from_metadata(const std::map<std::string, std::string>& meta, const std::string& source);

// Writes `dir` (replacing an existing checkpoint of that name atomically). `opt`/`state` may be
// null for a model-only checkpoint.
void save_checkpoint(const std::string& dir, FaceModel& model, const Optimizer* opt, const TrainingState* state);

// Writes only model.safetensors to `path` (atomic): what --save and export produce.
void save_model_file(const std::string& path, FaceModel& model);

// Loads a model from a checkpoint folder or a model .safetensors file; the model's shape comes
// from the file's metadata. Every tensor is checked by name, shape and dtype.
std::unique_ptr<FaceModel> load_model(const std::string& path);
// Loads weights into an existing model (for --init); `with_head` false keeps the model's centres.
void load_weights(const std::string& path, FaceModel& model, bool with_head);
// Loads the optimizer state and returns the training state of a checkpoint folder.
TrainingState load_training_state(const std::string& dir, Optimizer& opt);

// Checkpoint folders of a run's output folder, oldest first ("<out>/checkpoints/step-00000100").
std::vector<std::string> list_checkpoints(const std::string& out_dir);
std::string checkpoint_dir(const std::string& out_dir, int64_t step);
// Removes all but the newest `keep` checkpoints.
void prune_checkpoints(const std::string& out_dir, int64_t keep);

}  // namespace ff
