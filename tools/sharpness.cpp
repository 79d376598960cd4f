// flatface-sharpness: how much the training loss of a model rises under a weight perturbation of
// radius rho, in the worst direction (one ascent step, as the method takes) and in random ones.
#include <cmath>
#include <nlohmann/json.hpp>

#include "data/loader.h"
#include "engine/atomic_file.h"
#include "engine/ops.h"
#include "tools/common/checkpoint.h"
#include "tools/common/cli.h"
#include "tools/common/trainer.h"

namespace {

// Parameters that are perturbed: the backbone's trainable tensors and, with `head`, the centres.
std::vector<ff::Tensor> perturbed_tensors(ff::FaceModel& m, bool head) {
  std::vector<ff::Tensor> ts;
  for (auto& [name, t] : m.backbone().named_parameters()) ts.push_back(t);
  if (head) ts.push_back(m.centres());
  return ts;
}

double sq_norm(const std::vector<ff::Tensor>& ts) {
  double s = 0;
  for (auto& t : ts) s += ff::sum(ff::square(t.to(ff::DType::F64))).item();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measure the sharpness of a trained model: the loss increase under a weight perturbation of "
               "radius rho, worst case (one gradient-ascent step) and averaged over random directions.",
               "flatface-sharpness"};
  std::string model_path, data_path, json_path;
  double rho = 0.05;
  int64_t batches = 4, batch_size = 64, directions = 4, seed = 0, threads = 0;
  std::string device = "auto";
  bool head = true;
  app.add_option("-m,--model", model_path, "checkpoint folder or model .safetensors")->required();
  app.add_option("-d,--data", data_path, "training set (train.rec or image folder) the loss is measured on")
      ->required();
  app.add_option("--rho", rho, "perturbation radius (global L2 norm)")->check(ff::positive_number());
  app.add_option("--batches", batches, "batches averaged over")->check(ff::positive_int());
  app.add_option("--batch-size", batch_size, "batch size")->check(ff::positive_int());
  app.add_option("--directions", directions, "random directions per batch")->check(ff::positive_int());
  app.add_option("--head", head, "perturb the class centres too (true/false)");
  app.add_option("--seed", seed, "seed of the batch choice and the random directions");
  app.add_option("--json", json_path, "also write the results as JSON here");
  app.add_option("--threads", threads, "CPU threads (0 = all cores)")->check(ff::thread_count());
  app.add_option("--device", device, "auto (the GPU when one is visible) | cpu | cuda");
  return ff::run_tool(app, argc, argv, [&] {
    const ff::Device dev = ff::resolve_device(device, "--device");
    ff::set_cpu_threads(threads);
    auto model = ff::load_model(model_path);
    model->to(dev);
    auto data = ff::open_training_set(data_path, model->config().backbone.input_size, {}, "--data");
    FF_CHECK(data->num_classes() == model->config().num_classes, data_path, " has ", data->num_classes(),
             " classes, the model's head has ", model->config().num_classes);
    ff::data::LoaderConfig lcfg;
    lcfg.batch_size = batch_size;
    lcfg.image_height = lcfg.image_width = (int)model->config().backbone.input_size;
    lcfg.seed = (uint64_t)seed;
    lcfg.augment.flip = false;
    ff::data::Loader loader(data, lcfg);
    // The loss as a function of the weights alone: BatchNorm uses its running statistics.
    model->backbone().train(false);
    auto params = perturbed_tensors(*model, head);
    ff::Rng rng((uint64_t)seed ^ 0x5a4fULL);
    double base = 0, worst = 0, random = 0;
    for (int64_t b = 0; b < batches; ++b) {
      ff::data::Batch batch = loader.next();
      std::vector<ff::Tensor> saved;
      for (auto& p : params) saved.push_back(p.clone()), p.zero_grad();
      ff::Tensor l0 = model->loss(batch.images, batch.labels).loss;
      l0.backward();
      double loss0 = l0.item();
      auto perturbed_loss = [&](const std::vector<ff::Tensor>& dirs, double scale) {
        ff::NoGradGuard ng;
        for (size_t i = 0; i < params.size(); ++i) ff::add_(params[i], dirs[i], scale);
        double l = model->loss(batch.images, batch.labels).loss.item();
        for (size_t i = 0; i < params.size(); ++i) params[i].copy_from(saved[i]);  // exact restore
        return l;
      };
      std::vector<ff::Tensor> grads;
      for (auto& p : params)
        grads.push_back(p.grad().defined() ? p.grad() : ff::Tensor::zeros(p.shape(), p.dtype(), p.device()));
      double gnorm = std::sqrt(sq_norm(grads));
      double lw = perturbed_loss(grads, rho / (gnorm + 1e-12));
      double lr_sum = 0;
      for (int64_t d = 0; d < directions; ++d) {
        std::vector<ff::Tensor> dirs;
        // Drawn on the host from one stream, so a GPU run takes the directions a CPU run takes.
        for (auto& p : params) dirs.push_back(ff::randn(p.shape(), rng).to(p.device()));
        lr_sum += perturbed_loss(dirs, rho / std::sqrt(sq_norm(dirs)));
      }
      base += loss0, worst += lw - loss0, random += lr_sum / directions - loss0;
      std::printf("batch %lld/%lld: loss %.4f, worst-case rise %.4f, random rise %.4f\n", (long long)b + 1,
                  (long long)batches, loss0, lw - loss0, lr_sum / directions - loss0);
      std::fflush(stdout);
    }
    base /= batches, worst /= batches, random /= batches;
    std::printf("sharpness at rho %.3g%s: loss %.4f, worst-case rise %.4f, random-direction rise %.4f\n", rho,
                head ? " (backbone + class centres)" : " (backbone)", base, worst, random);
    if (!json_path.empty()) {
      nlohmann::json j = {{"model", model_path}, {"data", data_path}, {"rho", rho}, {"head", head},
                          {"batches", batches}, {"loss", base}, {"worst_rise", worst}, {"random_rise", random}};
      std::string text = j.dump(2) + "\n";
      ff::write_file_atomically(json_path, [&](ff::FileWriter& w) { w.write(text.data(), text.size()); });
    }
    return 0;
  });
}
