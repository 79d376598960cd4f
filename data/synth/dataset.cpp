// A Dataset of synthetic identities whose images are rendered on demand.
#include "data/synth/dataset.h"

#include "engine/error.h"

namespace ff::data::synth {

SynthDataset::SynthDataset(SynthFaces faces, int64_t identities, int64_t images_per_identity, int64_t first_id)
    : SynthDataset(faces, identities, images_per_identity, first_id, faces.training_nuisance()) {}

SynthDataset::SynthDataset(SynthFaces faces, int64_t identities, int64_t images_per_identity, int64_t first_id,
                           Nuisance nuisance)
    : faces_(std::move(faces)), identities_(identities), per_id_(images_per_identity), first_id_(first_id), nuisance_(nuisance) {
  FF_CHECK(identities > 0 && images_per_identity > 0, "synth dataset: ", identities, " identities x ", images_per_identity,
           " images is empty");
  FF_CHECK(first_id >= 0, "synth dataset: first identity ", first_id, " is negative");
}

void SynthDataset::check_index(size_t i) const {
  FF_CHECK(i < size(), "synth dataset: example ", i, " is out of range (", size(), " examples)");
}

Sample SynthDataset::get(size_t i) const {
  check_index(i);
  const int64_t k = (int64_t)i;
  return {faces_.render(first_id_ + k / per_id_, k % per_id_, nuisance_), k / per_id_};
}

int64_t SynthDataset::label(size_t i) const {
  check_index(i);
  return (int64_t)i / per_id_;
}

std::string SynthDataset::describe(size_t i) const {
  const int64_t k = (int64_t)i;
  return msg("synth seed ", faces_.config().seed, " identity ", first_id_ + k / per_id_, " sample ", k % per_id_);
}

}  // namespace ff::data::synth
