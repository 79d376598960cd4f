// Procedural face-like identities: traits from (seed, id), images from (seed, id, sample, nuisance).
#include "data/synth/faces.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "data/augment.h"
#include "engine/error.h"
#include "engine/rng.h"

namespace ff::data::synth {
namespace {

constexpr float kPi = std::numbers::pi_v<float>;
constexpr float kCentreX = 56.f, kCentreY = 60.f;  // face centre in the 112x112 frame

uint64_t splitmix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
uint64_t mix(uint64_t a, uint64_t b) { return splitmix(a ^ splitmix(b + 0x632be59bd9b4e019ULL)); }
// Domain tags keep the identity, family and image streams apart.
enum Stream : uint64_t { kFamilyStream = 1, kMemberStream = 2, kImageStream = 3, kMarkStream = 4, kTextureStream = 5 };

float lerp(float a, float b, float t) { return a + (b - a) * t; }
float sq(float x) { return x * x; }
float clamp01(float x) { return std::clamp(x, 0.f, 1.f); }
uint8_t to_u8(float v) { return (uint8_t)(std::clamp(v, 0.f, 255.f) + 0.5f); }
float smoothstep(float e0, float e1, float x) {
  float t = clamp01((x - e0) / (e1 - e0));
  return t * t * (3 - 2 * t);
}

// The first slot of each trait group, in enum order.
constexpr int kGroupStart[kTraitGroups] = {kFaceWidth, kSkinTone, kEyeSpacing, kBrowGap, kNoseLength,
                                           kMouthHeight, kHairStyle, kBeard, kMarkSeed};
int group_of(int t) {
  int g = 0;
  while (g + 1 < kTraitGroups && t >= kGroupStart[g + 1]) ++g;
  return g;
}
// Slots that pick among discrete choices: family members copy them exactly unless redrawn.
bool discrete(int t) {
  return t == kTextureSeed || t == kIrisColour || t == kHairStyle || t == kHairColour || t == kBeard ||
         t == kMarkSeed || t == kMoles || t == kScar;
}

// Index into a table by cumulative weights.
template <size_t N>
int pick(float u, const float (&weights)[N]) {
  float total = 0;
  for (float w : weights) total += w;
  float acc = 0;
  for (size_t i = 0; i < N; ++i) {
    acc += weights[i] / total;
    if (u < acc) return (int)i;
  }
  return (int)N - 1;
}

Rgb palette(float u, std::initializer_list<Rgb> colours) {
  const Rgb* c = colours.begin();
  float x = clamp01(u) * (colours.size() - 1);
  int i = std::min((int)x, (int)colours.size() - 2);
  return mix(c[i], c[i + 1], x - i);
}

enum HairStyle { kBald, kBuzz, kShort, kMedium, kLong, kBangs, kSideSwept, kBun };
enum BeardStyle { kNoBeard, kStubble, kMoustache, kGoatee, kFullBeard };

void derive(Identity& w) {
  const auto& t = w.traits;
  w.face_a = lerp(37, 45, t[kFaceWidth]);
  w.face_b = lerp(48, 57, t[kFaceHeight]);
  w.jaw = lerp(0.35f, 0.85f, t[kJaw]);
  w.chin = t[kChin];
  w.ear = lerp(0.8f, 1.25f, t[kEarSize]);

  w.skin = palette(t[kSkinTone], {{0.97f, 0.82f, 0.72f}, {0.92f, 0.72f, 0.58f}, {0.80f, 0.58f, 0.42f},
                                  {0.63f, 0.43f, 0.29f}, {0.45f, 0.30f, 0.20f}, {0.30f, 0.20f, 0.14f}});
  const float warm = lerp(-0.04f, 0.04f, t[kSkinWarmth]);
  w.skin = w.skin + Rgb{warm, 0.f, -warm};
  Rng tex(mix((uint64_t)(t[kTextureSeed] * 1e9), kTextureStream));
  for (float& v : w.texture) v = (float)tex.uniform(-1, 1);
  w.texture_amp = lerp(0.03f, 0.13f, t[kTextureAmp]);
  w.blush = lerp(0.f, 0.3f, t[kBlush]);

  w.eye_dx = lerp(15.5f, 19.5f, t[kEyeSpacing]);
  w.eye_y = lerp(-13, -7, t[kEyeHeight]);
  w.eye_w = lerp(6.5f, 9.2f, t[kEyeWidth]);
  w.eye_h = lerp(2.4f, 4.4f, t[kEyeOpen]);
  w.eye_tilt = lerp(-0.12f, 0.22f, t[kEyeTilt]);
  w.iris_r = w.eye_w * lerp(0.34f, 0.44f, t[kIrisSize]);
  static const Rgb kIris[] = {{0.22f, 0.13f, 0.07f}, {0.38f, 0.22f, 0.10f}, {0.48f, 0.36f, 0.18f},
                              {0.30f, 0.45f, 0.25f}, {0.28f, 0.45f, 0.68f}, {0.50f, 0.55f, 0.60f}};
  w.iris = kIris[pick(t[kIrisColour], {0.35f, 0.25f, 0.12f, 0.1f, 0.12f, 0.06f})];

  w.brow_gap = lerp(8, 13, t[kBrowGap]);
  w.brow_thick = lerp(1.0f, 2.6f, t[kBrowThick]);
  w.brow_len = lerp(7.5f, 11.5f, t[kBrowLength]);
  w.brow_arch = lerp(0.f, 3.5f, t[kBrowArch]);
  w.brow_tilt = lerp(-0.15f, 0.25f, t[kBrowTilt]);

  w.nose_y = lerp(7, 15, t[kNoseLength]);
  w.nose_w = lerp(4.5f, 8.5f, t[kNoseWidth]);
  w.nose_depth = lerp(8, 16, t[kNoseDepth]);

  w.mouth_y = lerp(26, 35, t[kMouthHeight]);
  w.mouth_w = lerp(10, 16, t[kMouthWidth]);
  w.lip_up = lerp(2.0f, 4.0f, t[kUpperLip]);
  w.lip_lo = lerp(2.6f, 5.4f, t[kLowerLip]);
  w.mouth_curve = lerp(-1.2f, 1.2f, t[kMouthCurve]);
  w.lip = mix(w.skin, {0.75f, 0.30f, 0.32f}, lerp(0.25f, 0.6f, t[kLipColour]));

  w.hair_style = pick(t[kHairStyle], {0.05f, 0.1f, 0.28f, 0.2f, 0.2f, 0.08f, 0.06f, 0.03f});
  static const Rgb kHair[] = {{0.07f, 0.06f, 0.05f}, {0.20f, 0.13f, 0.08f}, {0.38f, 0.25f, 0.14f},
                              {0.55f, 0.25f, 0.11f}, {0.80f, 0.64f, 0.40f}, {0.90f, 0.82f, 0.60f},
                              {0.55f, 0.55f, 0.55f}, {0.88f, 0.88f, 0.86f}};
  w.hair = kHair[pick(t[kHairColour], {0.3f, 0.25f, 0.15f, 0.07f, 0.1f, 0.05f, 0.05f, 0.03f})];
  w.hairline = lerp(-45, -33, t[kHairline]);
  w.hair_volume = lerp(2, 9, t[kHairVolume]);
  w.hair_part = lerp(-0.6f, 0.6f, t[kHairPart]);
  w.hair_recede = std::max(0.f, lerp(-6, 12, t[kHairRecede]));
  w.beard = pick(t[kBeard], {0.62f, 0.12f, 0.09f, 0.08f, 0.09f});
  w.beard_density = lerp(0.45f, 0.95f, t[kBeardDensity]);

  Rng marks(mix((uint64_t)(t[kMarkSeed] * 1e9), kMarkStream));
  const int moles = (int)(sq(t[kMoles]) * 5);
  for (int i = 0; i < moles; ++i)
    w.moles.push_back({(float)marks.uniform(-0.75, 0.75), (float)marks.uniform(-0.6, 0.85), (float)marks.uniform(0.6, 1.6)});
  if (t[kScar] < 0.15f)
    w.scars.push_back({(float)marks.uniform(-0.6, 0.6), (float)marks.uniform(-0.6, 0.6), 0.6f,
                       (float)marks.uniform(0, kPi), (float)marks.uniform(5, 14)});
  const int freckles = t[kFreckles] > 0.75f ? (int)((t[kFreckles] - 0.75f) * 4 * 70) : 0;
  for (int i = 0; i < freckles; ++i)
    w.freckles.push_back({(float)marks.normal() * 0.35f, (float)(0.15 + marks.normal() * 0.15), (float)marks.uniform(0.4, 0.8)});
}

// One image's choices. Every random number is drawn whatever the nuisance strengths, so that
// an image keeps its character (which way it looks, where the light comes from) across levels.
struct Shot {
  float yaw, pitch, roll, scale, tx, ty;
  float smile, open, brow_raise, closure, gaze_x, gaze_y;
  float lx, ly, light_k, brightness, contrast;
  Rgb cast, bg0, bg1, cloth;
  float bg_angle;
  bool glasses, sunglasses, mask, bar;
  Rgb frame_colour, mask_colour, bar_colour;
  float glass_round, mask_top, bar_x, bar_y, bar_angle, bar_w;
  float blur, low_res, noise;
  int jpeg_quality;  // 0 = none
};

Shot draw_shot(Rng& r, const Nuisance& n) {
  auto gauss = [&](float sd, float limit) { return std::clamp((float)r.normal() * sd, -limit, limit); };
  auto chance = [&](double p) { return r.uniform() < p; };
  auto colour = [&] { return Rgb{(float)r.uniform(), (float)r.uniform(), (float)r.uniform()}; };
  const float p = (float)n.pose, e = (float)n.expression, l = (float)n.light, o = (float)n.occlusion,
              q = (float)n.quality;
  constexpr float deg = kPi / 180;
  Shot s{};
  s.yaw = gauss((4 + 20 * p) * deg, (8 + 37 * p) * deg);
  s.pitch = gauss((3 + 10 * p) * deg, (6 + 22 * p) * deg);
  s.roll = gauss((2 + 7 * p) * deg, (5 + 20 * p) * deg);
  s.scale = std::exp(gauss(0.02f + 0.06f * p, 0.25f));
  s.tx = gauss(0.8f + 3 * p, 12);
  s.ty = gauss(0.8f + 3 * p, 12);

  const float u_smile = (float)r.uniform();
  s.smile = sq(u_smile) * (0.2f + 0.8f * e) - 0.1f * (float)r.uniform() * e;
  const bool open = chance(0.05 + 0.35 * e);
  const float u_open = (float)r.uniform();
  s.open = open ? u_open * (1.5f + 6 * e) : 0;
  s.brow_raise = gauss(0.4f + 2.2f * e, 5);
  const bool closed = chance(0.02 + 0.1 * e);
  const float u_close = (float)r.uniform();
  s.closure = closed ? lerp(0.6f, 1.f, u_close) : u_close * 0.3f * e;
  s.gaze_x = gauss(0.15f + 0.25f * e, 0.6f);
  s.gaze_y = gauss(0.05f + 0.1f * e, 0.3f);

  const float angle = (float)r.uniform(0, 2 * kPi), reach = (float)r.uniform();
  s.lx = std::cos(angle) * reach * (0.25f + 0.75f * l);
  s.ly = std::sin(angle) * reach * (0.25f + 0.75f * l) - 0.25f;  // light from above on average
  s.light_k = (float)r.uniform(0.2, 0.35 + 0.45 * l);
  s.brightness = gauss(0.03f + 0.1f * l, 0.35f);
  s.contrast = std::exp(gauss(0.05f + 0.18f * l, 0.6f));
  s.cast = {gauss(0.015f + 0.05f * l, 0.2f), gauss(0.015f + 0.05f * l, 0.2f), gauss(0.015f + 0.05f * l, 0.2f)};
  // Backdrops are mostly muted, like walls and foliage behind real faces.
  const Rgb grey{0.5f, 0.5f, 0.5f};
  s.bg0 = mix(colour(), grey, (float)r.uniform(0.2, 0.8));
  s.bg1 = mix(colour(), grey, (float)r.uniform(0.2, 0.8));
  s.bg_angle = (float)r.uniform(0, 2 * kPi);
  s.cloth = colour();

  s.glasses = chance(0.06 + 0.25 * o);
  s.sunglasses = chance(0.2);
  s.frame_colour = palette((float)r.uniform(), {{0.05f, 0.05f, 0.05f}, {0.35f, 0.2f, 0.1f}, {0.75f, 0.62f, 0.3f}, {0.7f, 0.7f, 0.72f}});
  s.glass_round = (float)r.uniform();
  s.mask = chance(0.22 * o);
  s.mask_colour = palette((float)r.uniform(), {{0.55f, 0.75f, 0.9f}, {0.95f, 0.95f, 0.95f}, {0.1f, 0.1f, 0.12f}, {0.6f, 0.8f, 0.7f}});
  s.mask_top = (float)r.uniform();
  s.bar = chance(0.25 * o);
  s.bar_colour = colour();
  s.bar_x = (float)r.uniform(10, 102);
  s.bar_y = (float)r.uniform(10, 102);
  s.bar_angle = (float)r.uniform(0, kPi);
  s.bar_w = (float)r.uniform(5, 5 + 14 * o);

  const bool blur = chance(0.15 + 0.5 * q);
  const float u_blur = (float)r.uniform();
  s.blur = blur ? lerp(0.3f, 0.5f + 1.5f * q, u_blur) : 0;
  const bool low = chance(0.35 * q);
  const float u_low = (float)r.uniform();
  s.low_res = low ? lerp(0.55f - 0.3f * q, 0.85f, u_low) : 1;
  s.noise = (float)r.uniform(0.5, 2 + 7 * q);
  const bool jpeg = chance(0.25 + 0.5 * q);
  const float u_q = (float)r.uniform();
  s.jpeg_quality = jpeg ? (int)lerp(90 - 65 * q, 95, u_q) : 0;
  return s;
}

// Where face points land in the image: yaw and pitch move points by their depth, then the
// image is re-aligned on the eyes (as a 5-point alignment would), then roll, scale and shift.
class Pose {
 public:
  Pose(const Identity& w, const Shot& s, float pixels_per_unit) : w_(w) {
    cy_ = std::cos(s.yaw);
    sy_ = std::sin(s.yaw);
    cp_ = std::cos(s.pitch);
    sp_ = std::sin(s.pitch);
    const float k = pixels_per_unit * s.scale;
    m00_ = k * std::cos(s.roll);
    m01_ = -k * std::sin(s.roll);
    m10_ = k * std::sin(s.roll);
    m11_ = k * std::cos(s.roll);
    ox_ = pixels_per_unit * (kCentreX + s.tx);
    oy_ = pixels_per_unit * (kCentreY + s.ty);
    float ex, ey;
    rotate(0, w.eye_y, depth(0, w.eye_y), ex, ey);
    comp_x_ = ex;
    comp_y_ = ey - w.eye_y;
  }
  // Depth of the face surface at (x, y): a flattened ellipsoid.
  float depth(float x, float y) const {
    return 0.6f * w_.face_a * std::sqrt(std::max(0.f, 1 - sq(x / (w_.face_a * 1.05f)) - sq(y / (w_.face_b * 1.05f))));
  }
  float yaw_sin() const { return sy_; }
  // Local frame at face point (x, y, z) whose u and v axes are the face vectors eu, ev.
  Frame frame(float x, float y, float z, float eux, float euy, float evx, float evy) const {
    float rx, ry;
    rotate(x, y, z, rx, ry);
    Frame f;
    place(rx - comp_x_, ry - comp_y_, f.ox, f.oy);
    linear(eux, euy, f.eux, f.euy);
    linear(evx, evy, f.evx, f.evy);
    return f;
  }
  Frame frame(float x, float y, float z) const { return frame(x, y, z, 1, 0, 0, 1); }
  // The head's silhouette: an ellipsoid keeps its outline centred while it turns, narrower by
  // how much of its depth comes into view.
  Frame head() const {
    Frame f;
    place(-comp_x_, -comp_y_, f.ox, f.oy);
    const float kx = std::sqrt(sq(cy_) + sq(0.6f * sy_)), ky = std::sqrt(sq(cp_) + sq(0.6f * w_.face_a / w_.face_b * sp_));
    f.eux = m00_ * kx;
    f.euy = m10_ * kx;
    f.evx = m01_ * ky;
    f.evy = m11_ * ky;
    return f;
  }

 private:
  void rotate(float x, float y, float z, float& rx, float& ry) const {
    rx = x * cy_ + z * sy_;
    const float z1 = -x * sy_ + z * cy_;
    ry = y * cp_ - z1 * sp_;
  }
  // Surface vectors foreshorten as the point moves (depth held fixed).
  void linear(float dx, float dy, float& px, float& py) const {
    const float rx = dx * cy_, ry = dy * cp_ + dx * sy_ * sp_;
    px = m00_ * rx + m01_ * ry;
    py = m10_ * rx + m11_ * ry;
  }
  void place(float rx, float ry, float& px, float& py) const {
    px = ox_ + m00_ * rx + m01_ * ry;
    py = oy_ + m10_ * rx + m11_ * ry;
  }
  const Identity& w_;
  float cy_, sy_, cp_, sp_, m00_, m01_, m10_, m11_, ox_, oy_, comp_x_, comp_y_;
};

// Smooth 8x8 value noise over the face, (nx, ny) in [-1, 1].
float texture_at(const Identity& w, float nx, float ny) {
  const float gx = std::clamp((nx + 1) * 3.5f, 0.f, 6.999f), gy = std::clamp((ny + 1) * 3.5f, 0.f, 6.999f);
  const int ix = (int)gx, iy = (int)gy;
  const float fx = smoothstep(0, 1, gx - ix), fy = smoothstep(0, 1, gy - iy);
  const float* t = w.texture.data();
  const float top = lerp(t[iy * 8 + ix], t[iy * 8 + ix + 1], fx), bot = lerp(t[(iy + 1) * 8 + ix], t[(iy + 1) * 8 + ix + 1], fx);
  return lerp(top, bot, fy);
}

// Cheap hash noise in [0, 1) for hair strands and stubble.
float hash01(float x, float y) {
  uint32_t h = (uint32_t)(int32_t)std::floor(x) * 73856093u ^ (uint32_t)(int32_t)std::floor(y) * 19349663u;
  h ^= h >> 13;
  h *= 0x5bd1e995u;
  h ^= h >> 15;
  return (h & 0xffffff) / 16777216.f;
}

// Face outline: an ellipse whose lower half narrows toward the chin by `jaw`.
float face_shape(const Identity& w, float u, float v, float grow = 0) {
  const float a = w.face_a + grow, b = w.face_b + grow;
  const float t = std::clamp(v / b, 0.f, 1.f);
  const float taper = 1 - (1 - w.jaw) * t * t * (1 - w.chin + w.chin * t);  // a pointed chin narrows late
  return (std::sqrt(sq(u / (a * taper)) + sq(v / b)) - 1) * a;
}

// JPEG's loss, emulated: 4:2:0 chroma, 8x8 DCT with the standard tables scaled by quality.
void jpeg_like(Image& img, int quality) {
  static const int kLuma[64] = {16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
                                14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
                                18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                                49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99};
  static const int kChroma[64] = {17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
                                  24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
                                  99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
                                  99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99};
  // The DCT as matrix products, F = C B C^T and B = C^T F C, with loops that vectorise.
  static const auto kC = [] {
    std::array<float, 128> c{};  // C, then C^T
    for (int k = 0; k < 8; ++k)
      for (int n = 0; n < 8; ++n) c[k * 8 + n] = c[64 + n * 8 + k] = (k ? 0.5f : 0.35355339f) * std::cos((2 * n + 1) * k * kPi / 16);
    return c;
  }();
  const float* C = kC.data();
  const float* Ct = kC.data() + 64;
  auto mul8 = [](const float* A, const float* B, float* out) {
    for (int i = 0; i < 64; ++i) out[i] = 0;
    for (int i = 0; i < 8; ++i)
      for (int k = 0; k < 8; ++k) {
        const float a = A[i * 8 + k];
        for (int j = 0; j < 8; ++j) out[i * 8 + j] += a * B[k * 8 + j];
      }
  };
  quality = std::clamp(quality, 1, 100);
  const float qs = (quality < 50 ? 5000.f / quality : 200.f - 2 * quality) / 100.f;
  auto quantise = [&](std::vector<float>& plane, int w, int h, const int* table) {
    float step[64], inv[64], blk[64], tmp[64];
    for (int i = 0; i < 64; ++i) {
      step[i] = std::max(1.f, std::floor(table[i] * qs + 0.5f));
      inv[i] = 1 / step[i];
    }
    for (int by = 0; by < h; by += 8)
      for (int bx = 0; bx < w; bx += 8) {
        for (int y = 0; y < 8; ++y)
          for (int x = 0; x < 8; ++x) blk[y * 8 + x] = plane[(size_t)std::min(by + y, h - 1) * w + std::min(bx + x, w - 1)] - 128;
        mul8(C, blk, tmp);
        mul8(tmp, Ct, blk);
        for (int i = 0; i < 64; ++i) blk[i] = std::nearbyint(blk[i] * inv[i]) * step[i];
        mul8(Ct, blk, tmp);
        mul8(tmp, C, blk);
        for (int y = 0; y < 8 && by + y < h; ++y)
          for (int x = 0; x < 8 && bx + x < w; ++x) plane[(size_t)(by + y) * w + bx + x] = blk[y * 8 + x] + 128;
      }
  };
  const int w = img.width, h = img.height, cw = (w + 1) / 2, ch = (h + 1) / 2;
  std::vector<float> Y((size_t)w * h), Cb((size_t)cw * ch, 0.f), Cr((size_t)cw * ch, 0.f);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const uint8_t* p = img.at(y, x);
      Y[(size_t)y * w + x] = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
      Cb[(size_t)(y / 2) * cw + x / 2] += 0.25f * (128 - 0.168736f * p[0] - 0.331264f * p[1] + 0.5f * p[2]);
      Cr[(size_t)(y / 2) * cw + x / 2] += 0.25f * (128 + 0.5f * p[0] - 0.418688f * p[1] - 0.081312f * p[2]);
    }
  if (w % 2 || h % 2)  // odd edges summed fewer than four pixels: rescale those cells
    for (int cy = 0; cy < ch; ++cy)
      for (int cx = 0; cx < cw; ++cx) {
        const int n = (std::min(2, h - 2 * cy)) * (std::min(2, w - 2 * cx));
        Cb[(size_t)cy * cw + cx] *= 4.f / n;
        Cr[(size_t)cy * cw + cx] *= 4.f / n;
      }
  quantise(Y, w, h, kLuma);
  quantise(Cb, cw, ch, kChroma);
  quantise(Cr, cw, ch, kChroma);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const float yy = Y[(size_t)y * w + x], cb = Cb[(size_t)(y / 2) * cw + x / 2] - 128, cr = Cr[(size_t)(y / 2) * cw + x / 2] - 128;
      uint8_t* p = img.at(y, x);
      p[0] = to_u8(yy + 1.402f * cr);
      p[1] = to_u8(yy - 0.344136f * cb - 0.714136f * cr);
      p[2] = to_u8(yy + 1.772f * cb);
    }
}

// Draws one image of one identity.
class Painter {
 public:
  Painter(const Identity& w, const Shot& s, int size) : w_(w), s_(s), S_(size / 112.f), pose_(w, s, S_), cv_(size, size) {}

  Image paint(Rng& noise_rng) {
    background();
    behind_head();
    face();
    marks();
    beard();
    for (int side : {-1, 1}) eye(side);
    for (int side : {-1, 1}) brow(side);
    nose();
    mouth();
    front_hair();
    if (s_.glasses) glasses();
    if (s_.mask) mask();
    if (s_.bar) bar();
    Image img = expose(noise_rng);
    degrade(img);
    return img;
  }

 private:
  // Per-pixel local coordinates in the head frame (for lighting).
  void background() {
    const float ca = std::cos(s_.bg_angle), sa = std::sin(s_.bg_angle), n = (float)cv_.width;
    for (int y = 0; y < cv_.height; ++y)
      for (int x = 0; x < cv_.width; ++x) {
        const float t = clamp01(0.5f + ((x - n / 2) * ca + (y - n / 2) * sa) / n);
        const Rgb c = mix(s_.bg0, s_.bg1, t);
        float* d = cv_.at(y, x);
        d[0] = c.r;
        d[1] = c.g;
        d[2] = c.b;
      }
  }

  Rgb skin(float k) const { return w_.skin * k; }

  void behind_head() {
    const Frame head = pose_.head();
    const float a = w_.face_a, b = w_.face_b;
    // Clothes and neck, below the chin.
    fill(cv_, head, -2.6f * a, 2.6f * a, b * 0.8f, b * 2.2f, [&](float u, float v) { return ellipse(u, v - b * 1.75f, 2.4f * a, 0.95f * b); },
         solid(s_.cloth));
    cv_.object = 1;
    const float neck = a * lerp(0.5f, 0.62f, w_.jaw);
    fill(cv_, head, -neck - 2, neck + 2, 0, b * 2.2f, [&](float u, float v) { return std::max(std::abs(u) - neck, -v); },
         [&](float u, float v) { return Paint{skin(0.78f - 0.1f * clamp01((v - b) / 10)), 1}; });
    if (w_.hair_style == kLong) {
      const float A = a + w_.hair_volume + 4, B = b + 18;
      fill(cv_, head, -A, A, -B, b * 1.3f, [&](float u, float v) { return std::max(ellipse(u, v - 12, A, B), v - b * 1.2f); },
           [&](float u, float v) { return Paint{hair_paint(u, v) * 0.8f, 1}; });
    }
    // Ears, on the sides at eye-to-nose height.
    for (int side : {-1, 1}) {
      const float ey = (w_.eye_y + w_.nose_y) / 2, ex = side * (a * 0.97f);
      const Frame f = pose_.frame(ex, ey, -0.1f * a);
      const float ew = 5.5f * w_.ear, eh = 10 * w_.ear;
      fill(cv_, f, -ew - 1, ew + 1, -eh - 1, eh + 1, [&](float u, float v) { return ellipse(u, v, ew, eh); },
           [&](float u, float v) { return Paint{skin(0.93f - 0.2f * clamp01(1 - std::abs(u * side - 1) / ew)), 1}; });
    }
  }

  Rgb hair_paint(float u, float v) const {
    const float strand = 0.85f + 0.15f * std::sin(u * 1.7f + 3 * hash01(u * 0.6f, 0) + v * 0.15f);
    return w_.hair * strand;
  }

  void face() {
    const Frame head = pose_.head();
    const float a = w_.face_a, b = w_.face_b;
    fill(cv_, head, -a, a, -b, b, [&](float u, float v) { return face_shape(w_, u, v); }, [&](float u, float v) {
      const float nx = u / a, ny = v / b;
      float k = 1 + w_.texture_amp * texture_at(w_, nx, ny);
      k *= 1 - 0.18f * sq(sq(nx) + sq(ny));  // the rim turns away from the camera
      Rgb c = skin(k);
      const float cheeks = sq(sq(std::max(0.f, 1 - (sq(std::abs(nx) - 0.5f) + sq(ny - 0.25f)) / 0.16f)));  // ~exp(-d/0.04)
      c = mix(c, Rgb{0.85f, 0.38f, 0.38f} * k, w_.blush * cheeks);
      return Paint{c, 1};
    });
  }

  // A point given in face-normalised coordinates, on the surface.
  Frame surface(float nx, float ny) const {
    const float x = nx * w_.face_a, y = ny * w_.face_b;
    return pose_.frame(x, y, pose_.depth(x, y));
  }

  void marks() {
    for (const Mark& m : w_.moles)
      fill(cv_, surface(m.x, m.y), -3, 3, -3, 3, [&](float u, float v) { return ellipse(u, v, m.radius, m.radius * 0.9f); },
           solid(skin(0.45f) * Rgb{0.9f, 0.8f, 0.8f}, 0.85f));
    for (const Mark& m : w_.freckles)
      fill(cv_, surface(m.x, m.y), -2, 2, -2, 2, [&](float u, float v) { return ellipse(u, v, m.radius, m.radius); },
           solid(skin(0.7f) * Rgb{1.f, 0.85f, 0.75f}, 0.4f));
    for (const Mark& m : w_.scars) {
      const float c = std::cos(m.angle), s = std::sin(m.angle), x = m.x * w_.face_a, y = m.y * w_.face_b;
      const Frame f = pose_.frame(x, y, pose_.depth(x, y), c, s, -s, c);
      const float half = m.length / 2;
      fill(cv_, f, -half - 2, half + 2, -3, 3,
           [&](float u, float v) { return std::max(std::abs(v + 0.02f * sq(u)) - m.radius, std::abs(u) - half); },
           solid(skin(1.08f) + Rgb{0.08f, 0.f, 0.f}, 0.75f));
    }
  }

  void beard() {
    if (w_.beard == kNoBeard) return;
    const float a = w_.face_a, b = w_.face_b, d = w_.beard_density;
    const Frame head = pose_.head();
    auto hairy = [&](float alpha) {
      return [&, alpha](float u, float v) { return Paint{w_.hair * 0.9f, alpha * (0.6f + 0.4f * hash01(u * 2.3f, v * 2.3f))}; };
    };
    const float top = w_.nose_y + 3;
    if (w_.beard == kStubble || w_.beard == kFullBeard) {
      const float alpha = w_.beard == kStubble ? 0.35f * d : 0.9f * d;
      // Cheeks and chin below a line that rises toward the ears.
      fill(cv_, head, -a, a, w_.eye_y, b, [&](float u, float v) {
        const float line = top + 6 - 14 * sq(u / a);
        return std::max(face_shape(w_, u, v, -0.5f), line - v);
      }, hairy(alpha), 2.f);
    }
    if (w_.beard == kMoustache || w_.beard == kGoatee || w_.beard == kFullBeard) {
      const float my = w_.mouth_y - w_.lip_up - 2.2f;
      fill(cv_, pose_.frame(0, my, pose_.depth(0, my) + 3), -20, 20, -6, 6,
           [&](float u, float v) { return ellipse(u, v - 0.05f * sq(u), w_.mouth_w * 1.1f, 2.6f); }, hairy(0.9f * d));
    }
    if (w_.beard == kGoatee) {
      const float cy = w_.mouth_y + 10;
      fill(cv_, pose_.frame(0, cy, pose_.depth(0, cy)), -12, 12, -12, 12, [&](float u, float v) { return ellipse(u, v, 7, 8); },
           hairy(0.85f * d), 1.5f);
    }
  }

  void eye(int side) {
    const float ex = side * w_.eye_dx, ey = w_.eye_y, z = pose_.depth(ex, ey);
    const float c = std::cos(w_.eye_tilt), s = std::sin(w_.eye_tilt);
    // u points outward along the eye with the outer corner raised by the tilt; v points down.
    const Frame f = pose_.frame(ex, ey, z, side * c, -s, side * s, c);
    const float ew = w_.eye_w, open = 1 - s_.closure, eh = w_.eye_h * open, lo = w_.eye_h * 0.6f * open;
    // Socket shadow and lid crease.
    fill(cv_, f, -ew * 1.6f, ew * 1.6f, -w_.eye_h * 3, w_.eye_h * 2, [&](float u, float v) { return ellipse(u, v + w_.eye_h * 0.6f, ew * 1.35f, w_.eye_h * 1.9f); },
         solid(skin(0.72f), 0.35f), 3.f);
    auto upper = [&](float u) { return -eh * (1 - sq(u / ew)) - 0.4f * u / ew; };
    auto lower = [&](float u) { return lo * (1 - sq(u / ew)) - 0.4f * u / ew; };
    auto eye_f = [&](float u, float v) { return std::max(upper(u) - v, v - lower(u)); };
    if (open > 0.15f) {
      fill(cv_, f, -ew, ew, -eh - 1, lo + 1, eye_f, solid({0.93f, 0.91f, 0.88f}));
      const float gx = s_.gaze_x * ew * side, gy = s_.gaze_y * w_.eye_h;
      const float ir = w_.iris_r;
      fill(cv_, f, -ew, ew, -eh - 1, lo + 1, [&](float u, float v) { return std::max(eye_f(u, v), std::hypot(u - gx, v - gy) - ir); },
           [&](float u, float v) {
             const float r = std::hypot(u - gx, v - gy) / ir;
             return Paint{w_.iris * (1.1f - 0.5f * sq(r)), 1};
           });
      fill(cv_, f, -ew, ew, -eh - 1, lo + 1, [&](float u, float v) { return std::max(eye_f(u, v), std::hypot(u - gx, v - gy) - ir * 0.45f); },
           solid({0.04f, 0.03f, 0.03f}));
      fill(cv_, f, -ew, ew, -eh - 1, lo + 1,
           [&](float u, float v) { return std::max(eye_f(u, v), std::hypot(u - gx - ir * 0.35f * side, v - gy + ir * 0.35f) - ir * 0.2f); },
           solid({1, 1, 1}, 0.8f));
    }
    // Upper lid line (the lashes); with the eye closed it is all that shows.
    const float lw = 0.55f + 0.25f * (1 - open);
    fill(cv_, f, -ew - 2, ew + 2, -eh - 3, lo + 3, [&](float u, float v) { return std::max(std::abs(v - upper(u)) - lw, std::abs(u) - ew * 1.05f); },
         solid(mix(w_.hair, {0.05f, 0.04f, 0.04f}, 0.6f), 0.85f));
    fill(cv_, f, -ew - 2, ew + 2, -eh - 3, lo + 3, [&](float u, float v) { return std::max(std::abs(v - lower(u)) - 0.35f, std::abs(u) - ew * 0.9f); },
         solid(skin(0.6f), 0.35f));
  }

  void brow(int side) {
    const float bx = side * (w_.eye_dx + 1), by = w_.eye_y - w_.brow_gap - s_.brow_raise, z = pose_.depth(bx, by) + 2;
    const float c = std::cos(w_.brow_tilt), s = std::sin(w_.brow_tilt);
    const Frame f = pose_.frame(bx, by, z, side * c, -s, side * s, c);
    const float L = w_.brow_len, t = w_.brow_thick;
    fill(cv_, f, -L - 1, L + 1, -t - w_.brow_arch - 2, t + 2,
         [&](float u, float v) {
           const float centre = -w_.brow_arch * (1 - sq(u / L)), taper = t * (1 - 0.35f * (u + L) / (2 * L));
           return std::max(std::abs(v - centre) - taper * std::sqrt(std::max(0.f, 1 - sq(u / L))), std::abs(u) - L);
         },
         [&](float u, float v) { return Paint{mix(w_.hair, {0.1f, 0.08f, 0.06f}, 0.4f), 0.75f + 0.2f * hash01(u * 2.1f, v * 3)}; });
  }

  void nose() {
    const float ty = w_.nose_y, tz = pose_.depth(0, ty) + w_.nose_depth, nw = w_.nose_w;
    // The side of the nose away from the light is shaded; the bridge runs up to the eyes.
    for (int side : {-1, 1}) {
      const float shade = 0.12f + 0.35f * std::max(0.f, -side * s_.lx) + 0.2f * std::max(0.f, side * pose_.yaw_sin());
      const float x = side * nw * 0.55f, y = (w_.eye_y + ty) / 2;
      const Frame f = pose_.frame(x, y, pose_.depth(0, y) + w_.nose_depth * 0.5f);
      const float half = (ty - w_.eye_y) / 2;
      fill(cv_, f, -6, 6, -half - 4, half + 4, [&](float u, float v) { return ellipse(u - side * 0.15f * (v + half), v, 1.8f, half); },
           solid(skin(0.6f), shade), 3.f);
    }
    const Frame tip = pose_.frame(0, ty, tz);
    fill(cv_, tip, -nw - 4, nw + 4, -6, 8, [&](float u, float v) { return ellipse(u, v - 3.2f, nw * 1.05f, 2.4f); }, solid(skin(0.6f), 0.35f), 2.5f);
    fill(cv_, tip, -5, 5, -5, 5, [&](float u, float v) { return ellipse(u, v + 0.5f, 3.2f, 2.6f); }, solid(skin(1.12f), 0.35f), 2.f);
    for (int side : {-1, 1})
      fill(cv_, tip, -nw - 3, nw + 3, -3, 6, [&](float u, float v) {
        const float du = u - side * nw * 0.5f, dv = v - 2.1f;
        return ellipse(du * 0.94f + dv * side * 0.34f, dv * 0.94f - du * side * 0.34f, 2.0f, 1.05f);
      }, solid(skin(0.3f), 0.8f));
  }

  void mouth() {
    const float my = w_.mouth_y, z = pose_.depth(0, my) + 4, mw = w_.mouth_w;
    const Frame f = pose_.frame(0, my, z);
    const float smile = s_.smile, open = s_.open;
    auto line = [&](float u) { return (smile * 1.5f) - (smile * 3.5f + w_.mouth_curve) * sq(u / mw); };
    auto prof = [&](float u) { return std::sqrt(std::max(0.f, 1 - sq(u / mw))); };
    auto inner_up = [&](float u) { return line(u) - open * 0.5f * prof(u); };
    auto inner_lo = [&](float u) { return line(u) + open * 0.5f * prof(u); };
    auto bow = [&](float u) { return 1 - 0.3f * std::exp(-sq(u / (0.16f * mw))); };
    auto outer_up = [&](float u) { return inner_up(u) - w_.lip_up * prof(u) * bow(u); };
    auto outer_lo = [&](float u) { return inner_lo(u) + w_.lip_lo * std::pow(prof(u), 0.7f); };
    const float v0 = -w_.lip_up - open - 6, v1 = w_.lip_lo + open + 6;
    auto bounded = [&](float g, float u) { return std::max(g, std::abs(u) - mw); };
    if (open > 0.4f) {
      auto inside = [&](float u, float v) { return bounded(std::max(inner_up(u) - v, v - inner_lo(u)), u); };
      fill(cv_, f, -mw, mw, v0, v1, inside, solid({0.22f, 0.06f, 0.06f}));
      fill(cv_, f, -mw, mw, v0, v1, [&](float u, float v) { return std::max(inside(u, v), v - inner_up(u) - std::min(open * 0.45f, 2.6f)); },
           solid({0.93f, 0.9f, 0.84f}));
    }
    fill(cv_, f, -mw, mw, v0, v1, [&](float u, float v) { return bounded(std::max(outer_up(u) - v, v - inner_up(u)), u); },
         solid(w_.lip * 0.92f));
    fill(cv_, f, -mw, mw, v0, v1, [&](float u, float v) { return bounded(std::max(inner_lo(u) - v, v - outer_lo(u)), u); },
         [&](float u, float v) { return Paint{w_.lip * (1.02f + 0.1f * (1 - sq(u / mw))), 1}; });
    fill(cv_, f, -mw - 1, mw + 1, v0, v1, [&](float u, float v) { return std::max(std::abs(v - line(u)) - 0.45f, std::abs(u) - mw * 1.03f); },
         solid(w_.lip * 0.45f, open > 0.4f ? 0.f : 0.7f));
  }

  void front_hair() {
    if (w_.hair_style == kBald) return;
    const Frame head = pose_.head();
    const float a = w_.face_a, b = w_.face_b, vol = w_.hair_style == kBuzz ? 0.8f : w_.hair_volume;
    const float A = a + vol, B = b + vol;
    const float ear_y = (w_.eye_y + w_.nose_y) / 2;
    float side_drop;  // how far down the sides the hair reaches
    switch (w_.hair_style) {
      case kMedium: case kLong: side_drop = ear_y + 8; break;
      case kBuzz: side_drop = w_.eye_y - 4; break;
      default: side_drop = w_.eye_y + 2;
    }
    const float fringe = w_.hair_style == kBangs ? w_.eye_y - w_.brow_gap - 5 : w_.hairline;
    auto hairline = [&](float u) {
      const float nu = u / a, tu = smoothstep(0.6f, 0.92f, std::abs(nu));
      float h = lerp(fringe + 4 * sq(nu), side_drop, tu);
      if (w_.hair_style == kShort || w_.hair_style == kBuzz)  // temples recede: an M-shaped hairline
        h -= w_.hair_recede * std::exp(-sq(std::abs(nu) - 0.42f) / 0.03f);
      if (w_.hair_style == kSideSwept) h += 6 * (nu - w_.hair_part);
      if (w_.hair_style == kBangs) h += 1.5f * std::sin(u * 0.9f);
      return h;
    };
    const float alpha = w_.hair_style == kBuzz ? 0.75f : 1.f;
    const float lowest = std::max(side_drop, fringe + 6) + 2;
    fill(cv_, head, -A, A, -B - 1, lowest, [&](float u, float v) { return std::max(ellipse(u, v, A, B), v - hairline(u)); },
         [&](float u, float v) {
           const float parted = (w_.hair_style == kShort || w_.hair_style == kMedium || w_.hair_style == kLong)
                                    ? 1 - 0.35f * std::exp(-sq(u - w_.hair_part * a) / 2) * smoothstep(-b, -b * 0.6f, -v)
                                    : 1.f;
           const float grain = w_.hair_style == kBuzz ? 0.8f + 0.2f * hash01(u * 2, v * 2) : 1.f;
           return Paint{hair_paint(u, v) * parted * grain, alpha};
         });
    if (w_.hair_style == kBun)
      fill(cv_, head, -16, 16, -B - 20, -B + 10, [&](float u, float v) { return ellipse(u, v + B + 4, 13, 10); },
           [&](float u, float v) { return Paint{hair_paint(u, v), 1}; });
  }

  void glasses() {
    const Rgb frame = s_.frame_colour;
    const float r = lerp(1.5f, 4, s_.glass_round);  // superellipse exponent: round to rectangular
    for (int side : {-1, 1}) {
      const float ex = side * w_.eye_dx, ey = w_.eye_y + 1, z = pose_.depth(ex, ey) + 4;
      const Frame f = pose_.frame(ex, ey, z);
      const float rx = w_.eye_w * 1.55f, ry = w_.eye_w * 1.2f;
      auto lens = [&](float u, float v) { return (std::pow(std::pow(std::abs(u / rx), r) + std::pow(std::abs(v / ry), r), 1 / r) - 1) * ry; };
      fill(cv_, f, -rx - 2, rx + 2, -ry - 2, ry + 2, lens, solid(s_.sunglasses ? Rgb{0.06f, 0.06f, 0.08f} : Rgb{0.8f, 0.85f, 0.9f}, s_.sunglasses ? 0.9f : 0.12f));
      fill(cv_, f, -rx - 2, rx + 2, -ry - 2, ry + 2, [&](float u, float v) { return std::abs(lens(u, v)) - 0.8f; }, solid(frame));
      // Temple arm toward the ear.
      fill(cv_, f, -rx - 16, rx + 16, -4, 4, [&](float u, float v) {
        return std::max(std::abs(v + 2) - 0.7f, std::max(rx - side * u, side * u - rx - 14));
      }, solid(frame));
    }
    const float by = w_.eye_y - 1;
    fill(cv_, pose_.frame(0, by, pose_.depth(0, by) + 8), -8, 8, -3, 3,
         [&](float u, float v) { return std::max(std::abs(v + 0.06f * sq(u)) - 0.8f, std::abs(u) - (w_.eye_dx - w_.eye_w * 1.5f)); },
         solid(frame));
  }

  void mask() {
    const Frame head = pose_.head();
    const float a = w_.face_a, b = w_.face_b, top = lerp(w_.eye_y + 8, w_.nose_y - 1, s_.mask_top);
    fill(cv_, head, -a - 2, a + 2, top - 4, b + 4, [&](float u, float v) {
      return std::max(face_shape(w_, u, v, 1.f), top + 5 * sq(u / a) - v);
    }, [&](float u, float v) {
      const float pleat = 0.92f + 0.08f * std::cos((v - top) * 0.9f);
      return Paint{s_.mask_colour * pleat, 1};
    });
  }

  void bar() {
    cv_.object = 0;  // in front of the head, lit like the backdrop
    const float c = std::cos(s_.bar_angle), s = std::sin(s_.bar_angle);
    Frame f{s_.bar_x * S_, s_.bar_y * S_, c * S_, s * S_, -s * S_, c * S_};
    fill(cv_, f, -160, 160, -s_.bar_w, s_.bar_w, [&](float, float v) { return std::abs(v) - s_.bar_w / 2; }, solid(s_.bar_colour));
  }

  // Directional light on the head (an ellipsoid's normals), exposure, colour cast and sensor
  // noise, in one pass that also quantises to 8 bits.
  Image expose(Rng& r) {
    const Frame h = pose_.head();
    const float det = h.eux * h.evy - h.evx * h.euy, A = w_.face_a * 1.08f, B = w_.face_b * 1.15f;
    float lx = s_.lx, ly = s_.ly, lz = 1;
    const float ln = std::sqrt(lx * lx + ly * ly + lz * lz);
    lx /= ln, ly /= ln, lz /= ln;
    const float k = s_.light_k, flat = (1 - k) + k * 1.25f * lz;
    // Pixel -> head-normalised coordinates, as increments per pixel.
    const float nxx = h.evy / det / A, nxy = -h.evx / det / A, nyx = -h.euy / det / B, nyy = h.eux / det / B;
    const float gain = 255 * s_.contrast, offset = 255 * (0.5f + s_.brightness - 0.5f * s_.contrast);
    const float cr = gain * (1 + s_.cast.r), cg = gain * (1 + s_.cast.g), cb = gain * (1 + s_.cast.b);
    const float sd = s_.noise * 1.732f;  // a sum of four uniforms has variance 1/3
    const int n = cv_.width;
    Image img(n, n, 3);
    for (int y = 0; y < n; ++y)
      for (int x = 0; x < n; ++x) {
        const float dx = x + 0.5f - h.ox, dy = y + 0.5f - h.oy;
        const float nx = nxx * dx + nxy * dy, ny = nyx * dx + nyy * dy;
        const float r2 = nx * nx + ny * ny, inv_r = 1 / (std::sqrt(r2) + 1e-6f);
        // Inside the ellipse the normal tilts with the surface; beyond it (hair volume) it lies
        // in the image plane. The backdrop only gets a soft gradient toward the light.
        const size_t i = (size_t)y * n + x;
        const float m = cv_.object_mask[i];
        float shade = 0;
        if (m > 0) {
          const float nz = std::sqrt(std::max(0.f, 1 - r2)), ex = r2 < 1 ? nx : nx * inv_r, ey = r2 < 1 ? ny : ny * inv_r;
          shade = m * ((1 - k) + k * 1.25f * std::max(0.f, ex * lx + ey * ly + nz * lz));
        }
        if (m < 1) shade += (1 - m) * (flat + k * 0.2f * (nx * lx + ny * ly) * std::min(1.f, inv_r));
        const uint64_t bits = r.next();
        const float grain = offset + sd * (((bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) + (bits >> 48)) / 65536.f - 2);
        const float* c = &cv_.rgb[i * 3];
        uint8_t* d = &img.pixels[i * 3];
        d[0] = to_u8(c[0] * shade * cr + grain);
        d[1] = to_u8(c[1] * shade * cg + grain);
        d[2] = to_u8(c[2] * shade * cb + grain);
      }
    return img;
  }

  // The camera's and the file's losses.
  void degrade(Image& img) {
    const int n = img.width;
    if (s_.low_res < 1) {
      const int low = std::max(8, (int)std::lround(n * s_.low_res));
      low_resolution(img, low, low);
    }
    gaussian_blur(img, s_.blur * S_);
    if (s_.jpeg_quality) jpeg_like(img, s_.jpeg_quality);
  }

  const Identity& w_;
  const Shot& s_;
  float S_;
  Pose pose_;
  Canvas cv_;
};

}  // namespace

double trait_distance(const Identity& a, const Identity& b) {
  double s = 0;
  for (int i = 0; i < kTraitCount; ++i) s += sq(a.traits[i] - b.traits[i]);
  return std::sqrt(s / (int)kTraitCount);
}

SynthFaces::SynthFaces(SynthConfig cfg) : cfg_(cfg) {
  FF_CHECK(cfg_.image_size >= 16 && cfg_.image_size <= 1024, "synth: image_size ", cfg_.image_size, " is outside [16, 1024]");
  FF_CHECK(cfg_.difficulty >= 0 && cfg_.difficulty <= 1, "synth: difficulty ", cfg_.difficulty, " is outside [0, 1]");
  FF_CHECK(cfg_.family_size >= 1, "synth: family_size ", cfg_.family_size, " must be at least 1");
}

Identity SynthFaces::identity(int64_t id) const {
  FF_CHECK(id >= 0, "synth: identity ", id, " is negative");
  Identity w;
  w.id = id;
  w.family = family_of(id);
  Rng fam(mix(cfg_.seed, mix((uint64_t)w.family, kFamilyStream)));
  for (float& t : w.traits) t = (float)fam.uniform();
  if (cfg_.family_size > 1) {
    // A member redraws a few whole trait groups and jitters the rest: fewer and smaller
    // differences as the difficulty rises.
    const double d = cfg_.difficulty;
    Rng mem(mix(cfg_.seed, mix((uint64_t)id, kMemberStream)));
    std::array<int, kTraitGroups> order{};
    for (int g = 0; g < kTraitGroups; ++g) order[g] = g;
    for (int g = kTraitGroups - 1; g > 0; --g) std::swap(order[g], order[mem.below(g + 1)]);
    const int redraw = 1 + (int)std::lround(2 * (1 - d));
    std::array<bool, kTraitGroups> fresh{};
    for (int i = 0; i < redraw; ++i) fresh[order[i]] = true;
    const float jitter = (float)(0.03 + 0.1 * (1 - d));
    for (int t = 0; t < kTraitCount; ++t) {
      const float u = (float)mem.uniform(), g = (float)mem.normal();
      if (fresh[group_of(t)])
        w.traits[t] = u;
      else if (!discrete(t)) {
        float v = std::fmod(std::abs(w.traits[t] + jitter * g), 2.f);  // reflect into [0, 1]
        w.traits[t] = v > 1 ? 2 - v : v;
      }
    }
  }
  derive(w);
  return w;
}

Image SynthFaces::render(int64_t id, int64_t sample, const Nuisance& n) const { return render(identity(id), sample, n); }

Image SynthFaces::render(const Identity& who, int64_t sample, const Nuisance& n) const {
  Rng r(mix(mix(cfg_.seed, (uint64_t)who.id), mix((uint64_t)sample, kImageStream)));
  const Shot shot = draw_shot(r, n);
  return Painter(who, shot, cfg_.image_size).paint(r);
}

Image preview_grid(const SynthFaces& faces, int64_t first_id, int ids, int images_per_id, const Nuisance& n) {
  const int s = faces.config().image_size, gap = 2;
  Image sheet(ids * (s + gap) + gap, images_per_id * (s + gap) + gap, 3);
  std::fill(sheet.pixels.begin(), sheet.pixels.end(), 255);
  for (int i = 0; i < ids; ++i) {
    const Identity who = faces.identity(first_id + i);
    for (int j = 0; j < images_per_id; ++j) {
      const Image img = faces.render(who, j, n);
      for (int y = 0; y < s; ++y)
        std::copy_n(img.at(y, 0), (size_t)s * 3, sheet.at(gap + i * (s + gap) + y, gap + j * (s + gap)));
    }
  }
  return sheet;
}

}  // namespace ff::data::synth
