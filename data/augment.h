// Image resizing and the training augmentations: flip, blur, grayscale, colour jitter, low resolution.
#pragma once

#include <cstddef>  // data/image.h uses size_t without including it

#include "data/image.h"
#include "engine/rng.h"

namespace ff::data {

// Bilinear (triangle-filter) resize; when shrinking, the filter widens with the factor so that
// it averages instead of aliasing (as PIL does). Any channel count.
Image resize_bilinear(const Image& src, int height, int width);

void flip_horizontal(Image& img);
// Separable Gaussian, edges clamped. sigma <= 0 leaves the image as it is.
void gaussian_blur(Image& img, double sigma);
// Keeps the channel count; every channel gets the luma (BT.601 weights).
void to_grayscale(Image& img);
// Factors of 1 leave the image unchanged: brightness scales, contrast stretches about the mean
// grey, saturation mixes with the luma.
void color_jitter(Image& img, double brightness, double contrast, double saturation);
// Down to low_height x low_width and back up: the detail a low-resolution camera loses.
void low_resolution(Image& img, int low_height, int low_width);

struct AugmentConfig {
  bool flip = true;  // horizontal flip with probability 1/2
  // The stronger augmentations, each applied with its probability (all off by default).
  double blur_prob = 0, grayscale_prob = 0, color_jitter_prob = 0, low_res_prob = 0;
  double max_blur_sigma = 1.5;  // sigma drawn in [0.3, max]
  double jitter = 0.3;          // brightness/contrast/saturation factors drawn in [1 - j, 1 + j]
  double min_low_res = 0.35;    // low-resolution side drawn in [min, 0.9] of the image side

  // The strong preset: every augmentation on at moderate probability.
  static AugmentConfig strong();
};

// Applies cfg's random augmentations, drawing every choice from rng. Give each example its own
// stream so that results do not depend on order or thread.
void augment(Image& img, const AugmentConfig& cfg, Rng& rng);

}  // namespace ff::data
