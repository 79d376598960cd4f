// Backbones: parameter counts and MACs against the published sizes, state_dict names, shapes.
#include "models/backbone.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/ops.h"

namespace ff {
namespace {

TEST(Backbone, IResNetSizesMatchThePublishedOnes) {
  // Published at 112x112, 512-d: r18 24.0M / 2.61 GMACs, r50 43.6M / 6.31, r100 65.2M / 12.1.
  struct Expect {
    const char* arch;
    double params_m, gmacs;
  };
  for (Expect e : {Expect{"r18", 24.0, 2.61}, Expect{"r50", 43.6, 6.31}, Expect{"r100", 65.2, 12.1}}) {
    BackboneConfig cfg;
    cfg.arch = e.arch;
    auto net = make_backbone(cfg);
    double params = net->parameter_count() / 1e6, gmacs = net->macs() / 1e9;
    std::printf("[size] %-5s %.2fM parameters, %.2f GMACs (published %.1fM, %.2f)\n", e.arch, params, gmacs, e.params_m,
                e.gmacs);
    EXPECT_NEAR(params, e.params_m, 0.1) << e.arch;
    EXPECT_NEAR(gmacs, e.gmacs, 0.02 * e.gmacs) << e.arch;
  }
}

TEST(Backbone, MobileFaceNetIsTheHalfGmacVariant) {
  // The MobileFaceNet of the common recipe (GDC head, blocks (1, 4, 6, 2), scale 2): about
  // 0.45 GMACs at 112x112 and about 2M parameters with a 512-d embedding.
  BackboneConfig cfg;
  cfg.arch = "mbf";
  auto net = make_backbone(cfg);
  double params = net->parameter_count() / 1e6, gmacs = net->macs() / 1e9;
  std::printf("[size] mbf   %.2fM parameters, %.3f GMACs\n", params, gmacs);
  EXPECT_NEAR(gmacs, 0.45, 0.03);
  EXPECT_NEAR(params, 2.0, 0.2);
  std::set<std::string> names;
  for (auto& [n, t] : net->state_dict()) names.insert(n);
  for (const char* n : {"layers.0.layers.0.weight", "layers.1.layers.2.weight", "layers.3.layers.0.layers.1.layers.0.weight",
                        "conv_sep.layers.1.running_var", "features.layers.0.layers.0.weight", "features.layers.2.weight",
                        "features.layers.3.running_mean"})
    EXPECT_TRUE(names.count(n)) << "missing " << n;
}

TEST(Backbone, StateDictUsesThePyTorchNames) {
  BackboneConfig cfg;
  cfg.arch = "r18";
  cfg.width = 0.25;
  cfg.input_size = 32;
  auto net = make_backbone(cfg);
  std::set<std::string> names;
  for (auto& [n, t] : net->state_dict()) names.insert(n);
  for (const char* n : {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked", "prelu.weight", "layer1.0.bn1.weight", "layer1.0.conv1.weight",
                        "layer1.0.bn2.running_var", "layer1.0.prelu.weight", "layer1.0.conv2.weight",
                        "layer1.0.bn3.bias", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_mean",
                        "layer4.1.conv2.weight", "bn2.weight", "fc.weight", "fc.bias", "features.weight",
                        "features.bias", "features.running_mean"})
    EXPECT_TRUE(names.count(n)) << "missing " << n;
  EXPECT_FALSE(names.count("layer1.1.downsample.0.weight"));
  // features.weight is fixed at 1 and not trained.
  bool trainable_features = false;
  for (auto& [n, t] : net->named_parameters()) trainable_features |= n == "features.weight";
  EXPECT_FALSE(trainable_features);
}

TEST(Backbone, ForwardGivesEmbeddingsOfTheConfiguredSize) {
  for (const char* arch : {"r18", "mbf"}) {
    BackboneConfig cfg;
    cfg.arch = arch;
    cfg.width = 0.125;
    cfg.input_size = 32;
    cfg.embedding_size = 24;
    auto net = make_backbone(cfg);
    Rng rng(1);
    Tensor x = randn({3, 3, 32, 32}, rng);
    Tensor y = net->forward(x);
    EXPECT_EQ(y.shape(), (Shape{3, 24})) << arch;
    sum(square(y)).backward();
    for (auto& [n, p] : net->named_parameters()) EXPECT_TRUE(p.grad().defined()) << arch << " " << n;
    EXPECT_THROW(net->forward(randn({1, 3, 48, 48}, rng)), Error);
  }
}

TEST(Backbone, R34AndR200HaveThePublishedStageDepths) {
  // Blocks per stage of the iResNet definition (Duta et al., "Improved Residual Networks", and
  // insightface's arcface_torch iresnet34 / iresnet200): r34 (3, 4, 6, 3), r200 (6, 26, 60, 6).
  struct Expect {
    const char* arch;
    std::vector<int64_t> blocks;
  };
  for (const Expect& e : {Expect{"r34", {3, 4, 6, 3}}, Expect{"r200", {6, 26, 60, 6}}}) {
    BackboneConfig cfg;
    cfg.arch = e.arch;
    cfg.width = 0.125;
    cfg.input_size = 32;
    cfg.embedding_size = 16;
    auto net = make_backbone(cfg);
    // Blocks are the distinct "layerK.N." prefixes of the IBasicBlock weights "layerK.N.conv1.weight".
    std::map<int, std::set<int64_t>> blocks;
    for (auto& [n, t] : net->state_dict()) {
      int k = 0;
      long long b = 0;
      char rest[64] = {};
      if (std::sscanf(n.c_str(), "layer%d.%lld.%63s", &k, &b, rest) == 3 && std::string(rest) == "conv1.weight")
        blocks[k].insert(b);
    }
    std::vector<int64_t> got;
    for (int k = 1; k <= 4; ++k) {
      const std::set<int64_t>& ids = blocks[k];
      got.push_back((int64_t)ids.size());
      // Numbered 0 .. n-1 as nn.Sequential names them.
      EXPECT_TRUE(ids.empty() || (*ids.begin() == 0 && *ids.rbegin() == (int64_t)ids.size() - 1))
          << e.arch << " layer" << k;
    }
    std::printf("[depth] %-5s blocks per stage %lld, %lld, %lld, %lld (published %lld, %lld, %lld, %lld)\n", e.arch,
                (long long)got[0], (long long)got[1], (long long)got[2], (long long)got[3], (long long)e.blocks[0],
                (long long)e.blocks[1], (long long)e.blocks[2], (long long)e.blocks[3]);
    EXPECT_EQ(got, e.blocks) << e.arch;
    EXPECT_EQ(blocks.size(), 4u) << e.arch;  // no layer5
    Rng rng(7);
    Tensor x = randn({2, 3, 32, 32}, rng);
    Tensor y = net->forward(x);
    EXPECT_EQ(y.shape(), (Shape{2, 16})) << e.arch;
    for (double v : y.to_vector()) EXPECT_TRUE(std::isfinite(v)) << e.arch;
  }
}

TEST(Backbone, R34SizeMatchesThePublishedOne) {
  // OpenVINO Open Model Zoo, face-recognition-resnet34-arcface (insightface LResNet34E-IR, 112x112,
  // 512-d): 34.129 MParams, 8.934 GFLOPs (= 2 x MACs; its r100 entry, 24.21 GFLOPs, is the 12.1
  // GMACs checked above).
  BackboneConfig cfg;
  cfg.arch = "r34";
  auto net = make_backbone(cfg);
  double params = net->parameter_count() / 1e6, gmacs = net->macs() / 1e9;
  std::printf("[size] r34   %.3fM parameters, %.3f GMACs (published 34.129M, %.3f)\n", params, gmacs, 8.934 / 2);
  EXPECT_NEAR(params, 34.129, 0.1);
  EXPECT_NEAR(gmacs, 8.934 / 2, 0.02 * 8.934 / 2);
}

TEST(Backbone, BadConfigsAreRefused) {
  BackboneConfig cfg;
  cfg.arch = "r42";
  EXPECT_THROW(make_backbone(cfg), Error);
  cfg.arch = "r18";
  cfg.input_size = 100;
  EXPECT_THROW(make_backbone(cfg), Error);
}

}  // namespace
}  // namespace ff
