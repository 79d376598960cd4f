// Checkpoint folders: model.safetensors + state.safetensors, written under a temporary name and
// renamed into place; loading checks every tensor and says which one is wrong.
#include "tools/common/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/atomic_file.h"
#include "engine/safetensors.h"

namespace fs = std::filesystem;

namespace ff {

namespace {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kStateFile = "state.safetensors";

std::string get(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& source) {
  auto it = meta.find(key);
  FF_CHECK(it != meta.end(), source, ": metadata '", key, "' is missing (not a FlatFace model file?)");
  return it->second;
}

// The model file of a checkpoint folder or the file itself; a run's output folder (which holds
// checkpoints/, not a model) is pointed at its newest checkpoint.
std::string existing_model_file(const std::string& path) {
  FF_CHECK(fs::exists(path), "checkpoint '", path, "' not found");
  if (!fs::is_directory(path)) return path;
  std::string file = (fs::path(path) / kModelFile).string();
  if (fs::exists(file)) return file;
  auto ckpts = list_checkpoints(path);
  FF_CHECK(ckpts.empty(), "'", path, "' is a run folder, not a checkpoint: give one of its checkpoints, e.g. ",
           ckpts.empty() ? "" : ckpts.back());
  throw Error(msg("checkpoint folder '", path, "' has no ", kModelFile));
}

}  // namespace

std::map<std::string, std::string> model_metadata(const FaceModelConfig& cfg) {
  const MarginConfig& m = cfg.margin;
  nlohmann::json j = {{"backbone", cfg.backbone.arch},
                      {"input_size", cfg.backbone.input_size},
                      {"width", cfg.backbone.width},
                      {"embedding_size", cfg.backbone.embedding_size},
                      {"dropout", cfg.backbone.dropout},
                      {"num_classes", cfg.num_classes},
                      {"margin", margin_type_name(m.type)},
                      {"s", m.s},
                      {"m1", m.m1},
                      {"m2", m.m2},
                      {"m3", m.m3},
                      {"margin_grad", margin_grad_name(m.grad)}};
  return {{"format", "flatface"}, {"flatface.model", j.dump()}};
}

FaceModelConfig model_config_from_metadata(const std::map<std::string, std::string>& meta, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(get(meta, "flatface.model", source));
    FaceModelConfig cfg;
    cfg.backbone.arch = j.at("backbone").get<std::string>();
    cfg.backbone.input_size = j.at("input_size").get<int64_t>();
    cfg.backbone.width = j.at("width").get<double>();
    cfg.backbone.embedding_size = j.at("embedding_size").get<int64_t>();
    cfg.backbone.dropout = j.at("dropout").get<double>();
    cfg.num_classes = j.at("num_classes").get<int64_t>();
    cfg.margin.type = parse_margin_type(j.at("margin").get<std::string>());
    cfg.margin.s = j.at("s").get<double>();
    cfg.margin.m1 = j.at("m1").get<double>();
    cfg.margin.m2 = j.at("m2").get<double>();
    cfg.margin.m3 = j.at("m3").get<double>();
    cfg.margin.grad = parse_margin_grad(j.at("margin_grad").get<std::string>());
    return cfg;
  } catch (const nlohmann::json::exception& e) {
    throw Error(msg(source, ": bad model metadata: ", e.what()));
  }
}

void save_model_file(const std::string& path, FaceModel& model) {
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  save_safetensors(path, model.state_dict(), model_metadata(model.config()));
}

void save_checkpoint(const std::string& dir, FaceModel& model, const Optimizer* opt, const TrainingState* state) {
  fs::path final_dir(dir), tmp = fs::path(dir + ".tmp-" + std::to_string(getpid()));
  fs::create_directories(final_dir.parent_path());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_model_file((tmp / kModelFile).string(), model);
  if (opt && state) {
    nlohmann::json j = {{"step", state->step},
                        {"epoch", state->position.epoch},
                        {"batch", state->position.batch},
                        {"dropout_rng", state->dropout_rng},
                        {"optimizer", opt->kind()},
                        {"scalars", opt->state_scalars()},
                        {"config", state->config_toml}};
    save_safetensors((tmp / kStateFile).string(), opt->state_tensors(), {{"flatface.state", j.dump()}});
  }
  // Swap the complete folder in: the old one (if any) is removed only after the new one is there.
  fs::path old = fs::path(dir + ".old-" + std::to_string(getpid()));
  bool had_old = fs::exists(final_dir);
  if (had_old) fs::rename(final_dir, old);
  fs::rename(tmp, final_dir);
  // The renames themselves survive a crash.
  sync_directory(final_dir.has_parent_path() ? final_dir.parent_path().string() : ".", dir);
  if (had_old) fs::remove_all(old);
}

std::unique_ptr<FaceModel> load_model(const std::string& path) {
  std::string file = existing_model_file(path);
  SafetensorsMetadata meta;
  auto tensors = load_safetensors(file, &meta);
  if (meta.count("flatface.model")) {
    auto model = std::make_unique<FaceModel>(model_config_from_metadata(meta, file));
    model->load_state_dict(tensors, file);
    return model;
  }
  // A backbone from elsewhere (e.g. a PyTorch iResNet state_dict saved as safetensors): rebuilt from
  // its tensor shapes; its class centres, if any, come along.
  FaceModelConfig cfg;
  cfg.backbone = infer_iresnet_config(tensors, file);
  auto head = tensors.find("head.weight");
  cfg.num_classes = head != tensors.end() && head->second.dim() == 2 ? head->second.shape()[0] : 1;
  auto model = std::make_unique<FaceModel>(cfg);
  model->load_state_dict(tensors, file, head != tensors.end());
  return model;
}

void load_weights(const std::string& path, FaceModel& model, bool with_head) {
  std::string file = existing_model_file(path);
  model.load_state_dict(load_safetensors(file), file, with_head);
}

TrainingState load_training_state(const std::string& dir, Optimizer& opt) {
  std::string file = (fs::path(dir) / kStateFile).string();
  FF_CHECK(fs::exists(file), dir, ": no ", kStateFile, " (a model-only checkpoint cannot be resumed)");
  SafetensorsMetadata meta;
  auto tensors = load_safetensors(file, &meta);
  TrainingState s;
  try {
    nlohmann::json j = nlohmann::json::parse(get(meta, "flatface.state", file));
    FF_CHECK(j.at("optimizer").get<std::string>() == opt.kind(), file, ": saved by optimizer '",
             j.at("optimizer").get<std::string>(), "', this run uses '", opt.kind(), "'");
    s.step = j.at("step").get<int64_t>();
    s.position = {j.at("epoch").get<int64_t>(), j.at("batch").get<int64_t>()};
    s.dropout_rng = j.at("dropout_rng").get<std::array<uint64_t, 4>>();
    s.config_toml = j.at("config").get<std::string>();
    NamedScalars scalars = j.at("scalars").get<NamedScalars>();
    NamedTensors named(tensors.begin(), tensors.end());
    opt.load_state(named, scalars);
  } catch (const nlohmann::json::exception& e) {
    throw Error(msg(file, ": bad training state: ", e.what()));
  }
  return s;
}

std::string checkpoint_dir(const std::string& out_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", (long long)step);
  return (fs::path(out_dir) / "checkpoints" / name).string();
}

std::vector<std::string> list_checkpoints(const std::string& out_dir) {
  std::vector<std::string> dirs;
  fs::path root = fs::path(out_dir) / "checkpoints";
  if (!fs::is_directory(root)) return dirs;
  for (auto& e : fs::directory_iterator(root)) {
    std::string name = e.path().filename().string();
    // Only complete folders: temporary ones carry a suffix after the step number.
    if (e.is_directory() && name.size() == 13 && name.rfind("step-", 0) == 0 &&
        name.find_first_not_of("0123456789", 5) == std::string::npos)
      dirs.push_back(e.path().string());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

void prune_checkpoints(const std::string& out_dir, int64_t keep) {
  auto dirs = list_checkpoints(out_dir);
  for (size_t i = 0; i + (size_t)std::max<int64_t>(keep, 1) < dirs.size(); ++i) fs::remove_all(dirs[i]);
}

}  // namespace ff
