// Face backbones: iResNet r18..r200 and MobileFaceNet, with PyTorch state_dict names.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/module.h"

namespace ff {

struct BackboneConfig {
  std::string arch = "r50";  // r18 r34 r50 r100 r200 mbf
  int64_t input_size = 112;  // any multiple of 16
  double width = 1.0;        // multiplies the stage widths (64/128/256/512)
  int64_t embedding_size = 512;
  double dropout = 0.0;       // before fc
  uint64_t seed = 0;          // initialisation
};

class Backbone : public Module {
 public:
  // x [N, 3, S, S] normalised images -> embeddings [N, embedding_size]
  virtual Tensor forward(const Tensor& x) = 0;
  virtual const BackboneConfig& config() const = 0;
  // Multiply-accumulates of one forward pass of one image (convolutions and fc).
  virtual int64_t macs() const = 0;
  Rng& dropout_rng() { return dropout_rng_; }

 protected:
  Rng dropout_rng_{0};
};

std::unique_ptr<Backbone> make_backbone(const BackboneConfig& cfg);
std::vector<std::string> backbone_names();
// The iResNet of a state_dict saved without FlatFace's metadata (a PyTorch model converted to
// safetensors): depth from the block names, width from conv1, embedding and input size from fc.
BackboneConfig infer_iresnet_config(const std::map<std::string, Tensor>& tensors, const std::string& source);

}  // namespace ff
