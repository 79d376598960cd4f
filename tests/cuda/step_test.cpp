// The whole training step on CUDA against the same step on the CPU: an iResNet-18 (narrow, 32x32
// input) with its margin head, the same initial weights and batches on both devices, a few steps of
// each method; afterwards every weight, BatchNorm running statistic and momentum buffer, and every
// step's loss of both passes, must agree. In f64 the two devices differ only in summation order
// (cuDNN and cuBLAS against our loops), so the tolerance is tight; in f32, the training dtype, it
// allows the rounding of a few steps. Without a GPU every test skips with one line.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/device_hooks.h"
#include "engine/ops.h"
#include "optim/flatface_step.h"
#include "optim/optimizer.h"
#include "tests/models/reference_util.h"

#ifdef FLATFACE_HAVE_CUDA
#include "kernels/cuda/ops.h"
#endif

namespace ff::test {
namespace {

struct StepCase {
  StepCase(std::string m, MarginConfig mc = arcface_config(32.0, 0.5), std::optional<PerturbLoss> l = std::nullopt)
      : method(std::move(m)), margin(mc), loss(l) {}
  std::string method;
  MarginConfig margin;
  std::optional<PerturbLoss> loss;  // the method's own unless set
};

// A training run of `steps` steps on `dev`, from the same seed-determined model and batches.
struct Run {
  std::unique_ptr<FaceModel> model;
  std::unique_ptr<Sgd> opt;
  std::vector<double> losses;  // per step: gradient-pass loss, update-pass loss

  Run(const StepCase& c, DType dt, Device dev, int steps) {
    FaceModelConfig cfg;
    cfg.backbone.arch = "r18";
    cfg.backbone.input_size = 32;
    cfg.backbone.width = 0.125;
    cfg.backbone.embedding_size = 64;
    cfg.backbone.seed = 11;
    cfg.num_classes = 37;  // not a multiple of 32
    cfg.margin = c.margin;
    model = std::make_unique<FaceModel>(cfg);
    retype(*model, dt);
    model->to(dev);
    GroupingOptions g;
    g.weight_decay = 5e-4;
    opt = std::make_unique<Sgd>(make_param_groups(face_params(*model), g), SgdOptions{});
    PerturbConfig pc = PerturbConfig::preset(parse_method(c.method));
    if (c.loss) pc.loss = *c.loss;
    FlatFaceStep stepper(*opt, pc);
    Rng rng(5);
    for (int k = 0; k < steps; ++k) {
      const int64_t batch = 5;  // odd, and not a multiple of anything
      Tensor x = rand_uniform({batch, 3, 32, 32}, rng, -1, 1, dt).to(dev);
      Tensor y = Tensor::zeros({batch}, DType::I64);
      for (int64_t i = 0; i < batch; ++i) y.data<int64_t>()[i] = (int64_t)rng.below((uint64_t)cfg.num_classes);
      StepResult r = stepper.step(k, 0.1, [&](const PassInfo& p) {
        MarginLoss kind = p.loss == PerturbLoss::Aace ? MarginLoss::Aace : MarginLoss::Margin;
        return model->train_pass(x, y.to(dev), kind, p.update_bn_stats).loss.item();
      });
      losses.push_back(r.perturb_loss);
      losses.push_back(r.loss);
    }
    device_synchronize(dev);
  }
};

void expect_same_run(const StepCase& c, DType dt, double tol) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: skipping";
#ifdef FLATFACE_HAVE_CUDA
  cuda::set_allow_tf32(false);  // TF32 products would need an f32 tolerance of their own
#endif
  const int steps = 3;
  Run cpu(c, dt, Device::cpu(), steps), gpu(c, dt, Device::cuda(), steps);
  const std::string label = c.method + " " + margin_type_name(c.margin.type) +
                            (c.loss ? std::string(" ") + perturb_loss_name(*c.loss) + " loss" : "") + " " +
                            dtype_name(dt);

  EXPECT_EQ(gpu.model->centres().device(), Device::cuda()) << "the model did not move to the GPU";
  for (size_t i = 0; i < cpu.losses.size(); ++i)
    expect_scalar(label + " loss " + std::to_string(i), gpu.losses[i], cpu.losses[i], tol);

  std::vector<Pair> weights, buffers, momentum;
  NamedTensors ref = cpu.model->state_dict(), got = gpu.model->state_dict();
  ASSERT_EQ(ref.size(), got.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    bool trainable = ref[i].second.requires_grad();
    (trainable ? weights : buffers).push_back({ref[i].first, got[i].second, ref[i].second});
  }
  NamedTensors ref_m = cpu.opt->state_tensors(), got_m = gpu.opt->state_tensors();
  ASSERT_EQ(ref_m.size(), got_m.size());
  for (size_t i = 0; i < ref_m.size(); ++i) {
    EXPECT_EQ(got_m[i].second.device(), Device::cuda()) << got_m[i].first;
    momentum.push_back({ref_m[i].first, got_m[i].second, ref_m[i].second});
  }
  expect_group(label + " weights", weights, tol);
  expect_group(label + " buffers", buffers, tol);
  expect_group(label + " momentum", momentum, tol);
}

// Tolerances: f64 leaves only summation order (a few ulps, amplified by three steps); f32 allows
// ~1e-7 per op through ~60 layers and three steps of lr 0.1.
constexpr double kF64 = 1e-9, kF32 = 2e-3;

TEST(CudaStep, SgdF64) { expect_same_run({"sgd"}, DType::F64, kF64); }
TEST(CudaStep, SamF64) { expect_same_run({"sam"}, DType::F64, kF64); }
TEST(CudaStep, AsamF64) { expect_same_run({"asam"}, DType::F64, kF64); }
TEST(CudaStep, FlatFaceArcFaceF64) { expect_same_run({"flatface"}, DType::F64, kF64); }
TEST(CudaStep, FlatFaceCosFaceF64) { expect_same_run({"flatface", cosface_config(32.0, 0.35)}, DType::F64, kF64); }
TEST(CudaStep, FlatFaceAaceLossF64) {
  expect_same_run({"flatface", arcface_config(32.0, 0.5), PerturbLoss::Aace}, DType::F64, kF64);
}
TEST(CudaStep, AaceF64) { expect_same_run({"aace"}, DType::F64, kF64); }
TEST(CudaStep, FlatFaceF32) { expect_same_run({"flatface"}, DType::F32, kF32); }
TEST(CudaStep, SgdF32) { expect_same_run({"sgd"}, DType::F32, kF32); }

// A CUDA model's embeddings and loss without autograd (evaluation) match the CPU's.
TEST(CudaStep, EvalForwardMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: skipping";
  FaceModelConfig cfg;
  cfg.backbone.arch = "r18";
  cfg.backbone.input_size = 32;
  cfg.backbone.width = 0.125;
  cfg.backbone.embedding_size = 64;
  cfg.num_classes = 1;  // C = 1
  FaceModel a(cfg), b(cfg);
  retype(a, DType::F64);
  retype(b, DType::F64);
  b.to(Device::cuda());
  Rng rng(3);
  Tensor x = rand_uniform({1, 3, 32, 32}, rng, -1, 1, DType::F64);  // batch 1
  Tensor y = Tensor::zeros({1}, DType::I64);
  NoGradGuard no_grad;
  a.backbone().train(false);
  b.backbone().train(false);
  Tensor ea = a.backbone().forward(x), eb = b.backbone().forward(x.to(Device::cuda()));
  expect_group("eval embeddings f64", {{"embedding", eb, ea}}, kF64);
  FaceModel::Loss la = a.loss(x, y), lb = b.loss(x, y);
  expect_scalar("eval loss f64 (C = 1)", lb.loss.item(), la.loss.item(), kF64, 1e-12);
  EXPECT_EQ(la.accuracy, lb.accuracy);
}

}  // namespace
}  // namespace ff::test
