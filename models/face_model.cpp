// Backbone + margin head: the per-pass loss of a training step and the model's state_dict.
#include "models/face_model.h"

#include "engine/ops.h"

namespace ff {

FaceModel::FaceModel(const FaceModelConfig& cfg) : cfg_(cfg), backbone_(make_backbone(cfg.backbone)) {
  FF_CHECK(cfg.num_classes > 0, "the model needs at least one class, got ", cfg.num_classes);
  check_margin_config(cfg.margin);
  Rng rng(cfg.backbone.seed ^ 0xc1a55ULL);
  centres_ = randn({cfg.num_classes, cfg.backbone.embedding_size}, rng, 0.01);
  centres_.set_requires_grad(true).set_name("head.weight");
}

void FaceModel::to(Device d) {
  backbone_->to(d);
  centres_.move_to_(d);
}

FaceModel::Loss FaceModel::loss(const Tensor& images, const Tensor& labels, MarginLoss kind) {
  Tensor emb = backbone_->forward(images.to(device()));
  MarginConfig m = cfg_.margin;
  m.loss = kind;
  MarginLossResult r = margin_softmax_cross_entropy(emb, centres_, labels, m);
  double correct = 0;
  for (double c : r.correct.to_vector()) correct += c;
  return {r.loss, correct / (double)std::max<int64_t>(1, r.correct.numel())};
}

FaceModel::Loss FaceModel::train_pass(const Tensor& images, const Tensor& labels, MarginLoss kind,
                                      bool update_bn_stats) {
  backbone_->train(true);
  backbone_->set_bn_update_stats(update_bn_stats);
  Loss l = loss(images, labels, kind);
  l.loss.backward();
  backbone_->set_bn_update_stats(true);
  return l;
}

NamedTensors FaceModel::state_dict() const {
  NamedTensors sd = backbone_->state_dict();
  sd.emplace_back("head.weight", centres_);
  return sd;
}

void FaceModel::load_state_dict(const std::map<std::string, Tensor>& tensors, const std::string& source,
                                bool with_head) {
  std::map<std::string, Tensor> body = tensors;
  auto it = body.find("head.weight");
  Tensor head;
  if (with_head) {
    FF_CHECK(it != body.end(), source, ": tensor 'head.weight' (class centres) is missing");
    FF_CHECK(it->second.shape() == centres_.shape(), source, ": 'head.weight' has shape ",
             shape_str(it->second.shape()), ", the model expects ", shape_str(centres_.shape()));
    FF_CHECK(it->second.dtype() != DType::I64, source, ": 'head.weight' has dtype i64, the model expects ",
             dtype_name(centres_.dtype()));
    head = it->second;
  }
  if (it != body.end()) body.erase(it);
  backbone_->load_state_dict(body, source);  // checks everything before it copies
  if (head.defined()) centres_.copy_from(head.to(centres_.dtype()));
}

}  // namespace ff
