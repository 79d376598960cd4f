// A face-recognition model as trained here: backbone + margin head (class centres), the loss of
// one pass of a step, and its checkpoint files.
#pragma once

#include <memory>
#include <string>

#include "models/backbone.h"
#include "models/margin_head.h"

namespace ff {

struct FaceModelConfig {
  BackboneConfig backbone;
  int64_t num_classes = 0;
  MarginConfig margin = arcface_config();
};

class FaceModel {
 public:
  explicit FaceModel(const FaceModelConfig& cfg);

  Backbone& backbone() { return *backbone_; }
  // Class centres [C, d], initialised N(0, 0.01); checkpoint name "head.weight".
  Tensor& centres() { return centres_; }
  const FaceModelConfig& config() const { return cfg_; }
  // Moves backbone and class centres to device d (before an optimizer is made for them).
  void to(Device d);
  Device device() const { return centres_.device(); }

  struct Loss {
    Tensor loss;
    double accuracy = 0;  // fraction of the batch whose target cosine is the largest
  };
  // Forward and margin loss of one batch; images [N, 3, S, S] normalised, labels i64 [N], each on
  // the model's device or the CPU (copied over).
  Loss loss(const Tensor& images, const Tensor& labels, MarginLoss kind = MarginLoss::Margin);
  // Forward + backward of one pass of a training step, in training mode; `update_bn_stats` false
  // normalises with batch statistics but leaves the running ones untouched (FlatFace update
  // pass).
  Loss train_pass(const Tensor& images, const Tensor& labels, MarginLoss kind, bool update_bn_stats);

  // Backbone state_dict under the PyTorch iResNet names plus "head.weight".
  NamedTensors state_dict() const;
  void load_state_dict(const std::map<std::string, Tensor>& tensors, const std::string& source, bool with_head = true);

 private:
  FaceModelConfig cfg_;
  std::unique_ptr<Backbone> backbone_;
  Tensor centres_;
};

}  // namespace ff
