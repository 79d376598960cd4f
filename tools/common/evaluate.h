// Embedding extraction and the verification protocol on .bin pair files, for a backbone.
#pragma once

#include <string>
#include <vector>

#include "data/image.h"
#include "data/verification.h"
#include "models/backbone.h"
#include "tools/common/progress.h"

namespace ff {

// A .bin pair file decoded once at the model's input size.
struct PairSet {
  std::string name;  // file stem: "lfw", "synth_open", ...
  std::string path;
  std::vector<data::Image> images;  // 2N; pair k is images[2k], images[2k + 1]
  std::vector<bool> issame;
};
// A set of only same (or only different) pairs loads with one warning line on stderr: its accuracy
// is still defined, its TAR@FAR and ROC are not.
PairSet load_pair_set(const std::string& path, int64_t input_size);

// Images -> f32 [N, 3, S, S] normalised as (x - 127.5) / 127.5, optionally mirrored.
Tensor images_to_tensor(const std::vector<data::Image>& images, size_t begin, size_t end, bool flip);

// Embeddings [N, d] in eval mode, batched, on the network's device; with `flip_sum` the embedding
// of an image is that of the image plus that of its mirror ("accuracy-flip"). Not normalised.
// A non-empty `progress` label prints progress lines on stderr while it runs (tools).
std::vector<float> extract_embeddings(Backbone& net, const std::vector<data::Image>& images, int64_t batch,
                                      bool flip_sum, int64_t* dim_out, const std::string& progress = "");
// The same, reporting to `meter` as one part of a longer run that has done `done_before` images
// already (flatface-embed embeds in chunks, so that only the embeddings stay in memory).
std::vector<float> extract_embeddings(Backbone& net, const std::vector<data::Image>& images, int64_t batch,
                                      bool flip_sum, int64_t* dim_out, Progress* meter, size_t done_before);

struct PairSetResult {
  std::string name;
  data::VerificationResult verification;
  std::vector<data::RocPoint> roc;
  // False for a set without both same and different pairs: then tar_mean and tar_std are NaN and
  // roc is empty, since TAR@FAR needs both.
  bool has_tar = true;
};
// The protocol of FORMATS.md on one pair set. Leaves the network in eval mode.
PairSetResult evaluate_pair_set(Backbone& net, const PairSet& set, int64_t batch, const std::string& progress = "");

}  // namespace ff
