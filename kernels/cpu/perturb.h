// CPU kernels of the SAM-family perturbation (optim/perturb.h): the global squared norm of the
// perturbation direction, save-and-apply of ε, and the plain restore.
// Memory traffic per f32 element: norm reads 4 B (8 B adaptive); apply reads 8 B and writes 8 B;
// restore reads 4 B and writes 4 B. Benchmarked as part of the training step (benchmarks/).
// Arguments are multi-tensor lists (entry k of every array describes tensor k of `count`), the
// layout a CUDA multi-tensor launcher mirrors. Every kernel is deterministic.
#pragma once

#include <cstdint>

namespace ff::cpu {

// Σ_k Σ_i (s_i · g_i)², s_i = |w_i| when `param` is non-null (adaptive, ASAM), else 1.
// Accumulated in double over fixed chunks summed in a fixed order, so the value does not depend
// on the thread count. This is the local part of the norm: a communicator may sum it across
// ranks before the square root.
template <class T>
double perturb_sq_norm(int64_t count, const T* const* grad, const T* const* param, const int64_t* numel);

// saved = w; w = w + ε with ε = scale · g, or scale · w² · g when adaptive (T = |w|, so T²g = w²g).
// `scale` carries the sign and ρ / (‖g‖ + 1e-12) (or ρ alone when not normalised).
template <class T>
void perturb_apply(int64_t count, T* const* param, T* const* saved, const T* const* grad, const int64_t* numel,
                   double scale, bool adaptive);

// w = saved, bit for bit.
template <class T>
void perturb_restore(int64_t count, T* const* param, const T* const* saved, const int64_t* numel);

}  // namespace ff::cpu
