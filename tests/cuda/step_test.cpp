// The whole training step on CUDA against the same step on the CPU: an iResNet-18 (narrow, 32x32
// input) with its margin head, the same initial weights and batches on both devices, a few steps of
// each method; afterwards every weight, BatchNorm running statistic and momentum buffer, and every
// step's loss of both passes, must agree. In f64 the two devices differ only in summation order
// (cuDNN and cuBLAS against our loops), so the tolerance is tight; in f32, the training dtype, it
// allows the rounding of a few steps. Without a GPU every test skips with one line.
#include <gtest/gtest.h>

#include <cmath>
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
  int64_t classes = 37;             // not a multiple of 4 (the margin kernels' scalar path) nor of 32
  bool adamw = false;               // else SGD with momentum
  double dropout = 0;               // before fc; the mask comes from the host generator on both devices
  size_t logits_limit = 0;          // > 0: the CUDA margin op's buffer limit (column blocks)
  StepCase& with_classes(int64_t c) { return classes = c, *this; }
  StepCase& with_adamw() { return adamw = true, *this; }
  StepCase& with_dropout(double p) { return dropout = p, *this; }
  StepCase& with_logits_limit(size_t b) { return logits_limit = b, *this; }
  std::string label(DType dt) const {
    return method + " " + margin_type_name(margin.type) + (loss ? std::string(" ") + perturb_loss_name(*loss) : "") +
           " C=" + std::to_string(classes) + (adamw ? " adamw" : "") + (dropout > 0 ? " dropout" : "") +
           (logits_limit ? " blocks" : "") + " " + dtype_name(dt);
  }
};

FaceModelConfig small_model(int64_t classes, const MarginConfig& margin = arcface_config(32.0, 0.5)) {
  FaceModelConfig cfg;
  cfg.backbone.arch = "r18";
  cfg.backbone.input_size = 32;
  cfg.backbone.width = 0.125;
  cfg.backbone.embedding_size = 64;
  cfg.backbone.seed = 11;
  cfg.num_classes = classes;
  cfg.margin = margin;
  return cfg;
}

// A training run of `steps` steps on `dev`, from the same seed-determined model and batches.
struct Run {
  std::unique_ptr<FaceModel> model;
  std::unique_ptr<Optimizer> opt;
  std::vector<double> losses;  // per step: gradient-pass loss, update-pass loss

  Run(const StepCase& c, DType dt, Device dev, int steps) {
    FaceModelConfig cfg = small_model(c.classes, c.margin);
    cfg.backbone.dropout = c.dropout;
    model = std::make_unique<FaceModel>(cfg);
    retype(*model, dt);
    model->to(dev);
    GroupingOptions g;
    g.weight_decay = 5e-4;
    auto groups = make_param_groups(face_params(*model), g);
    if (c.adamw)
      opt = std::make_unique<AdamW>(groups, AdamWOptions{});
    else
      opt = std::make_unique<Sgd>(groups, SgdOptions{});
    PerturbConfig pc = PerturbConfig::preset(parse_method(c.method));
    if (c.loss) pc.loss = *c.loss;
    FlatFaceStep stepper(*opt, pc);
    Rng rng(5);
    const double lr = c.adamw ? 1e-3 : 0.1;
    for (int k = 0; k < steps; ++k) {
      const int64_t batch = 5;  // odd, and not a multiple of anything
      Tensor x = rand_uniform({batch, 3, 32, 32}, rng, -1, 1, dt).to(dev);
      Tensor y = Tensor::zeros({batch}, DType::I64);
      for (int64_t i = 0; i < batch; ++i) y.data<int64_t>()[i] = (int64_t)rng.below((uint64_t)cfg.num_classes);
      StepResult r = stepper.step(k, lr, [&](const PassInfo& p) {
        MarginLoss kind = p.loss == PerturbLoss::Aace ? MarginLoss::Aace : MarginLoss::Margin;
        return model->train_pass(x, y, kind, p.update_bn_stats).loss.item();
      });
      losses.push_back(r.perturb_loss);
      losses.push_back(r.loss);
    }
    device_synchronize(dev);
  }
};

// Exact f32/f64 products for the comparison (TF32 would need tolerances of its own) and the
// requested logits limit, both restored afterwards.
class CudaSettings {
 public:
  explicit CudaSettings(size_t logits_limit) : limit_(margin_logits_limit()) {
#ifdef FLATFACE_HAVE_CUDA
    tf32_ = cuda::allow_tf32();
    cuda::set_allow_tf32(false);
#endif
    if (logits_limit) set_margin_logits_limit(logits_limit);
  }
  ~CudaSettings() {
#ifdef FLATFACE_HAVE_CUDA
    cuda::set_allow_tf32(tf32_);
#endif
    set_margin_logits_limit(limit_);
  }

 private:
  size_t limit_;
  bool tf32_ = false;
};

void expect_same_run(const StepCase& c, DType dt, double tol) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: skipping";
  CudaSettings settings(c.logits_limit);
  const int steps = 3;
  Run cpu(c, dt, Device::cpu(), steps), gpu(c, dt, Device::cuda(), steps);
  const std::string label = c.label(dt);

  EXPECT_EQ(gpu.model->centres().device(), Device::cuda()) << "the centres did not move to the GPU";
  EXPECT_EQ(gpu.model->backbone().device(), Device::cuda()) << "the backbone did not move to the GPU";
  for (size_t i = 0; i < cpu.losses.size(); ++i)
    expect_scalar(label + " loss " + std::to_string(i), gpu.losses[i], cpu.losses[i], tol);

  std::vector<Pair> weights, buffers, state;
  NamedTensors ref = cpu.model->state_dict(), got = gpu.model->state_dict();
  ASSERT_EQ(ref.size(), got.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    bool trainable = ref[i].second.requires_grad();
    (trainable ? weights : buffers).push_back({ref[i].first, got[i].second, ref[i].second});
  }
  NamedTensors ref_s = cpu.opt->state_tensors(), got_s = gpu.opt->state_tensors();
  ASSERT_EQ(ref_s.size(), got_s.size());
  for (size_t i = 0; i < ref_s.size(); ++i) {
    EXPECT_EQ(got_s[i].second.device(), Device::cuda()) << got_s[i].first;
    state.push_back({ref_s[i].first, got_s[i].second, ref_s[i].second});
  }
  expect_group(label + " weights", weights, tol);
  expect_group(label + " buffers", buffers, tol);
  expect_group(label + " optimizer state", state, tol);
}

// Tolerances: f64 leaves only summation order (a few ulps, amplified by three steps); f32 allows
// ~1e-7 per op through ~60 layers and three steps of lr 0.1.
constexpr double kF64 = 1e-9, kF32 = 2e-3;

TEST(CudaStep, SgdF64) { expect_same_run({"sgd"}, DType::F64, kF64); }
TEST(CudaStep, SamF64) { expect_same_run({"sam"}, DType::F64, kF64); }
TEST(CudaStep, AsamF64) { expect_same_run({"asam"}, DType::F64, kF64); }
TEST(CudaStep, AaceF64) { expect_same_run({"aace"}, DType::F64, kF64); }
TEST(CudaStep, FlatFaceArcFaceF64) { expect_same_run({"flatface"}, DType::F64, kF64); }
TEST(CudaStep, FlatFaceCosFaceF64) { expect_same_run({"flatface", cosface_config(32.0, 0.35)}, DType::F64, kF64); }
TEST(CudaStep, FlatFaceCombinedF64) {
  expect_same_run({"flatface", combined_config(32.0, 0.9, 0.4, 0.15)}, DType::F64, kF64);
}
TEST(CudaStep, FlatFaceAaceLossF64) {
  expect_same_run({"flatface", arcface_config(32.0, 0.5), PerturbLoss::Aace}, DType::F64, kF64);
}
// C a multiple of 4: the margin kernels' vectorised path.
TEST(CudaStep, FlatFaceVectorisedClassesF64) {
  expect_same_run(StepCase("flatface").with_classes(40), DType::F64, kF64);
}
// A logits buffer of 8 classes' worth: the op runs in column blocks and recomputes them in backward.
TEST(CudaStep, FlatFaceColumnBlocksF64) {
  expect_same_run(StepCase("flatface").with_logits_limit(5 * 8 * sizeof(double)), DType::F64, kF64);
}
TEST(CudaStep, FlatFaceAdamWF64) { expect_same_run(StepCase("flatface").with_adamw(), DType::F64, kF64); }
TEST(CudaStep, FlatFaceDropoutF64) { expect_same_run(StepCase("flatface").with_dropout(0.2), DType::F64, kF64); }
TEST(CudaStep, FlatFaceF32) { expect_same_run({"flatface"}, DType::F32, kF32); }
TEST(CudaStep, SgdF32) { expect_same_run({"sgd"}, DType::F32, kF32); }

// A CUDA model's embeddings, loss and accuracy without autograd (evaluation) match the CPU's, at
// batch 1 with one class (the loss is exactly 0 there: a check that nothing turns into NaN) and at
// batch 7 with 40 classes.
TEST(CudaStep, EvalForwardMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: skipping";
  CudaSettings settings(0);
  for (auto [batch, classes] : {std::pair<int64_t, int64_t>{1, 1}, {7, 40}}) {
    FaceModel a(small_model(classes)), b(small_model(classes));
    retype(a, DType::F64);
    retype(b, DType::F64);
    b.to(Device::cuda());
    Rng rng(3);
    Tensor x = rand_uniform({batch, 3, 32, 32}, rng, -1, 1, DType::F64);
    Tensor y = Tensor::zeros({batch}, DType::I64);
    for (int64_t i = 0; i < batch; ++i) y.data<int64_t>()[i] = (int64_t)rng.below((uint64_t)classes);
    NoGradGuard no_grad;
    a.backbone().train(false);
    b.backbone().train(false);
    const std::string label = "eval B=" + std::to_string(batch) + " C=" + std::to_string(classes);
    Tensor ea = a.backbone().forward(x), eb = b.backbone().forward(x.to(Device::cuda()));
    expect_group(label + " embeddings", {{"embedding", eb, ea}}, kF64);
    FaceModel::Loss la = a.loss(x, y), lb = b.loss(x, y);
    EXPECT_TRUE(std::isfinite(lb.loss.item())) << label;
    expect_scalar(label + " loss", lb.loss.item(), la.loss.item(), kF64, 1e-12);
    EXPECT_EQ(la.accuracy, lb.accuracy) << label;
  }
}

}  // namespace
}  // namespace ff::test
