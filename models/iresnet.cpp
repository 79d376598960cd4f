// iResNet (the face-recognition ResNet of ArcFace) and MobileFaceNet, laid out exactly like the
// PyTorch code the field uses so that state_dicts load both ways.
#include <cmath>
#include <map>

#include "engine/ops.h"
#include "models/backbone.h"

namespace ff {

namespace {

// insightface initialises every convolution with N(0, 0.1).
constexpr double kConvInitStd = 0.1;

int64_t scaled(int64_t base, double width) { return std::max<int64_t>(1, (int64_t)std::llround(base * width)); }

class IBasicBlock : public Module {
 public:
  IBasicBlock(int64_t inplanes, int64_t planes, int64_t stride, Rng& rng) {
    bn1_ = add_module("bn1", std::make_shared<BatchNorm>(inplanes));
    conv1_ = add_module("conv1", std::make_shared<Conv2d>(inplanes, planes, 3, 1, 1, 1, false, rng, kConvInitStd));
    bn2_ = add_module("bn2", std::make_shared<BatchNorm>(planes));
    prelu_ = add_module("prelu", std::make_shared<PReLU>(planes));
    conv2_ = add_module("conv2", std::make_shared<Conv2d>(planes, planes, 3, stride, 1, 1, false, rng, kConvInitStd));
    bn3_ = add_module("bn3", std::make_shared<BatchNorm>(planes));
    if (stride != 1 || inplanes != planes) {
      down_ = add_module("downsample", std::make_shared<Downsample>(inplanes, planes, stride, rng));
    }
  }
  Tensor forward(const Tensor& x) const {
    Tensor out = bn1_->forward(x);
    out = conv1_->forward(out);
    out = prelu_->forward(bn2_->forward(out));
    out = bn3_->forward(conv2_->forward(out));
    return add(out, down_ ? down_->forward(x) : x);
  }
  int64_t macs(int64_t in_size, int64_t inplanes, int64_t planes, int64_t stride) const {
    int64_t out_size = in_size / stride;
    int64_t m = in_size * in_size * planes * inplanes * 9 + out_size * out_size * planes * planes * 9;
    if (down_) m += out_size * out_size * planes * inplanes;
    return m;
  }

 private:
  // PyTorch's nn.Sequential(conv1x1, BatchNorm2d): children named "0" and "1".
  class Downsample : public Module {
   public:
    Downsample(int64_t cin, int64_t cout, int64_t stride, Rng& rng) {
      conv_ = add_module("0", std::make_shared<Conv2d>(cin, cout, 1, stride, 0, 1, false, rng, kConvInitStd));
      bn_ = add_module("1", std::make_shared<BatchNorm>(cout));
    }
    Tensor forward(const Tensor& x) const { return bn_->forward(conv_->forward(x)); }

   private:
    std::shared_ptr<Conv2d> conv_;
    std::shared_ptr<BatchNorm> bn_;
  };
  std::shared_ptr<BatchNorm> bn1_, bn2_, bn3_;
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<PReLU> prelu_;
  std::shared_ptr<Downsample> down_;
};

class Stage : public Module {  // layerK: blocks named "0", "1", ...
 public:
  std::vector<std::shared_ptr<IBasicBlock>> blocks;
  void add_block(std::shared_ptr<IBasicBlock> b) { blocks.push_back(add_module(std::to_string(blocks.size()), b)); }
};

const std::map<std::string, std::vector<int64_t>>& depths() {
  static const std::map<std::string, std::vector<int64_t>> d = {{"r18", {2, 2, 2, 2}},
                                                               {"r34", {3, 4, 6, 3}},
                                                               {"r50", {3, 4, 14, 3}},
                                                               {"r100", {3, 13, 30, 3}},
                                                               {"r200", {6, 26, 60, 6}}};
  return d;
}

class IResNet : public Backbone {
 public:
  explicit IResNet(const BackboneConfig& cfg) : cfg_(cfg) {
    auto it = depths().find(cfg.arch);
    FF_CHECK(it != depths().end(), "unknown iResNet depth '", cfg.arch, "'");
    FF_CHECK(cfg.input_size >= 16 && cfg.input_size % 16 == 0, "iResNet input size must be a multiple of 16, got ",
             cfg.input_size);
    FF_CHECK(cfg.width > 0, "iResNet width multiplier must be positive, got ", cfg.width);
    FF_CHECK(cfg.dropout >= 0 && cfg.dropout < 1, "dropout must be in [0, 1), got ", cfg.dropout);
    Rng rng(cfg.seed);
    dropout_rng_.reseed(cfg.seed ^ 0xd509ULL);
    for (int64_t w : {64, 128, 256, 512}) widths_.push_back(scaled(w, cfg.width));
    conv1_ = add_module("conv1", std::make_shared<Conv2d>(3, widths_[0], 3, 1, 1, 1, false, rng, kConvInitStd));
    bn1_ = add_module("bn1", std::make_shared<BatchNorm>(widths_[0]));
    prelu_ = add_module("prelu", std::make_shared<PReLU>(widths_[0]));
    int64_t inplanes = widths_[0];
    for (int k = 0; k < 4; ++k) {
      auto stage = add_module("layer" + std::to_string(k + 1), std::make_shared<Stage>());
      for (int64_t b = 0; b < it->second[k]; ++b) {
        stage->add_block(std::make_shared<IBasicBlock>(inplanes, widths_[k], b == 0 ? 2 : 1, rng));
        inplanes = widths_[k];
      }
      stages_.push_back(stage);
    }
    bn2_ = add_module("bn2", std::make_shared<BatchNorm>(widths_[3]));
    int64_t spatial = cfg.input_size / 16;
    fc_ = add_module("fc", std::make_shared<Linear>(widths_[3] * spatial * spatial, cfg.embedding_size, true, rng));
    features_ = add_module("features", std::make_shared<BatchNorm>(cfg.embedding_size));
    // The embedding BatchNorm's scale is fixed at 1 and not trained (as in the reference code).
    features_->weight().set_requires_grad(false);
  }

  Tensor forward(const Tensor& x) override {
    FF_CHECK(x.dim() == 4 && x.size(1) == 3 && x.size(2) == cfg_.input_size && x.size(3) == cfg_.input_size,
             cfg_.arch, ": expected input [N, 3, ", cfg_.input_size, ", ", cfg_.input_size, "], got ", x.str());
    Tensor h = prelu_->forward(bn1_->forward(conv1_->forward(x)));
    for (auto& stage : stages_)
      for (auto& block : stage->blocks) h = block->forward(h);
    h = bn2_->forward(h).flatten(1);
    h = dropout(h, cfg_.dropout, training(), dropout_rng_);
    return features_->forward(fc_->forward(h));
  }

  const BackboneConfig& config() const override { return cfg_; }

  int64_t macs() const override {
    int64_t s = cfg_.input_size, m = s * s * 3 * widths_[0] * 9, inplanes = widths_[0];
    for (size_t k = 0; k < stages_.size(); ++k) {
      for (size_t b = 0; b < stages_[k]->blocks.size(); ++b) {
        int64_t stride = b == 0 ? 2 : 1;
        m += stages_[k]->blocks[b]->macs(s, inplanes, widths_[k], stride);
        s /= stride;
        inplanes = widths_[k];
      }
    }
    return m + widths_[3] * s * s * cfg_.embedding_size;
  }

 private:
  BackboneConfig cfg_;
  std::vector<int64_t> widths_;
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<BatchNorm> bn1_, bn2_, features_;
  std::shared_ptr<PReLU> prelu_;
  std::vector<std::shared_ptr<Stage>> stages_;
  std::shared_ptr<Linear> fc_;
};

}  // namespace

std::unique_ptr<Backbone> make_mobilefacenet(const BackboneConfig& cfg);

std::unique_ptr<Backbone> make_backbone(const BackboneConfig& cfg) {
  if (cfg.arch == "mbf") return make_mobilefacenet(cfg);
  FF_CHECK(depths().count(cfg.arch), "unknown backbone '", cfg.arch, "' (choose one of r18 r34 r50 r100 r200 mbf)");
  return std::make_unique<IResNet>(cfg);
}

std::vector<std::string> backbone_names() { return {"r18", "r34", "r50", "r100", "r200", "mbf"}; }

BackboneConfig infer_iresnet_config(const std::map<std::string, Tensor>& tensors, const std::string& source) {
  auto shape_of = [&](const std::string& name) {
    auto it = tensors.find(name);
    FF_CHECK(it != tensors.end(), source, ": no FlatFace metadata and no '", name,
             "' tensor, so it is not an iResNet state_dict this tool can rebuild");
    return it->second.shape();
  };
  const Shape conv1 = shape_of("conv1.weight"), fc = shape_of("fc.weight");
  FF_CHECK(conv1.size() == 4 && conv1[1] == 3 && fc.size() == 2, source, ": conv1.weight ", shape_str(conv1),
           " / fc.weight ", shape_str(fc), " are not those of an iResNet");
  std::vector<int64_t> depth;
  for (int k = 1; k <= 4; ++k) {
    int64_t n = 0;
    while (tensors.count("layer" + std::to_string(k) + "." + std::to_string(n) + ".conv1.weight")) ++n;
    depth.push_back(n);
  }
  BackboneConfig cfg;
  cfg.arch.clear();
  for (auto& [name, d] : depths())
    if (d == depth) cfg.arch = name;
  FF_CHECK(!cfg.arch.empty(), source, ": blocks per stage ", shape_str(depth),
           " match none of r18 r34 r50 r100 r200");
  cfg.width = (double)conv1[0] / 64.0;
  cfg.embedding_size = fc[0];
  // fc reads 512·width channels of (input/16)² positions.
  const int64_t c4 = scaled(512, cfg.width), positions = fc[1] / c4;
  const auto side = (int64_t)std::llround(std::sqrt((double)positions));
  FF_CHECK(fc[1] % c4 == 0 && side * side == positions, source, ": fc.weight ", shape_str(fc),
           " does not read a square feature map of ", c4, " channels");
  cfg.input_size = side * 16;
  return cfg;
}

}  // namespace ff
