// CPU kernel of the AdamW update (torch.optim.AdamW semantics, amsgrad off), optionally fused with
// the restore of perturbed weights: the old weight is read from a saved copy.
// Memory traffic per f32 element: reads w (or saved), g, m, v; writes w, m, v: 28 B.
// Benchmarked as part of the training step (benchmarks/).
// Arguments are multi-tensor lists (entry k of every array describes tensor k of `count`).
#pragma once

#include <cstdint>

namespace ff::cpu {

struct AdamWHyper {
  double lr = 0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
};

// Per tensor k with t = step[k] (already counting this step): c1 = 1 − β1^t, c2 = 1 − β2^t (double).
// Per element, in T arithmetic, with w the old weight (saved[k][i] when saved && saved[k], else
// param[k][i]):
//   w = w·(1 − lr·wd);  m = lerp(m, g, 1 − β1);  v = v·β2 + (1 − β2)·g·g
//   param = w − (lr / c1)·m / (sqrt(v) / sqrt(c2) + eps)
template <class T>
void adamw_update(int64_t count, T* const* param, const T* const* saved, const T* const* grad, T* const* exp_avg,
                  T* const* exp_avg_sq, const int64_t* step, const int64_t* numel, const AdamWHyper& hyper);

}  // namespace ff::cpu
