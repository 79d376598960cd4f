// Anti-aliased filling of implicit shapes on a float RGB canvas, by signed-distance coverage.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace ff::data::synth {

struct Rgb {
  float r = 0, g = 0, b = 0;
};
inline Rgb operator+(Rgb a, Rgb b) { return {a.r + b.r, a.g + b.g, a.b + b.b}; }
inline Rgb operator*(Rgb a, float s) { return {a.r * s, a.g * s, a.b * s}; }
inline Rgb operator*(Rgb a, Rgb b) { return {a.r * b.r, a.g * b.g, a.b * b.b}; }
inline Rgb mix(Rgb a, Rgb b, float t) { return a * (1 - t) + b * t; }

// Colour and opacity of one pixel of a shape.
struct Paint {
  Rgb c;
  float a = 1;
};

struct Canvas {
  int height = 0, width = 0;
  std::vector<float> rgb;    // height * width * 3, nominally in [0, 1]
  std::vector<float> field;  // scratch: the implicit function over a shape's pixel box
  // How much of each pixel belongs to the lit object (the head) rather than the backdrop:
  // fill() blends it toward `object` with the same coverage as the colour.
  std::vector<float> object_mask;
  float object = 0;
  Canvas(int h, int w) : height(h), width(w), rgb((size_t)h * w * 3), object_mask((size_t)h * w, 0.f) {}
  float* at(int y, int x) { return &rgb[((size_t)y * width + x) * 3]; }
};

// A shape's local frame: local point (u, v) lies at pixel position origin + u * eu + v * ev.
// (Pixel centres are at half-integer positions.)
struct Frame {
  float ox = 0, oy = 0, eux = 1, euy = 0, evx = 0, evy = 1;
};

// Fills the shape f(u, v) <= 0, where f grows across the boundary roughly like a distance
// (any scale: coverage uses f divided by its pixel-space gradient, so only the zero set matters).
// The local box [u0, u1] x [v0, v1] must contain the shape. paint(u, v) gives colour and
// opacity; soft > 1 widens the edge ramp to that many pixels (shadows, blush).
template <class F, class P>
void fill(Canvas& cv, const Frame& fr, float u0, float u1, float v0, float v1, F&& f, P&& paint, float soft = 1.f) {
  // Pixel box of the local box's corners, one pixel of margin for the central differences.
  float xs[4], ys[4];
  const float us[4] = {u0, u1, u0, u1}, vs[4] = {v0, v0, v1, v1};
  for (int i = 0; i < 4; ++i) {
    xs[i] = fr.ox + us[i] * fr.eux + vs[i] * fr.evx;
    ys[i] = fr.oy + us[i] * fr.euy + vs[i] * fr.evy;
  }
  const int x0 = std::max(0, (int)std::floor(*std::min_element(xs, xs + 4) - soft));
  const int x1 = std::min(cv.width, (int)std::ceil(*std::max_element(xs, xs + 4) + soft) + 1);
  const int y0 = std::max(0, (int)std::floor(*std::min_element(ys, ys + 4) - soft));
  const int y1 = std::min(cv.height, (int)std::ceil(*std::max_element(ys, ys + 4) + soft) + 1);
  if (x0 >= x1 || y0 >= y1) return;
  const float det = fr.eux * fr.evy - fr.evx * fr.euy;
  if (std::abs(det) < 1e-12f) return;
  // Inverse map: pixel (x, y) -> (u, v), linear in x and y.
  const float ux = fr.evy / det, uy = -fr.evx / det, vx = -fr.euy / det, vy = fr.eux / det;
  auto local = [&](float px, float py, float& u, float& v) {
    const float dx = px - fr.ox, dy = py - fr.oy;
    u = ux * dx + uy * dy;
    v = vx * dx + vy * dy;
  };
  const int gw = x1 - x0 + 2, gh = y1 - y0 + 2;
  cv.field.resize((size_t)gw * gh);
  float* field = cv.field.data();  // hoisted: the lambdas could alias the vector for all the compiler knows
  for (int j = 0; j < gh; ++j)
    for (int i = 0; i < gw; ++i) {
      float u, v;
      local(x0 - 1 + i + 0.5f, y0 - 1 + j + 0.5f, u, v);
      field[(size_t)j * gw + i] = f(u, v);
    }
  const float half_soft = 0.5f * soft, inv_soft = 1.f / soft, object = cv.object;
  float* rgb = cv.rgb.data();
  float* mask = cv.object_mask.data();
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) {
      const float* c = &field[(size_t)(y - y0 + 1) * gw + (x - x0 + 1)];
      const float gx = 0.5f * (c[1] - c[-1]), gy = 0.5f * (c[gw] - c[-gw]);
      // |grad| <= |gx| + |gy|: most pixels are plainly outside (or inside) without the sqrt.
      if (c[0] >= half_soft * (std::abs(gx) + std::abs(gy))) continue;
      float cover = 1;
      if (-c[0] < half_soft * (std::abs(gx) + std::abs(gy))) {
        const float g = std::sqrt(gx * gx + gy * gy) + 1e-12f;
        cover = std::clamp(0.5f - c[0] / g * inv_soft, 0.f, 1.f);
        if (cover <= 0) continue;
      }
      float u, v;
      local(x + 0.5f, y + 0.5f, u, v);
      const Paint p = paint(u, v);
      const float a = cover * p.a;
      const size_t i = (size_t)y * cv.width + x;
      float* d = rgb + i * 3;
      d[0] += (p.c.r - d[0]) * a;
      d[1] += (p.c.g - d[1]) * a;
      d[2] += (p.c.b - d[2]) * a;
      mask[i] += (object - mask[i]) * a;
    }
}

// Constant paint.
inline auto solid(Rgb c, float a = 1.f) {
  return [=](float, float) { return Paint{c, a}; };
}

// Implicit of the ellipse with half-axes a, b centred at the origin, in units of the smaller axis.
inline float ellipse(float u, float v, float a, float b) {
  return (std::sqrt(u * u / (a * a) + v * v / (b * b)) - 1.f) * std::min(a, b);
}

}  // namespace ff::data::synth
