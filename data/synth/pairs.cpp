// Verification pair lists over synthetic identities.
#include "data/synth/pairs.h"

#include <algorithm>
#include <limits>

#include "engine/error.h"
#include "engine/rng.h"

namespace ff::data::synth {
namespace {

constexpr int64_t kSampleSpan = int64_t{1} << 30;  // samples are drawn from [lo, lo + span)

// Identities of each fold: whole families when there are at least as many families as folds.
std::vector<std::vector<int64_t>> fold_identities(const SynthFaces& faces, int64_t first_id, int64_t count, int folds) {
  const int64_t fam0 = faces.family_of(first_id), fams = faces.family_of(first_id + count - 1) - fam0 + 1;
  std::vector<std::vector<int64_t>> out(folds);
  for (int64_t id = first_id; id < first_id + count; ++id) {
    const int f = fams >= folds ? (int)((faces.family_of(id) - fam0) * folds / fams) : (int)((id - first_id) * folds / count);
    out[f].push_back(id);
  }
  for (int f = 0; f < folds; ++f)
    FF_CHECK(out[f].size() >= 2, "synth pairs: fold ", f, " has ", out[f].size(), " identities; ", count, " identities over ",
             folds, " folds leave too few for negative pairs");
  return out;
}

std::vector<Pair> make_pairs(const SynthFaces& faces, int64_t first_id, int64_t count, int64_t sample_lo,
                             const PairConfig& cfg, bool hard) {
  FF_CHECK(cfg.folds >= 1 && cfg.positives >= 0 && cfg.negatives >= 0, "synth pairs: ", cfg.folds, " folds x (", cfg.positives,
           " positives + ", cfg.negatives, " negatives) is not a valid layout");
  FF_CHECK(first_id >= 0 && count >= 2, "synth pairs: identities [", first_id, ", ", first_id + count, ") are too few");
  FF_CHECK(cfg.nuisance >= 0 && cfg.nuisance <= 1, "synth pairs: nuisance ", cfg.nuisance, " is outside [0, 1]");
  const double level = hard ? std::min(1.0, cfg.nuisance + cfg.hard_extra) : cfg.nuisance;
  const auto groups = fold_identities(faces, first_id, count, cfg.folds);
  std::vector<Pair> pairs;
  pairs.reserve((size_t)cfg.folds * (cfg.positives + cfg.negatives));
  for (int f = 0; f < cfg.folds; ++f) {
    const auto& ids = groups[f];
    Rng rng = Rng::derived(cfg.seed, (uint64_t)f);
    auto sample = [&] { return sample_lo + (int64_t)rng.below(kSampleSpan); };
    auto member = [&] { return ids[rng.below(ids.size())]; };
    for (int i = 0; i < cfg.positives; ++i) {
      Pair p{member(), sample(), 0, 0, true, level};
      p.id_b = p.id_a;
      do p.sample_b = sample();
      while (p.sample_b == p.sample_a);
      pairs.push_back(p);
    }
    std::vector<Identity> who;
    if (hard)
      for (int64_t id : ids) who.push_back(faces.identity(id));
    for (int i = 0; i < cfg.negatives; ++i) {
      const size_t a = rng.below(ids.size());
      size_t b = a;
      if (!hard) {
        while (b == a) b = rng.below(ids.size());
      } else {
        // The nearest other identity of the same family, or of the fold when the family has
        // no other member here.
        const bool has_kin = std::any_of(ids.begin(), ids.end(), [&](int64_t id) {
          return id != ids[a] && faces.family_of(id) == faces.family_of(ids[a]);
        });
        double best = std::numeric_limits<double>::infinity();
        for (size_t j = 0; j < ids.size(); ++j) {
          if (j == a || (has_kin && faces.family_of(ids[j]) != faces.family_of(ids[a]))) continue;
          const double d = trait_distance(who[a], who[j]);
          if (d < best) best = d, b = j;
        }
      }
      pairs.push_back({ids[a], sample(), ids[b], sample(), false, level});
    }
  }
  return pairs;
}

}  // namespace

std::vector<Pair> open_set_pairs(const SynthFaces& faces, int64_t first_id, int64_t count, const PairConfig& cfg) {
  return make_pairs(faces, first_id, count, 0, cfg, false);
}

std::vector<Pair> seen_identity_pairs(const SynthFaces& faces, int64_t count, int64_t first_unseen_sample, const PairConfig& cfg) {
  FF_CHECK(first_unseen_sample >= 0, "synth pairs: first unseen sample ", first_unseen_sample, " is negative");
  return make_pairs(faces, 0, count, first_unseen_sample, cfg, false);
}

std::vector<Pair> hard_pairs(const SynthFaces& faces, int64_t first_id, int64_t count, const PairConfig& cfg) {
  return make_pairs(faces, first_id, count, 0, cfg, true);
}

}  // namespace ff::data::synth
