// CPU kernel of the SGD update (torch.optim.SGD semantics), optionally fused with the restore of
// perturbed weights: the old weight is read from a saved copy instead of the parameter.
// Memory traffic per f32 element: reads w (or saved), g, momentum; writes w, momentum: 20 B.
// Benchmarked as part of the training step (benchmarks/).
// Arguments are multi-tensor lists (entry k of every array describes tensor k of `count`), the
// layout a CUDA multi-tensor launcher mirrors.
#pragma once

#include <cstdint>

namespace ff::cpu {

struct SgdHyper {
  double lr = 0;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

// Per element, in T arithmetic, with w the old weight (saved[k][i] when saved && saved[k], else
// param[k][i]):
//   d = g + wd·w                                   (when wd != 0)
//   b = first[k] ? d : b·momentum + (1−dampening)·d (when momentum != 0; b written back)
//   d = nesterov ? d + momentum·b : b               (when momentum != 0)
//   param = w − lr·d
// `momentum` and `first` may be null when hyper.momentum == 0; `saved` may be null (no restore).
template <class T>
void sgd_update(int64_t count, T* const* param, const T* const* saved, const T* const* grad, T* const* momentum,
                const uint8_t* first, const int64_t* numel, const SgdHyper& hyper);

}  // namespace ff::cpu
