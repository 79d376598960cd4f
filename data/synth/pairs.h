// Verification pair lists over synthetic identities, in LFW's layout (per fold: positives, then negatives).
#pragma once

#include <cstdint>
#include <vector>

#include "data/synth/faces.h"

namespace ff::data::synth {

// Two images, each named by (identity, sample) and rendered at Nuisance::level(nuisance).
struct Pair {
  int64_t id_a = 0, sample_a = 0, id_b = 0, sample_b = 0;
  bool same = false;
  double nuisance = 0;
};

struct PairConfig {
  int folds = 10;
  int positives = 300;      // per fold
  int negatives = 300;      // per fold
  double nuisance = 0.5;    // level of both images of a pair
  double hard_extra = 0.3;  // hard_pairs() raise the level by this much (at most to 1)
  uint64_t seed = 0;        // picks the pairs; the faces' own seed picks the population
};

// Open set: identities [first_id, first_id + count), which training must not use. As in LFW,
// each fold draws from its own identities (whole families where there are enough).
std::vector<Pair> open_set_pairs(const SynthFaces& faces, int64_t first_id, int64_t count, const PairConfig& cfg);

// Identities seen in training, [0, count), on images training never saw: sample indices from
// first_unseen_sample up (training used [0, first_unseen_sample)). Measures the generalisation gap.
std::vector<Pair> seen_identity_pairs(const SynthFaces& faces, int64_t count, int64_t first_unseen_sample,
                                      const PairConfig& cfg);

// Like open_set_pairs, but each negative pairs an identity with its most similar other identity
// (a family member: a near-twin) and every image carries cfg.hard_extra more nuisance.
std::vector<Pair> hard_pairs(const SynthFaces& faces, int64_t first_id, int64_t count, const PairConfig& cfg);

}  // namespace ff::data::synth
