// Loading a state dict: every mismatch is refused with the tensor's name, and a refused load leaves
// the model exactly as it was.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

#include "engine/ops.h"
#include "models/face_model.h"

namespace ff {
namespace {

FaceModelConfig small() {
  FaceModelConfig c;
  c.backbone.arch = "r18";
  c.backbone.input_size = 32;
  c.backbone.width = 0.125;
  c.backbone.embedding_size = 16;
  c.num_classes = 5;
  return c;
}

std::map<std::string, Tensor> as_map(const NamedTensors& sd) {
  std::map<std::string, Tensor> m;
  for (auto& [name, t] : sd) m.emplace(name, t.clone());
  return m;
}

// Bytes of every tensor, to tell whether a load changed anything.
std::map<std::string, std::string> snapshot(const FaceModel& m) {
  std::map<std::string, std::string> out;
  for (auto& [name, t] : m.state_dict()) out[name] = std::string(static_cast<const char*>(t.raw()), t.nbytes());
  return out;
}

void expect_refused(FaceModel& target, const std::map<std::string, Tensor>& file,
                    std::initializer_list<const char*> parts) {
  const auto before = snapshot(target);
  try {
    target.load_state_dict(file, "ckpt.safetensors");
    ADD_FAILURE() << "load accepted a mismatched state dict";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const char* p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
  }
  EXPECT_EQ(snapshot(target), before) << "a refused load changed the model";
}

TEST(StateDict, LoadRoundTripsExactly) {
  FaceModelConfig c = small();
  FaceModel a(c);
  c.backbone.seed = 99;  // other initial weights
  FaceModel b(c);
  ASSERT_NE(snapshot(a), snapshot(b));
  b.load_state_dict(as_map(a.state_dict()), "a");
  EXPECT_EQ(snapshot(a), snapshot(b));
}

TEST(StateDict, MismatchesAreNamedAndLeaveTheModelUnchanged) {
  FaceModelConfig c = small();
  FaceModel source(c);
  c.backbone.seed = 5;
  FaceModel target(c);
  const auto good = as_map(source.state_dict());

  auto missing = good;
  missing.erase("layer3.1.conv2.weight");
  expect_refused(target, missing, {"ckpt.safetensors", "'layer3.1.conv2.weight' is missing"});

  auto no_head = good;
  no_head.erase("head.weight");
  expect_refused(target, no_head, {"'head.weight'", "missing"});

  auto reshaped = good;
  reshaped["bn1.running_var"] = Tensor::zeros({3});
  expect_refused(target, reshaped, {"'bn1.running_var' has shape [3]"});

  auto head_shape = good;
  head_shape["head.weight"] = Tensor::zeros({6, 16});
  expect_refused(target, head_shape, {"'head.weight' has shape [6, 16]", "[5, 16]"});

  auto int_for_float = good;
  int_for_float["fc.weight"] = Tensor::zeros(good.at("fc.weight").shape(), DType::I64);
  expect_refused(target, int_for_float, {"'fc.weight' has dtype i64"});

  auto extra = good;
  extra["layer9.0.conv1.weight"] = Tensor::zeros({1});
  expect_refused(target, extra, {"unexpected tensor 'layer9.0.conv1.weight'"});
}

TEST(StateDict, FloatCheckpointsConvertToTheModelsDtype) {
  FaceModel a(small());
  auto f64 = as_map(a.state_dict());
  for (auto& [name, t] : f64)
    if (t.dtype() == DType::F32) t = t.to(DType::F64);
  FaceModelConfig c = small();
  c.backbone.seed = 3;
  FaceModel b(c);
  b.load_state_dict(f64, "f64 file");
  EXPECT_EQ(snapshot(a), snapshot(b)) << "f32 -> f64 -> f32 is exact";
}

}  // namespace
}  // namespace ff
