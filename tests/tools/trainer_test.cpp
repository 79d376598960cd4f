// Trainer pieces below the tool: which parameters optim.no_decay_bn exempts.
#include <gtest/gtest.h>

#include <map>

#include "tools/common/trainer.h"

namespace ff {
namespace {

// BatchNorm and PReLU tensors are exempt, a Linear's bias is not (it was, by being 1-D), for both
// backbones; the class centres come last.
TEST(Trainer, NoDecayFlagsBatchNormAndPReLUOnly) {
  for (const char* arch : {"r18", "mbf"}) {
    FaceModelConfig cfg;
    cfg.backbone.arch = arch;
    cfg.backbone.input_size = 32;
    cfg.backbone.width = 0.125;
    cfg.backbone.embedding_size = 16;
    cfg.num_classes = 5;
    FaceModel model(cfg);
    std::vector<ParamRef> refs = model_param_refs(model);
    ASSERT_FALSE(refs.empty());
    EXPECT_EQ(refs.back().name, "head.weight");
    EXPECT_TRUE(refs.back().is_head);
    std::map<std::string, bool> flagged;
    for (auto& r : refs) flagged[r.name] = r.no_weight_decay;
    for (auto& r : refs) {
      if (r.is_head) continue;
      // iResNet names them bn*, prelu, features, downsample.1; MobileFaceNet's convolutions and
      // linear layer have no bias, so there every 1-D tensor is a BatchNorm or PReLU one.
      const bool is_norm_or_prelu = std::string(arch) == "mbf" || r.name.find("bn") != std::string::npos ||
                                    r.name.find("prelu") != std::string::npos ||
                                    r.name.rfind("features.", 0) == 0 ||
                                    r.name.find("downsample.1.") != std::string::npos;
      EXPECT_EQ(r.no_weight_decay, is_norm_or_prelu && r.param.dim() == 1) << arch << " " << r.name;
    }
    if (std::string(arch) == "r18") {
      ASSERT_TRUE(flagged.count("fc.bias"));
      EXPECT_FALSE(flagged["fc.bias"]);
      EXPECT_TRUE(flagged["bn1.weight"]);
      EXPECT_TRUE(flagged["prelu.weight"]);
      EXPECT_TRUE(flagged["features.bias"]);
      EXPECT_FALSE(flagged["conv1.weight"]);
    }
  }
}

}  // namespace
}  // namespace ff
