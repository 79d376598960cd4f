// Normalised-weight margin softmax cross-entropy (ArcFace / CosFace / combined margins, and the
// AACE perturbation loss) on raw arrays: the CPU reference the fused CUDA kernel is checked against.
//
// Cost for B embeddings of size d and C classes: forward one GEMM (2·B·C·d FLOPs), backward two
// (4·B·C·d); besides, four passes over the one [B, C] buffer (scale + clamp, margin + row max,
// row sum of exps, gradient): 2 exps and ~28 bytes moved per element in f32. Not benchmarked yet
// (a benchmarks/margin_softmax.cpp timing B=128, C=10^5, d=512 is the obvious next step).
//
// The work is split into steps so classes can be sharded over ranks later (rank r holds classes
// [class_begin, class_begin + C)): between steps, ranks combine the per-row values of MarginRows
// as each field's comment says (an all-reduce), and every step works on its own shard only.
// A single process runs the same steps with class_begin = 0 and nothing to combine.
//   1. row_norms            |f_i| and |W_j| (unclamped; divisions clamp at kNormEps)
//   2. cosine_logits        buf = clamp(f_i·W_j / (|f_i||W_j|), -1, 1)               (GEMM)
//   3. apply_margin         buf = z (s·ψ(cos) for the target, s·cos elsewhere);
//                           rows.target_cos, rows.target_logit, rows.max_other
//   4. row_sum_other        rows.sum_other (needs the combined max_other)
//   5. row_losses           per-row loss and correctness (needs everything combined)
//   6. logits_to_grad       buf = H = (scale · dL/dcos) / (|f_i||W_j|), in place       (training)
//   7. margin_backward      grad_f = P_f(grad_out · H·W), grad_W = P_W(grad_out · Hᵀ·f)  (GEMMs)
//                           where P projects out the row's own direction (the normalisation)
// With shards, grad_f is summed over ranks after step 7 (the projection is linear) and each rank
// keeps the grad_W rows of its own classes.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define FF_MARGIN_HD __host__ __device__
#else
#define FF_MARGIN_HD
#endif

namespace ff::cpu {

enum class MarginType : uint8_t { ArcFace, CosFace, Combined };
// Exact: the derivative of ψ. StraightThrough: the margin is a constant offset of the target
// logit, so its gradient is that of s·cos (what the common PyTorch trainer does for ArcFace).
enum class MarginGrad : uint8_t { Exact, StraightThrough };
// Margin: softmax cross-entropy of z. Aace: KL(t ‖ softmax z) with the adversarial target t.
enum class MarginLoss : uint8_t { Margin, Aace };

// Target logit s·ψ(c), others s·c, where (θ = acos c)
//   ArcFace  ψ(c) = cos(θ + m2)            (uses s, m2; needs m1 = 1, m3 = 0)
//   CosFace  ψ(c) = c − m3                 (uses s, m3; needs m1 = 1, m2 = 0)
//   Combined ψ(c) = cos(m1·θ + m2) − m3
// Past θ0 = (π − m2)/m1, where m1·θ + m2 would pass π and cos would turn back up, ψ falls back to
// the linear ψ(c) = c − sin(θ0)·(π − θ0) − m3: the cosine penalty equals the angle added at θ0
// times the local slope sin(θ0). For ArcFace (m1 = 1, m3 = 0) this is the usual
// c − sin(π − m2)·m2, applied where c ≤ cos(π − m2). ψ jumps down at θ0 (as the usual ArcFace
// fallback does) and stays increasing as long as π − θ0 < 2.33 rad (every practical margin).
struct MarginParams {
  MarginType type = MarginType::ArcFace;
  double s = 64, m1 = 1, m2 = 0.5, m3 = 0;
  MarginGrad grad = MarginGrad::Exact;
  MarginLoss loss = MarginLoss::Margin;
};

// Rows shorter than this are divided by it instead of their norm (as F.normalize does).
inline constexpr double kNormEps = 1e-12;

// Per-row values the steps pass on, each an array of B doubles. The parenthesis says how ranks
// holding different class shards combine the value before a later step reads it.
struct MarginRows {
  double* target_cos;    // cosine to the target before the margin; the owning shard writes, others 0 (sum)
  double* target_logit;  // z_iy = s·ψ(target_cos); owner writes, others 0 (sum)
  double* max_other;     // max of z_ij over the non-target classes, -inf when none (max)
  double* sum_other;     // Σ_{j≠y} exp(z_ij − max_other) with the combined max_other (sum)
};

FF_MARGIN_HD inline double margin_theta0(const MarginParams& p) { return (M_PI - p.m2) / p.m1; }

FF_MARGIN_HD inline bool margin_in_fallback(const MarginParams& p, double c) {
  if (p.type == MarginType::CosFace) return false;
  double t0 = margin_theta0(p);
  return t0 < M_PI && c <= cos(t0);
}

FF_MARGIN_HD inline double margin_psi(const MarginParams& p, double c) {
  if (p.type == MarginType::CosFace) return c - p.m3;
  if (margin_in_fallback(p, c)) {
    double t0 = margin_theta0(p);
    return c - sin(t0) * (M_PI - t0) - p.m3;
  }
  if (p.type == MarginType::ArcFace) return c * cos(p.m2) - sqrt(fmax(0.0, 1 - c * c)) * sin(p.m2);
  return cos(p.m1 * acos(c) + p.m2) - p.m3;
}

// dψ/dc. It has sin θ in the denominator and grows without bound as |c| -> 1, while the
// normalisation's Jacobian dc/df shrinks like sin θ, so their product stays finite; sin θ is
// floored at `sin_floor` (sqrt of the dtype's epsilon: the resolution of sin θ near |c| = 1) so the
// rounding noise of dc/df there is not amplified into the gradient.
FF_MARGIN_HD inline double margin_dpsi(const MarginParams& p, double c, double sin_floor) {
  if (p.type == MarginType::CosFace || margin_in_fallback(p, c)) return 1;
  double sin_t = fmax(sqrt(fmax(0.0, 1 - c * c)), sin_floor);
  if (p.type == MarginType::ArcFace) return cos(p.m2) + c * sin(p.m2) / sin_t;
  return p.m1 * sin(p.m1 * acos(c) + p.m2) / sin_t;
}

// 1. norms[i] = |x_i| for the n rows of x [n, d] (accumulated in double).
template <class T>
void row_norms(int64_t n, int64_t d, const T* x, double* norms);

// 2. buf [B, C] = clamp(f_i·W_j / (|f_i||W_j|), -1, 1); f [B, d], w [C, d] this shard's centres.
template <class T>
void cosine_logits(int64_t B, int64_t C, int64_t d, const T* f, const double* f_norm, const T* w, const double* w_norm,
                   T* buf);

// 3. Turns cosines into margin logits in place; fills target_cos, target_logit, max_other.
// labels are global class ids; this shard holds [class_begin, class_begin + C).
template <class T>
void apply_margin(const MarginParams& p, int64_t B, int64_t C, int64_t class_begin, const int64_t* labels, T* buf,
                  const MarginRows& rows);

// 4. sum_other from the (combined) max_other.
template <class T>
void row_sum_other(int64_t B, int64_t C, int64_t class_begin, const int64_t* labels, const T* buf,
                   const MarginRows& rows);

// 5. From combined rows: loss[i] (margin: −log softmax(z)_y; aace: KL(t ‖ softmax z) =
// −log(1 − p_y)), and correct[i] = 1 when the target's cosine beats every other class's
// (argmax of the plain cosines, as a nearest-centre classifier sees it; ties count as wrong).
void row_losses(const MarginParams& p, int64_t B, const MarginRows& rows, double* loss, int64_t* correct);

// 6. Replaces the logits in buf by H_ij = scale · dL_i/dcos_ij / (|f_i||W_j|), where dL_i/dz is
// softmax(z) − onehot(y) (margin) or softmax(z) − t (aace), times s, times dψ/dc for the target
// in exact mode. `scale` is 1/B for a batch mean. The clamp of the cosine passes the gradient
// through (it only removes rounding past ±1).
template <class T>
void logits_to_grad(const MarginParams& p, int64_t B, int64_t C, int64_t class_begin, const int64_t* labels,
                    const MarginRows& rows, const double* f_norm, const double* w_norm, double scale, T* buf);

// 7. grad_f [B, d] and grad_w [C, d] (either may be null: not wanted), overwritten, from H, times
// `grad_out` (the upstream gradient of the loss).
template <class T>
void margin_backward(int64_t B, int64_t C, int64_t d, const T* f, const double* f_norm, const T* w,
                     const double* w_norm, const T* buf, double grad_out, T* grad_f, T* grad_w);

}  // namespace ff::cpu
