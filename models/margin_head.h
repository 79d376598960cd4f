// The margin head's loss: normalised-weight margin softmax cross-entropy (ArcFace, CosFace,
// combined) or the AACE perturbation loss, fused into one differentiable op over embeddings and
// class centres. The math and its choices are documented in kernels/cpu/margin_softmax.h.
#pragma once

#include <string>

#include "engine/tensor.h"
#include "kernels/cpu/margin_softmax.h"

namespace ff {

using MarginType = cpu::MarginType;
using MarginGrad = cpu::MarginGrad;
using MarginLoss = cpu::MarginLoss;
using MarginConfig = cpu::MarginParams;

// Configurations with the recipe's defaults (FLATFACE.md). Combined has no default there; 1.0,
// 0.3, 0.2 is the combined margin of the common face-recognition recipe.
MarginConfig arcface_config(double s = 64, double m2 = 0.5);
MarginConfig cosface_config(double s = 64, double m3 = 0.4);
MarginConfig combined_config(double s = 64, double m1 = 1.0, double m2 = 0.3, double m3 = 0.2);

// Names as configuration files spell them: arcface|cosface|combined, exact|straight_through,
// margin|aace. Parsing throws ff::Error listing the valid names.
MarginType parse_margin_type(const std::string& name);
MarginGrad parse_margin_grad(const std::string& name);
MarginLoss parse_margin_loss(const std::string& name);
const char* margin_type_name(MarginType t);
const char* margin_grad_name(MarginGrad g);
const char* margin_loss_name(MarginLoss l);

// Throws ff::Error when the configuration is not usable: s > 0, m1 > 0, 0 <= m2 < π, finite
// values, and each type's unused margins at their neutral value (m1 = 1, ArcFace m3 = 0,
// CosFace m2 = 0), so a margin meant for another type is not silently ignored.
void check_margin_config(const MarginConfig& cfg);

struct MarginLossResult {
  Tensor loss;        // scalar, mean over the batch; differentiable w.r.t. embeddings and centres
  Tensor target_cos;  // [B] cosine to the target centre before the margin (no gradient)
  Tensor correct;     // [B] i64: 1 where the target's cosine is strictly the largest (no gradient)
};

// embeddings [B, d] (not normalised), centres [C, d], labels i64 [B] in [0, C); f32 or f64.
// The loss is NaN (never an exception) when an input holds NaN or Inf, so a trainer can detect it.
// Memory: one [B, C] buffer. When a gradient is wanted (recording on and an input requiring it),
// forward already turns the logits into dL/dcos in that buffer (the loss is a scalar, so the
// upstream gradient only scales it) and keeps it for backward, which is then two GEMMs. Backward
// reads the embeddings and centres as they are then, so do not change them in between.
MarginLossResult margin_softmax_cross_entropy(const Tensor& embeddings, const Tensor& centres, const Tensor& labels,
                                              const MarginConfig& cfg);

// On CUDA the op keeps its [B, block] logits buffer under this many bytes (default 1 GiB): more
// classes run in column blocks, the logits recomputed in backward. Tests lower it to reach blocks.
void set_margin_logits_limit(size_t bytes);
size_t margin_logits_limit();

}  // namespace ff
