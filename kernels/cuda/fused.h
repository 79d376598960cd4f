// The hand-written fused CUDA kernels of a FlatFace step, callable from plain C++ (no CUDA types):
// margin softmax cross-entropy (margin_softmax.cu), SAM-family perturbation (perturb.cu), and SGD /
// AdamW fused with the restore (sgd.cu, adamw.cu). Each function is the twin of the kernels/cpu
// function of the same name; tests/cuda/fused_test.cpp checks every one against its twin.
//
// Conventions. Every pointer is device memory of the current device unless its comment says host.
// Work is queued on the legacy default stream (stream 0) and returns without waiting, except where
// a host value is returned. A multi-tensor list is passed as in the CPU twins: host arrays of
// `count` device pointers and sizes; each call copies that small table to the device (in stream
// order; from pageable memory the driver may wait for earlier work first) so the kernel reads it from
// device memory, and covers all tensors in one launch. Tables and partial sums live in per-device
// scratch buffers reused by consecutive calls: call from one host thread per device.
// No result depends on float atomics or on thread scheduling: reductions are two-stage with a fixed
// order, so every output is bitwise reproducible from run to run on one GPU model.
// Precision: T = float or double. Sums of squares and softmax row statistics accumulate in double.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/adamw.h"
#include "kernels/cpu/margin_softmax.h"
#include "kernels/cpu/sgd.h"

namespace ff::cuda {

using cpu::AdamWHyper;
using cpu::MarginGrad;
using cpu::MarginLoss;
using cpu::MarginParams;
using cpu::MarginRows;
using cpu::MarginType;
using cpu::SgdHyper;

// ---- Margin softmax cross-entropy: steps (the twins of kernels/cpu/margin_softmax.h) ----
// Unlike the CPU steps, the [B, C] buffer holds the raw dot products f_i·W_j from logits_gemm until
// logits_to_grad turns them into H: cosine, clamp, margin and scale are recomputed on the fly in each
// pass instead of being written back, which saves a read and a write of the buffer.

// 1. norms[i] = |x_i| for the n rows of x [n, d] (double accumulation).
template <class T>
void row_norms(int64_t n, int64_t d, const T* x, double* norms);

// 2. buf [B, C] = f [B, d] · w [C, d]ᵀ through cuBLAS (raw dots, not yet normalised). `tf32` lets
// cuBLAS use the TF32 tensor cores for float (about 10 bits of mantissa in the products).
template <class T>
void logits_gemm(int64_t B, int64_t C, int64_t d, const T* f, const T* w, T* buf, bool tf32 = false);

// 3+4. One pass over the dots of the classes [class_begin, class_begin + C): cosine, clamp, margin and
// scale as cpu::cosine_logits + cpu::apply_margin, then the row statistics of cpu::row_sum_other, with
// the max and the sum of exps found in the same pass (online; sum_other is relative to max_other).
// With `accumulate` false the block's values are written to `rows`; with true they are combined with
// the values already there (max of the maxima, sums rescaled to it, target fields added: exactly one
// block holds a row's target), so the column blocks of one process chain in a fixed order.
// Ranks holding class shards combine the same way: all-reduce max_other (max), rescale each
// sum_other by exp(local max − global max), then all-reduce sum_other and the target fields (sum).
template <class T>
void margin_row_stats(const MarginParams& p, int64_t B, int64_t C, int64_t class_begin, const int64_t* labels,
                      const double* f_norm, const double* w_norm, const T* buf, const MarginRows& rows,
                      bool accumulate);

// 5. cpu::row_losses on the device: loss [B], correct [B], and loss_mean [1] = Σ loss / B, each
// optional (null: not written). loss_mean is summed in a fixed order.
void row_losses(const MarginParams& p, int64_t B, const MarginRows& rows, double* loss, int64_t* correct,
                double* loss_mean);

// 6. cpu::logits_to_grad: buf holds the raw dots of margin_row_stats on entry and H on return.
template <class T>
void logits_to_grad(const MarginParams& p, int64_t B, int64_t C, int64_t class_begin, const int64_t* labels,
                    const MarginRows& rows, const double* f_norm, const double* w_norm, double scale, T* buf);

// 7. cpu::margin_backward: grad_f [B, d] and grad_w [C, d] (either may be null), overwritten: two
// cuBLAS GEMMs, then the normalisation's projection of each row.
template <class T>
void margin_backward(int64_t B, int64_t C, int64_t d, const T* f, const double* f_norm, const T* w,
                     const double* w_norm, const T* buf, double grad_out, T* grad_f, T* grad_w, bool tf32 = false);

// 7b. The normalisation's projection alone (the second half of margin_backward, also what a caller
// accumulating grad_f over column blocks applies once at the end): g_i −= x_i (x_i·g_i) / |x_i|² for
// the n rows of g [n, d], rows with |x_i| < kNormEps left alone.
template <class T>
void project_rows(int64_t n, int64_t d, const T* x, const double* norms, T* g);

// ---- Margin softmax cross-entropy: the whole op in one process ----
// The steps above over all classes, in column blocks of `chunk` classes so the logits buffer holds at
// most B × chunk elements (for C up to millions). With one block (chunk 0 or ≥ C) the forward pass
// also computes H when training and the backward pass runs only the GEMMs and projections; with
// several, the forward pass keeps only row statistics and the backward pass recomputes each block's
// logits (one more GEMM) before its gradient. grad_f is accumulated over blocks in block order.
struct MarginShape {
  int64_t B = 0, C = 0, d = 0;
  int64_t chunk = 0;  // classes per block; 0: all C in one block
  bool tf32 = false;  // float GEMMs on TF32 tensor cores
};

// Bytes of device workspace for margin_fused_forward / margin_fused_backward (elem_size = sizeof(T)):
// norms, row statistics and the [B, block] logits buffer. Keep it between forward and backward.
size_t margin_workspace_bytes(const MarginShape& s, size_t elem_size);

struct MarginOutputs {           // device pointers; a null one is not written
  double* loss = nullptr;        // [B] per-row loss
  int64_t* correct = nullptr;    // [B] 1 when the target cosine beats every other class
  double* target_cos = nullptr;  // [B] cosine to the target before the margin
  double* loss_mean = nullptr;   // [1] mean of the per-row losses
};

// labels [B] are class ids in [0, C) (checked by the caller on the host: an id out of range is
// treated as a class held by no block). grad_scale is the factor of cpu::logits_to_grad (1/B for a
// batch mean); 0 means no gradient will be asked for.
template <class T>
void margin_fused_forward(const MarginParams& p, const MarginShape& s, const int64_t* labels, const T* f, const T* w,
                          double grad_scale, void* workspace, const MarginOutputs& out);

// After margin_fused_forward with the same arguments, workspace and grad_scale > 0: grad_f [B, d] and
// grad_w [C, d] (either may be null), overwritten, times grad_out.
template <class T>
void margin_fused_backward(const MarginParams& p, const MarginShape& s, const int64_t* labels, const T* f, const T* w,
                           double grad_scale, double grad_out, void* workspace, T* grad_f, T* grad_w);

// ---- Perturbation (twins of kernels/cpu/perturb.h; pointer arrays are host arrays) ----

// Σ_k Σ_i (s_i·g_i)², s_i = |w_i| when `param` is non-null, else 1: one launch over all tensors into
// per-chunk partial sums, then one block sums them in a fixed order. Waits for the result.
template <class T>
double perturb_sq_norm(int64_t count, const T* const* grad, const T* const* param, const int64_t* numel);
// The same sum written to result[0] (device memory) without waiting: for a caller that keeps the
// norm on the device (an all-reduce over ranks before the square root, say).
template <class T>
void perturb_sq_norm_to(int64_t count, const T* const* grad, const T* const* param, const int64_t* numel,
                        double* result);

// saved = w; w = w + scale·g (adaptive: w + w²·g·scale), in one launch; bitwise equal to the CPU twin.
template <class T>
void perturb_apply(int64_t count, T* const* param, T* const* saved, const T* const* grad, const int64_t* numel,
                   double scale, bool adaptive);

// w = saved, bit for bit, in one launch.
template <class T>
void perturb_restore(int64_t count, T* const* param, const T* const* saved, const int64_t* numel);

// ---- Optimizers fused with the restore (twins of kernels/cpu/sgd.h and adamw.h) ----
// `first` and `step` are host arrays of `count` entries; `saved` may be null or hold null entries.
// Results are bitwise equal to the CPU twins (the same operations in the same order, no FMA).

template <class T>
void sgd_update(int64_t count, T* const* param, const T* const* saved, const T* const* grad, T* const* momentum,
                const uint8_t* first, const int64_t* numel, const SgdHyper& hyper);

template <class T>
void adamw_update(int64_t count, T* const* param, const T* const* saved, const T* const* grad, T* const* exp_avg,
                  T* const* exp_avg_sq, const int64_t* step, const int64_t* numel, const AdamWHyper& hyper);

}  // namespace ff::cuda
