// The whole model and the whole training step against an independent PyTorch implementation
// (tests/reference/make_reference.py, fixtures committed beside it): iResNet-18 forward/backward
// with the ArcFace loss, three steps of every method, and an iResNet-50 PyTorch state_dict.
//
// The reference computes in float64 from float32-valued weights and inputs, so our f64 run must
// agree to rounding, and our f32 run to f32 rounding (as amplified by the computation). Errors are
// per tensor |ours − ref| / max(|ref|, 1e-3 · largest |ref| of its group) (see reference_util.h).
// Tolerances:
//  - f64, results stored in f64 (embeddings, losses, BatchNorm statistics): 1e-9. Both sides
//    compute in f64 (≈1e-16); summation orders differ and three steps amplify rounding (PyTorch's
//    own f32 runs show amplification up to ~1e5 relative to the f32 epsilon), leaving margin.
//  - f64, results stored rounded to f32 (gradients, weight changes, momentum buffers): 1e-6, 16x
//    the storage rounding (6e-8); a wrong formula anywhere gives 1e-3 or more.
//  - f32, one pass from identical weights: about 60x what PyTorch's own f32 computation deviates
//    from its f64 one (the script stores that in the fixture metadata): gradients 1.5e-5 -> 1e-3,
//    embeddings 1.3e-6 -> 1e-4; the ArcFace loss 1e-5, the first step's losses and norm 1e-4.
//  - f32 after three steps: the steps compound the rounding of the f32 logits (s·δcos ≈ 64·6e-7)
//    on a sharp loss; PyTorch's own f32 runs deviate from its f64 runs by up to 1.6e-2 (ours less,
//    1.2e-4), hence 5e-2. Method aace is worse (ours 5.6e-2): its unnormalised ε = −ρ·∇L_AACE is
//    proportional to p_y of the most confident row, so the f32 error of that row's logits goes
//    straight into ε; 0.25. These catch gross f32-only faults; the f64 runs are the precise check.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "engine/ops.h"
#include "optim/flatface_step.h"
#include "tests/models/reference_util.h"

namespace ff::test {
namespace {

constexpr double kTolF64 = 1e-9;          // vs float64-stored results
constexpr double kTolF64Stored32 = 1e-6;  // vs float32-stored results

const char* dname(DType dt) { return dt == DType::F64 ? "f64" : "f32"; }

// BatchNorm buffers: "<module>.running_mean", ".running_var", ".num_batches_tracked".
bool is_bn_buffer(const std::string& name) {
  return name.ends_with(".running_mean") || name.ends_with(".running_var") || name.ends_with(".num_batches_tracked");
}

TEST(Reference, IResNet18ForwardBackwardWithArcFace) {
  const Fixture f = load_fixture("forward_backward.safetensors");
  for (DType dt : {DType::F64, DType::F32}) {
    SCOPED_TRACE(dname(dt));
    std::printf("[reference] forward/backward, %s %s width %s input %s: %s\n", f.str("arch").c_str(), dname(dt),
                f.str("width").c_str(), f.str("input_size").c_str(), f.str("margin").c_str());
    FaceModelConfig cfg;
    cfg.backbone = backbone_config(f);
    cfg.num_classes = (int64_t)f.num("num_classes");
    cfg.margin = arcface_config(f.num("s"), f.num("m2"));
    FaceModel model(cfg);
    // The state_dict and centres as PyTorch named them; load_state_dict refuses missing and extra names.
    model.load_state_dict(f.without({"input.", "out.", "grad.", "after."}), "forward_backward.safetensors");
    retype(model, dt);

    // The gradient is the reference's for exactly the trainable tensors (features.weight is frozen).
    std::set<std::string> ours_trainable, ref_trainable;
    for (const ParamRef& p : face_params(model)) ours_trainable.insert(p.name);
    for (const auto& [name, t] : f.tensors)
      if (name.rfind("grad.", 0) == 0) ref_trainable.insert(name.substr(5));
    EXPECT_EQ(ours_trainable, ref_trainable);

    Tensor x = f.at("input.images").to(dt), labels = f.at("input.labels");
    model.backbone().train(true);
    Tensor emb = model.backbone().forward(x);
    MarginLossResult r = margin_softmax_cross_entropy(emb, model.centres(), labels, cfg.margin);
    r.loss.backward();

    const bool f64 = dt == DType::F64;
    expect_group(std::string("embeddings ") + dname(dt), {{"embeddings", emb, f.at("out.embeddings")}},
                 f64 ? kTolF64 : 1e-4);
    expect_scalar(std::string("ArcFace loss ") + dname(dt), r.loss.item(), f.at("out.loss").item(),
                  f64 ? kTolF64 : 1e-5);
    std::vector<Pair> grads;
    for (const ParamRef& p : face_params(model)) grads.push_back({p.name, p.param.grad(), f.at("grad." + p.name)});
    for (const Pair& g : grads) ASSERT_TRUE(g.ours.defined()) << "no gradient for " << g.name;
    std::printf("[reference] (PyTorch's own f32 gradients deviate by %s from its f64 ones)\n",
                f.str("torch_f32_worst_grad_rel_err").c_str());
    expect_group(std::string("gradients ") + dname(dt), grads, f64 ? kTolF64Stored32 : 1e-3);

    std::vector<Pair> stats;
    for (auto& [name, t] : model.backbone().state_dict()) {
      if (!is_bn_buffer(name)) continue;
      if (t.dtype() == DType::I64) {
        EXPECT_EQ(t.item(), f.at("after." + name).item()) << name;
      } else {
        stats.push_back({name, t, f.at("after." + name)});
      }
    }
    expect_group(std::string("running statistics after the pass ") + dname(dt), stats, f64 ? kTolF64 : 1e-4);
  }
}

PerturbConfig perturb_config(const Fixture& f) {
  PerturbConfig c = PerturbConfig::preset(parse_method(f.str("method")));
  c.loss = parse_perturb_loss(f.str("perturb_loss"));
  // The reference's hyperparameters are the presets' (FLATFACE.md defaults): check, don't assume.
  if (c.perturbs()) {
    EXPECT_EQ(c.rho, f.num("rho"));
    EXPECT_EQ(c.adaptive, f.str("adaptive") == "True");
    EXPECT_EQ(c.normalize, f.str("normalize") == "True");
    EXPECT_EQ(c.head, f.str("head") == "True");
  }
  return c;
}

MarginConfig margin_config(const Fixture& f) {
  const std::string& m = f.str("margin");
  if (m == "cosface") return cosface_config(f.num("s"), f.num("m3"));
  EXPECT_EQ(m, "arcface");
  return arcface_config(f.num("s"), f.num("m2"));
}

// One run of the reference per test, so that ctest can spread them over cores.
class ReferenceSteps : public ::testing::TestWithParam<const char*> {};

TEST_P(ReferenceSteps, ThreeStepsMatch) {
  const std::string run = GetParam();
  const Fixture init = load_fixture("steps_init.safetensors");
  const int steps = (int)init.num("steps");
  const double lr = init.num("lr");
  const Fixture ref = load_fixture("steps_" + run + ".safetensors");
  for (DType dt : {DType::F64, DType::F32}) {
    SCOPED_TRACE(msg(run, " ", dname(dt)));
    std::printf("[reference] %d steps of %s (%s, perturbation loss %s), %s\n", steps, run.c_str(),
                ref.str("margin").c_str(), ref.str("perturb_loss").c_str(), dname(dt));
    FaceModelConfig cfg;
    cfg.backbone = backbone_config(init);
    cfg.num_classes = (int64_t)init.num("num_classes");
    cfg.margin = margin_config(ref);
    FaceModel model(cfg);
    model.load_state_dict(init.without({"batch"}), "steps_init.safetensors");
    retype(model, dt);
    std::vector<ParamRef> params = face_params(model);
    std::vector<Tensor> w0;
    for (const ParamRef& p : params) w0.push_back(p.param.clone());

    GroupingOptions grouping;
    grouping.weight_decay = init.num("weight_decay");
    SgdOptions sgd;
    sgd.momentum = init.num("momentum");
    Sgd opt(make_param_groups(params, grouping), sgd);
    FlatFaceStep step(opt, perturb_config(ref));
    std::vector<StepResult> results;
    for (int k = 0; k < steps; ++k) {
      Tensor x = init.at(msg("batch", k, ".images")).to(dt), y = init.at(msg("batch", k, ".labels"));
      results.push_back(step.step(k, lr, [&](const PassInfo& p) {
        MarginLoss kind = p.loss == PerturbLoss::Aace ? MarginLoss::Aace : MarginLoss::Margin;
        return model.train_pass(x, y, kind, p.update_bn_stats).loss.item();
      }));
    }

    const bool f64 = dt == DType::F64;
    const double tol_f32 = run == "aace" ? 0.25 : 5e-2;
    const double tol_delta = f64 ? kTolF64Stored32 : tol_f32;
    const double tol_momentum = f64 ? kTolF64Stored32 : tol_f32;
    const double tol_stats = f64 ? kTolF64 : tol_f32;
    if (!f64)
      std::printf("[reference] (PyTorch's own f32 run deviates by %s (weights), %s (momentum) from its f64 run)\n",
                  ref.str("torch_f32_delta_err").c_str(), ref.str("torch_f32_momentum_err").c_str());

    std::vector<Pair> deltas, momenta;
    for (size_t k = 0; k < params.size(); ++k)
      deltas.push_back({params[k].name, sub(params[k].param, w0[k]), ref.at("delta." + params[k].name)});
    for (auto& [name, t] : opt.state_tensors()) {
      const std::string suffix = ".momentum_buffer";
      ASSERT_TRUE(name.ends_with(suffix)) << name;
      const std::string param = name.substr(0, name.size() - suffix.size());
      momenta.push_back({param, t, ref.at("momentum." + param)});
    }
    EXPECT_EQ(momenta.size(), params.size());
    expect_group(msg("weights after ", steps, " steps (w - w0) ", dname(dt)), deltas, tol_delta);
    expect_group(msg("momentum buffers ", dname(dt)), momenta, tol_momentum);

    std::vector<Pair> stats;
    for (auto& [name, t] : model.backbone().state_dict()) {
      if (!is_bn_buffer(name)) continue;
      if (t.dtype() == DType::I64) {
        // One increment per step: the update pass must leave the running statistics alone.
        EXPECT_EQ(t.item(), ref.at(name).item()) << name;
      } else {
        stats.push_back({name, t, ref.at(name)});
      }
    }
    expect_group(msg("BatchNorm running statistics ", dname(dt)), stats, tol_stats);

    const Tensor& losses = ref.at("losses");
    const Tensor& norms = ref.at("grad_norm");
    for (int k = 0; k < steps; ++k) {
      // Step 0 starts from identical weights on both sides; later steps carry the amplified
      // rounding of the weights as well (in f32).
      const double tol = f64 ? kTolF64 : (k == 0 ? 1e-4 : tol_delta);
      expect_scalar(msg("step ", k, " gradient-pass loss ", dname(dt)), results[k].perturb_loss, losses.item(2 * k),
                    tol);
      expect_scalar(msg("step ", k, " update-pass loss ", dname(dt)), results[k].loss, losses.item(2 * k + 1), tol);
      expect_scalar(msg("step ", k, " perturbation norm ", dname(dt)), results[k].grad_norm, norms.item(k), tol,
                    1e-300);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Reference, ReferenceSteps,
                         ::testing::Values("sgd", "sam", "asam", "aace", "flatface", "flatface_cosface",
                                           "flatface_aace"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

TEST(Reference, IResNet50PyTorchStateDictGivesTheSameEmbeddings) {
  const Fixture io = load_fixture("r50_eval.safetensors");
  const std::string weights = fixture_path("r50_weights.safetensors");
  for (DType dt : {DType::F32, DType::F64}) {
    SCOPED_TRACE(dname(dt));
    auto net = make_backbone(backbone_config(io));
    net->load_state_dict(load_safetensors(weights), weights);
    for (auto& [name, t] : net->state_dict()) retype(t, dt);
    net->train(false);
    NoGradGuard no_grad;
    Tensor emb = net->forward(io.at("input.images").to(dt));
    std::printf("[reference] r50 eval embeddings (PyTorch's own f32 embeddings deviate by %s from f64)\n",
                io.str("torch_f32_embedding_rel_err").c_str());
    expect_group(msg("r50 embeddings, eval mode ", dname(dt)), {{"embeddings", emb, io.at("out.embeddings")}},
                 dt == DType::F64 ? kTolF64 : 1e-4);
  }
}

}  // namespace
}  // namespace ff::test
