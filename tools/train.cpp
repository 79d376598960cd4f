// flatface-train: trains a face-recognition model from a TOML config plus key=value overrides.
#include "tools/common/cli.h"
#include "tools/common/trainer.h"

int main(int argc, char** argv) {
  CLI::App app{"Train an iResNet / MobileFaceNet with an ArcFace/CosFace head using FlatFace or a baseline "
               "(sgd, sam, asam, aace).\nExample: flatface-train -c configs/synth.toml method.name=sgd train.steps=200",
               "flatface-train"};
  std::string config_path;
  std::vector<std::string> overrides;
  ff::TrainOptions opts;
  bool no_shuffle = false, no_flip = false, help_config = false;
  int64_t steps = 0;
  app.add_option("-c,--config", config_path, "TOML config file (see configs/)")->check(CLI::ExistingFile);
  app.add_option("overrides", overrides, "config overrides key=value, e.g. method.rho=0.1 train.output=runs/x");
  app.add_flag("--resume", opts.resume, "continue from the last checkpoint in train.output, exactly");
  app.add_option("--init", opts.init, "start from this checkpoint's weights (folder or .safetensors)");
  app.add_option("--steps", steps, "stop after N optimizer steps (same as train.steps=N)");
  app.add_flag("--no-shuffle", no_shuffle, "keep the data order (same as data.shuffle=false)");
  app.add_flag("--no-flip", no_flip, "no random horizontal flip (same as data.flip=false)");
  app.add_option("--stop-at", opts.stop_at, "stop after step N as if interrupted (checkpoint; continue with --resume)");
  app.add_option("--save", opts.save, "also write the final model to this .safetensors file");
  app.add_flag("--quiet", opts.quiet, "no progress output");
  app.add_flag("--help-config", help_config, "list every config key with its default and meaning");
  return ff::run_tool(app, argc, argv, [&] {
    if (help_config) {
      std::printf("Config keys (TOML sections [data] [model] [head] [method] [optim] [train]):\n%s",
                  ff::Config::help().c_str());
      return 0;
    }
    ff::Config cfg;
    if (!config_path.empty()) cfg.load_toml(config_path);
    for (auto& o : overrides) cfg.set(o);
    FF_CHECK(steps >= 0, "--steps ", steps, " must be >= 0");
    if (steps > 0) cfg.set("train.steps=" + std::to_string(steps));
    if (no_shuffle) cfg.set("data.shuffle=false");
    if (no_flip) cfg.set("data.flip=false");
    return ff::run_training(cfg, opts);
  });
}
