// Batched embedding extraction (with the mirrored image summed in) and .bin verification.
#include "tools/common/evaluate.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>

#include "data/bin_pairs.h"
#include "data/image_codec.h"
#include "engine/ops.h"
#include "tools/common/progress.h"

namespace ff {

PairSet load_pair_set(const std::string& path, int64_t input_size) {
  data::BinPairs bin = data::read_bin_pairs(path);
  PairSet set;
  set.path = path;
  set.name = std::filesystem::path(path).stem().string();
  set.issame = bin.issame;
  set.images.resize(bin.images.size());
  data::DecodeOptions opt;
  opt.height = opt.width = (int)input_size;
  std::vector<std::string> errors(bin.images.size());
#pragma omp parallel for schedule(dynamic, 16)
  for (size_t i = 0; i < bin.images.size(); ++i) {
    try {
      set.images[i] = data::decode_image(bin.images[i], opt);
    } catch (const std::exception& e) {
      errors[i] = e.what();
    }
  }
  for (size_t i = 0; i < errors.size(); ++i)
    FF_CHECK(errors[i].empty(), path, ": image ", i, " (pair ", i / 2, "): ", errors[i]);
  const size_t same = std::count(set.issame.begin(), set.issame.end(), true);
  if (same == 0 || same == set.issame.size())
    std::fprintf(stderr, "warning: %s: all %zu pairs are %s pairs: reporting accuracy only (TAR@FAR needs both)\n",
                 path.c_str(), set.issame.size(), same ? "same" : "different");
  return set;
}

Tensor images_to_tensor(const std::vector<data::Image>& images, size_t begin, size_t end, bool flip) {
  FF_CHECK(begin < end && end <= images.size(), "images_to_tensor: range [", begin, ", ", end, ") of ", images.size());
  const data::Image& first = images[begin];
  const int64_t h = first.height, w = first.width, n = (int64_t)(end - begin);
  Tensor t = Tensor::empty({n, 3, h, w});
  float* out = t.data<float>();
  // Checked before the parallel loop: an exception must not leave an OpenMP region.
  for (size_t i = begin; i < end; ++i)
    FF_CHECK(images[i].height == h && images[i].width == w && images[i].channels == 3, "images_to_tensor: image ", i,
             " is ", images[i].height, "x", images[i].width, "x", images[i].channels, ", expected ", h, "x", w, "x3");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const data::Image& img = images[begin + i];
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          int64_t sx = flip ? w - 1 - x : x;
          out[((i * 3 + c) * h + y) * w + x] = ((float)img.at((int)y, (int)sx)[c] - 127.5f) / 127.5f;
        }
  }
  return t;
}

std::vector<float> extract_embeddings(Backbone& net, const std::vector<data::Image>& images, int64_t batch,
                                      bool flip_sum, int64_t* dim_out, const std::string& progress) {
  std::optional<Progress> meter;
  if (!progress.empty()) meter.emplace(progress, images.size());
  return extract_embeddings(net, images, batch, flip_sum, dim_out, meter ? &*meter : nullptr, 0);
}

std::vector<float> extract_embeddings(Backbone& net, const std::vector<data::Image>& images, int64_t batch,
                                      bool flip_sum, int64_t* dim_out, Progress* meter, size_t done_before) {
  NoGradGuard no_grad;
  net.train(false);
  std::vector<float> out;
  int64_t dim = net.config().embedding_size;
  out.reserve(images.size() * (size_t)dim);
  for (size_t b = 0; b < images.size(); b += (size_t)batch) {
    size_t e = std::min(images.size(), b + (size_t)batch);
    const Device dev = net.device();
    Tensor emb = net.forward(images_to_tensor(images, b, e, false).to(dev));
    if (flip_sum) emb = add(emb, net.forward(images_to_tensor(images, b, e, true).to(dev)));
    emb = emb.to(Device::cpu());
    const float* p = emb.data<float>();
    out.insert(out.end(), p, p + emb.numel());
    if (meter) meter->update(done_before + e);
  }
  if (dim_out) *dim_out = dim;
  return out;
}

PairSetResult evaluate_pair_set(Backbone& net, const PairSet& set, int64_t batch, const std::string& progress) {
  int64_t dim = 0;
  std::vector<float> emb = extract_embeddings(net, set.images, batch, true, &dim, progress);
  // Rows 2k and 2k + 1 are pair k; the mirror is already summed into each row.
  std::vector<double> dist = data::pair_distances(emb, {}, set.images.size(), (size_t)dim);
  PairSetResult r;
  r.name = set.name;
  r.verification = data::evaluate_verification(dist, set.issame);
  const size_t same = std::count(set.issame.begin(), set.issame.end(), true);
  r.has_tar = same > 0 && same < set.issame.size();
  if (r.has_tar) {
    r.roc = data::tar_at_far(dist, set.issame);
  } else {
    r.verification.tar_mean = r.verification.tar_std = std::numeric_limits<double>::quiet_NaN();
  }
  return r;
}

}  // namespace ff
