// A Dataset of synthetic identities whose images are rendered on demand.
#pragma once

#include <string>

#include "data/dataset.h"
#include "data/synth/faces.h"

namespace ff::data::synth {

// Identities [first_id, first_id + identities) with images_per_identity images each (sample
// indices [0, images_per_identity)); example i is image i % k of identity first_id + i / k, with
// label i / k. Rendering is deterministic and thread-safe, so nothing is stored.
class SynthDataset final : public Dataset {
 public:
  SynthDataset(SynthFaces faces, int64_t identities, int64_t images_per_identity, int64_t first_id = 0);
  // As above with an explicit nuisance instead of the faces' training nuisance.
  SynthDataset(SynthFaces faces, int64_t identities, int64_t images_per_identity, int64_t first_id, Nuisance nuisance);

  size_t size() const override { return (size_t)(identities_ * per_id_); }
  int64_t num_classes() const override { return identities_; }
  Sample get(size_t i) const override;
  int64_t label(size_t i) const override;
  std::string describe(size_t i) const override;

  const SynthFaces& faces() const { return faces_; }
  int64_t images_per_identity() const { return per_id_; }
  int64_t first_id() const { return first_id_; }

 private:
  void check_index(size_t i) const;
  SynthFaces faces_;
  int64_t identities_, per_id_, first_id_;
  Nuisance nuisance_;
};

}  // namespace ff::data::synth
