// Helpers of the PyTorch reference comparison (reference_test.cpp): fixtures, f64 models, and the
// per-group error measure.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "models/face_model.h"
#include "optim/param_groups.h"

namespace ff::test {

struct Fixture {
  std::map<std::string, Tensor> tensors;
  SafetensorsMetadata meta;

  const Tensor& at(const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw Error("reference fixture has no tensor '" + name + "'");
    return it->second;
  }
  const std::string& str(const std::string& key) const {
    auto it = meta.find(key);
    if (it == meta.end()) throw Error("reference fixture has no metadata '" + key + "'");
    return it->second;
  }
  double num(const std::string& key) const { return std::stod(str(key)); }
  // The tensors whose names do not start with one of `prefixes` (a state_dict stored beside inputs
  // and results).
  std::map<std::string, Tensor> without(const std::vector<std::string>& prefixes) const {
    std::map<std::string, Tensor> out;
    for (const auto& [name, t] : tensors) {
      bool skip = false;
      for (const std::string& p : prefixes) skip |= name.rfind(p, 0) == 0;
      if (!skip) out.emplace(name, t);
    }
    return out;
  }
};

// A fixture file in tests/reference, or in FLATFACE_REFERENCE_DIR when set (fixtures regenerated
// elsewhere: tests/reference/check_regenerated.sh).
inline std::string fixture_path(const std::string& file) {
  const char* dir = std::getenv("FLATFACE_REFERENCE_DIR");
  return (dir && *dir ? std::string(dir) : std::string(FLATFACE_SOURCE_DIR) + "/tests/reference") + "/" + file;
}

inline Fixture load_fixture(const std::string& file) {
  Fixture f;
  f.tensors = load_safetensors(fixture_path(file), &f.meta);
  return f;
}

inline BackboneConfig backbone_config(const Fixture& f) {
  BackboneConfig c;
  c.arch = f.str("arch");
  c.width = f.num("width");
  c.input_size = (int64_t)f.num("input_size");
  c.embedding_size = (int64_t)f.num("embedding_size");
  c.dropout = 0.0;  // the reference's nn.Dropout(p=0)
  return c;
}

// The engine builds models in f32; this re-types one tensor in place (value converted, gradient
// dropped), so every module and optimizer holding it sees an f64 tensor. i64 tensors stay.
inline void retype(const Tensor& t, DType dt) {
  if (t.dtype() == dt || t.dtype() == DType::I64) return;
  Tensor c = t.to(dt);
  TensorImpl& impl = t.impl();
  impl.storage = c.impl().storage;
  impl.offset = c.impl().offset;
  impl.dtype = dt;
  impl.grad.reset();
}

inline void retype(FaceModel& m, DType dt) {
  for (auto& [name, t] : m.state_dict()) retype(t, dt);
}

// What the optimizer steps: every trainable backbone tensor, then the class centres.
inline std::vector<ParamRef> face_params(FaceModel& m) {
  std::vector<ParamRef> out;
  for (auto& [name, t] : m.backbone().named_parameters()) out.push_back({name, t, false, false});
  out.push_back({"head.weight", m.centres(), true, false});
  return out;
}

inline double frobenius(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// One tensor of ours against the reference's.
struct Pair {
  std::string name;
  Tensor ours, ref;
};

// Compares a group of tensors: error = |ours − ref| / max(|ref|, 1e-3 · largest |ref| of the group)
// (Frobenius norms). The floor keeps tensors whose reference is zero by construction (a bias
// feeding a training-mode BatchNorm has gradient exactly 0) from dividing rounding noise by ~0,
// while still holding them to 1e-3 of the group's scale. Prints and returns the worst error.
inline double expect_group(const std::string& label, const std::vector<Pair>& pairs, double tol) {
  double largest = 0;
  for (const Pair& p : pairs) largest = std::max(largest, frobenius(p.ref.to_vector()));
  const double floor = 1e-3 * largest;
  double worst = 0;
  std::string worst_name;
  for (const Pair& p : pairs) {
    EXPECT_EQ(p.ours.shape(), p.ref.shape()) << label << ": " << p.name;
    if (p.ours.shape() != p.ref.shape()) continue;
    std::vector<double> a = p.ours.to_vector(), b = p.ref.to_vector();
    for (size_t i = 0; i < a.size(); ++i) a[i] -= b[i];
    const double err = frobenius(a) / std::max(frobenius(b), floor);
    EXPECT_LE(err, tol) << label << ": " << p.name;  // NaN fails too
    if (!(err <= worst)) {
      worst = err;
      worst_name = p.name;
    }
  }
  std::printf("[reference] %-44s %3zu tensors, worst error %.2e (%s), tolerance %.2g\n", label.c_str(), pairs.size(),
              worst, worst_name.c_str(), tol);
  return worst;
}

// Scalar comparison, relative to max(|ref|, floor).
inline void expect_scalar(const std::string& label, double ours, double ref, double tol, double floor = 1e-300) {
  const double err = std::fabs(ours - ref) / std::max(std::fabs(ref), floor);
  std::printf("[reference] %-44s ours %.12g, reference %.12g, error %.2e, tolerance %.2g\n", label.c_str(), ours, ref,
              err, tol);
  EXPECT_LE(err, tol) << label;
}

}  // namespace ff::test
