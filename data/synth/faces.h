// Procedural face-like identities and their images, for training and evaluation without downloads.
#pragma once

#include <array>
#include <cstddef>  // data/image.h uses size_t without including it
#include <cstdint>
#include <vector>

#include "data/image.h"
#include "data/synth/raster.h"

namespace ff::data::synth {

struct SynthConfig {
  int image_size = 112;     // square output side; the face layout follows the 112x112 alignment
  double difficulty = 0.5;  // 0..1: nuisance of training images and how alike family members are
  uint64_t seed = 0;        // selects the whole population
  int family_size = 4;      // identities [f*n, (f+1)*n) form family f of near-twins; 1 = no families
};

// Strength in [0, 1] of each kind of variation between images of one identity. Even 0 keeps a
// little pose and expression jitter, as real photographs do.
struct Nuisance {
  double pose = 0.5;        // yaw, pitch, roll, scale and alignment error
  double expression = 0.5;  // smile, open mouth, raised brows, closed eyes, gaze
  double light = 0.5;       // directional light, brightness, contrast, colour cast
  double occlusion = 0.5;   // glasses, sunglasses, masks, random bars
  double quality = 0.5;     // blur, low resolution, sensor noise, JPEG-like block quantisation
  static Nuisance level(double s) { return {s, s, s, s, s}; }
};

// Trait slots of an identity, each a value in [0, 1], in groups that a family member redraws
// as a whole (see SynthFaces::identity).
enum Trait : int {
  kFaceWidth, kFaceHeight, kJaw, kChin, kEarSize,                             // face
  kSkinTone, kSkinWarmth, kTextureSeed, kTextureAmp, kBlush,                  // skin
  kEyeSpacing, kEyeHeight, kEyeWidth, kEyeOpen, kEyeTilt, kIrisSize, kIrisColour,  // eyes
  kBrowGap, kBrowThick, kBrowLength, kBrowArch, kBrowTilt,                    // brows
  kNoseLength, kNoseWidth, kNoseDepth,                                        // nose
  kMouthHeight, kMouthWidth, kUpperLip, kLowerLip, kMouthCurve, kLipColour,   // mouth
  kHairStyle, kHairColour, kHairline, kHairVolume, kHairPart, kHairRecede,   // hair
  kBeard, kBeardDensity,                                                      // facial hair
  kMarkSeed, kMoles, kScar, kFreckles,                                        // marks
  kTraitCount
};
constexpr int kTraitGroups = 9;

struct Mark {
  float x, y;      // face-normalised position (x in face half-widths, y in half-heights)
  float radius;    // pixels at 112
  float angle = 0, length = 0;  // scars are segments
};

// The stable appearance of one identity, derived from (seed, id) only. Lengths are pixels in
// the 112x112 frame, positions relative to the face centre (y down).
struct Identity {
  int64_t id = 0, family = 0;
  std::array<float, kTraitCount> traits{};  // the latent values the fields below come from

  float face_a = 0, face_b = 0, jaw = 0, chin = 0, ear = 0;
  Rgb skin, lip, iris, hair;
  float texture_amp = 0, blush = 0;
  std::array<float, 64> texture{};  // 8x8 low-frequency skin pattern
  float eye_dx = 0, eye_y = 0, eye_w = 0, eye_h = 0, eye_tilt = 0, iris_r = 0;
  float brow_gap = 0, brow_thick = 0, brow_len = 0, brow_arch = 0, brow_tilt = 0;
  float nose_y = 0, nose_w = 0, nose_depth = 0;
  float mouth_y = 0, mouth_w = 0, lip_up = 0, lip_lo = 0, mouth_curve = 0;
  int hair_style = 0, beard = 0;
  float hairline = 0, hair_volume = 0, hair_part = 0, hair_recede = 0, beard_density = 0;
  std::vector<Mark> moles, freckles, scars;
};

// Distance between two identities' trait vectors (RMS over slots): small for near-twins.
double trait_distance(const Identity& a, const Identity& b);

class SynthFaces {
 public:
  explicit SynthFaces(SynthConfig cfg = {});
  const SynthConfig& config() const { return cfg_; }
  int64_t family_of(int64_t id) const { return id / cfg_.family_size; }
  // The nuisance of training images at this difficulty.
  Nuisance training_nuisance() const { return Nuisance::level(cfg_.difficulty); }

  Identity identity(int64_t id) const;
  // Image `sample` of identity `id`: a pure function of (seed, id, sample, n), so any thread may
  // render any image.
  Image render(int64_t id, int64_t sample, const Nuisance& n) const;
  Image render(const Identity& who, int64_t sample, const Nuisance& n) const;

 private:
  SynthConfig cfg_;
};

// A sheet of identities [first_id, first_id + ids) as rows, images_per_id renders each.
Image preview_grid(const SynthFaces& faces, int64_t first_id, int ids, int images_per_id, const Nuisance& n);

}  // namespace ff::data::synth
