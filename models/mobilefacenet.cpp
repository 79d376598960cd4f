// MobileFaceNet with the global depthwise (GDC) head, named like insightface's PyTorch version
// (blocks (1, 4, 6, 2), scale 2), so its state_dicts load both ways.
#include <cmath>

#include "engine/ops.h"
#include "models/backbone.h"

namespace ff {

namespace {

// Conv -> BatchNorm (-> PReLU), as nn.Sequential children "0", "1", "2" under "layers".
class ConvUnit : public Module {
 public:
  ConvUnit(int64_t cin, int64_t cout, int64_t k, int64_t stride, int64_t pad, int64_t groups, bool act, Rng& rng) {
    auto seq = add_module("layers", std::make_shared<Module>());
    // Kaiming normal, fan_out mode, as the reference initialises these layers.
    double std = std::sqrt(2.0 / (double)(cout * k * k));
    conv_ = seq->add_module("0", std::make_shared<Conv2d>(cin, cout, k, stride, pad, groups, false, rng, std));
    bn_ = seq->add_module("1", std::make_shared<BatchNorm>(cout));
    if (act) prelu_ = seq->add_module("2", std::make_shared<PReLU>(cout));
    macs_per_pixel_ = cout * (cin / groups) * k * k;
    stride_ = stride;
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = bn_->forward(conv_->forward(x));
    return prelu_ ? prelu_->forward(h) : h;
  }
  int64_t macs(int64_t in_size) const {
    int64_t o = in_size / stride_;
    return o * o * macs_per_pixel_;
  }

 private:
  std::shared_ptr<Conv2d> conv_;
  std::shared_ptr<BatchNorm> bn_;
  std::shared_ptr<PReLU> prelu_;
  int64_t macs_per_pixel_ = 0, stride_ = 1;
};

// 1x1 expand -> depthwise kxk -> 1x1 project (linear), optional residual.
class DepthWise : public Module {
 public:
  DepthWise(int64_t cin, int64_t cout, bool residual, int64_t stride, int64_t groups, Rng& rng) : residual_(residual) {
    auto seq = add_module("layers", std::make_shared<Module>());
    a_ = seq->add_module("0", std::make_shared<ConvUnit>(cin, groups, 1, 1, 0, 1, true, rng));
    b_ = seq->add_module("1", std::make_shared<ConvUnit>(groups, groups, 3, stride, 1, groups, true, rng));
    c_ = seq->add_module("2", std::make_shared<ConvUnit>(groups, cout, 1, 1, 0, 1, false, rng));
    stride_ = stride;
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = c_->forward(b_->forward(a_->forward(x)));
    return residual_ ? add(x, h) : h;
  }
  int64_t macs(int64_t s) const { return a_->macs(s) + b_->macs(s) + c_->macs(s / stride_); }
  int64_t stride() const { return stride_; }

 private:
  bool residual_;
  int64_t stride_;
  std::shared_ptr<ConvUnit> a_, b_, c_;
};

class MobileFaceNet : public Backbone {
 public:
  explicit MobileFaceNet(const BackboneConfig& cfg) : cfg_(cfg) {
    FF_CHECK(cfg.input_size >= 16 && cfg.input_size % 16 == 0, "MobileFaceNet input size must be a multiple of 16, got ",
             cfg.input_size);
    Rng rng(cfg.seed);
    auto w = [&](int64_t c) { return std::max<int64_t>(2, 2 * (int64_t)std::llround(c * cfg.width / 2)); };
    const int64_t c1 = w(128), c2 = w(256), emb = cfg.embedding_size;
    auto layers = add_module("layers", std::make_shared<Module>());
    stem_ = layers->add_module("0", std::make_shared<ConvUnit>(3, c1, 3, 2, 1, 1, true, rng));
    stem2_ = layers->add_module("1", std::make_shared<ConvUnit>(c1, c1, 3, 1, 1, c1 / 2, true, rng));
    auto residual = [&](const std::string& name, int64_t c, int n, int64_t groups) {
      auto r = layers->add_module(name, std::make_shared<Module>());
      auto seq = r->add_module("layers", std::make_shared<Module>());
      for (int i = 0; i < n; ++i)
        blocks_.push_back(seq->add_module(std::to_string(i), std::make_shared<DepthWise>(c, c, true, 1, groups, rng)));
    };
    blocks_.push_back(layers->add_module("2", std::make_shared<DepthWise>(c1, c1, false, 2, c1, rng)));
    residual("3", c1, 4, c1);
    blocks_.push_back(layers->add_module("4", std::make_shared<DepthWise>(c1, c2, false, 2, c2, rng)));
    residual("5", c2, 6, c2);
    blocks_.push_back(layers->add_module("6", std::make_shared<DepthWise>(c2, c2, false, 2, 2 * c2, rng)));
    residual("7", c2, 2, c2);
    conv_sep_ = add_module("conv_sep", std::make_shared<ConvUnit>(c2, 512, 1, 1, 0, 1, true, rng));
    auto gdc = add_module("features", std::make_shared<Module>());
    auto seq = gdc->add_module("layers", std::make_shared<Module>());
    const int64_t k = cfg.input_size / 16;
    gdc_conv_ = seq->add_module("0", std::make_shared<ConvUnit>(512, 512, k, 1, 0, 512, false, rng));
    linear_ = seq->add_module("2", std::make_shared<Linear>(512, emb, false, rng));
    bn_ = seq->add_module("3", std::make_shared<BatchNorm>(emb));
  }

  Tensor forward(const Tensor& x) override {
    FF_CHECK(x.dim() == 4 && x.size(1) == 3 && x.size(2) == cfg_.input_size && x.size(3) == cfg_.input_size,
             "mbf: expected input [N, 3, ", cfg_.input_size, ", ", cfg_.input_size, "], got ", x.str());
    Tensor h = stem2_->forward(stem_->forward(x));
    for (auto& b : blocks_) h = b->forward(h);
    h = gdc_conv_->forward(conv_sep_->forward(h)).flatten(1);
    return bn_->forward(linear_->forward(h));
  }

  const BackboneConfig& config() const override { return cfg_; }

  int64_t macs() const override {
    int64_t s = cfg_.input_size, m = stem_->macs(s);
    s /= 2;
    m += stem2_->macs(s);
    for (auto& b : blocks_) {
      m += b->macs(s);
      s /= b->stride();
    }
    m += conv_sep_->macs(s) + gdc_conv_->macs(s) / (s * s) + 512 * cfg_.embedding_size;
    return m;
  }

 private:
  BackboneConfig cfg_;
  std::shared_ptr<ConvUnit> stem_, stem2_, conv_sep_, gdc_conv_;
  std::vector<std::shared_ptr<DepthWise>> blocks_;
  std::shared_ptr<Linear> linear_;
  std::shared_ptr<BatchNorm> bn_;
};

}  // namespace

std::unique_ptr<Backbone> make_mobilefacenet(const BackboneConfig& cfg) { return std::make_unique<MobileFaceNet>(cfg); }

}  // namespace ff
