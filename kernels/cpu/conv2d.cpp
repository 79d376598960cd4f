// CPU convolution: im2col + GEMM over bands of rows or groups of images, direct loops for depthwise.
#include "kernels/cpu/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace ff::cpu {

namespace {

// Work is cut into GEMMs of a target number of output columns: a band of rows of one image, or
// a few whole images when an image has fewer positions; no column matrix above this size.
constexpr size_t kMaxColumnBytes = size_t(16) << 20;
// Loops over fewer elements than this stay on one thread (waking the pool costs more).
constexpr int64_t kParallelWork = 32768;

bool go_parallel(int64_t work) { return work > kParallelWork && !omp_in_parallel(); }

// Grow-only scratch memory of the calling thread, one buffer per slot. Workspaces reach tens of
// MB; fresh allocations would pay page faults on every call.
template <class T>
T* scratch(int slot, size_t count) {
  thread_local std::vector<std::byte> buffers[3];
  std::vector<std::byte>& b = buffers[slot];
  const size_t bytes = count * sizeof(T) + 64;
  if (b.size() < bytes) {
    b = std::vector<std::byte>();
    b.resize(bytes);
  }
  // Cache-line aligned start for the GEMM packing routines.
  auto p = reinterpret_cast<uintptr_t>(b.data());
  return reinterpret_cast<T*>((p + 63) & ~uintptr_t(63));
}

// Output positions o in [lo, hi) whose input position o * stride - pad + k lies in [0, size).
void valid_range(int64_t size, int64_t out, int64_t stride, int64_t pad, int64_t k, int64_t& lo, int64_t& hi) {
  const int64_t first = pad - k, last = size - 1 + pad - k;
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  hi = last < 0 ? 0 : std::min(out, last / stride + 1);
  lo = std::min(lo, hi);
}

// A band: output rows [r0, r1) of images [n0, n0 + nb). Several images only with all rows.
struct Band {
  int64_t n0, nb, r0, r1;
};

struct Geometry {
  int64_t oh, ow, ohw, hw, cin_g, cout_g, ckk;  // ckk: GEMM depth per group, cin_g * kh * kw
  bool col_is_input;                            // 1x1, stride 1, no padding: an image is its own column matrix
  int64_t per_item, items;                      // images per item, number of items (the last may be short)
  int64_t band_rows, bands;                     // output rows per band, bands per item

  // target: columns per GEMM; min_items: image groups stay small enough to make at least this
  // many work items (so that the threads can share whole items, see for_each_item).
  Geometry(const Conv2dShape& s, size_t elem, int64_t target, int64_t min_items) {
    oh = s.oh();
    ow = s.ow();
    ohw = oh * ow;
    hw = s.h * s.w;
    cin_g = s.cin / s.groups;
    cout_g = s.cout / s.groups;
    ckk = cin_g * s.kh * s.kw;
    col_is_input = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0;
    const size_t col_bytes_per_image = std::max<size_t>((size_t)(s.cin * s.kh * s.kw * ohw) * elem, 1);
    int64_t b = (target + ohw - 1) / ohw;
    b = std::min({b, std::max<int64_t>(1, s.n / min_items), (int64_t)(kMaxColumnBytes / col_bytes_per_image)});
    b = std::max<int64_t>(b, 1);
    items = (s.n + b - 1) / b;
    per_item = items ? (s.n + items - 1) / items : 1;  // even items
    items = (s.n + per_item - 1) / per_item;
    // One image per item: bands of rows, as even as possible.
    bands = per_item == 1 ? std::max<int64_t>(1, ohw / target) : 1;
    band_rows = (oh + bands - 1) / bands;
    bands = (oh + band_rows - 1) / band_rows;
  }
  Band band(int64_t item, int64_t k, int64_t n) const {
    const int64_t n0 = item * per_item, r0 = k * band_rows;
    return {n0, std::min(per_item, n - n0), r0, std::min(oh, r0 + band_rows)};
  }
  int64_t columns(const Band& b) const { return b.nb * (b.r1 - b.r0) * ow; }
};

// Runs f(item) for every item. With enough items, whole items go to the threads (one parallel
// region per convolution, dynamically balanced: robust when other work shares the cores);
// otherwise items run in turn and each one's GEMMs and copies are split over the threads. Each
// item computes the same way in both cases, so the choice never changes the result.
template <class F>
void for_each_item(const Geometry& g, F f) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads > 1 && g.items >= 2 * threads) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < g.items; ++i) f(i);
  } else {
    for (int64_t i = 0; i < g.items; ++i) f(i);
  }
}

// Column matrix of a band, images starting at x: rows (c, kh, kw), columns (image, oh, ow).
template <class T>
void im2col(const Conv2dShape& s, const Geometry& g, const T* x, const Band& band, T* col) {
  const int64_t ld = g.columns(band), per_image = (band.r1 - band.r0) * g.ow;
#pragma omp parallel for collapse(2) schedule(static) if (go_parallel(s.cin * s.kh * s.kw * ld))
  for (int64_t c = 0; c < s.cin; ++c)
    for (int64_t b = 0; b < band.nb; ++b) {
      const T* xp = x + (b * s.cin + c) * g.hw;
      for (int64_t kh = 0; kh < s.kh; ++kh) {
        int64_t oh_lo, oh_hi;
        valid_range(s.h, g.oh, s.stride_h, s.pad_h, kh, oh_lo, oh_hi);
        oh_lo = std::clamp(oh_lo, band.r0, band.r1);
        oh_hi = std::clamp(oh_hi, oh_lo, band.r1);
        for (int64_t kw = 0; kw < s.kw; ++kw) {
          int64_t ow_lo, ow_hi;
          valid_range(s.w, g.ow, s.stride_w, s.pad_w, kw, ow_lo, ow_hi);
          // dst points at output row r0 of this (channel, tap, image).
          T* dst = col + ((c * s.kh + kh) * s.kw + kw) * ld + b * per_image - band.r0 * g.ow;
          std::fill(dst + band.r0 * g.ow, dst + oh_lo * g.ow, T(0));
          for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
            T* d = dst + oh * g.ow;
            const T* src = xp + (oh * s.stride_h - s.pad_h + kh) * s.w - s.pad_w + kw;
            std::fill(d, d + ow_lo, T(0));
            if (s.stride_w == 1)
              std::memcpy(d + ow_lo, src + ow_lo, (size_t)(ow_hi - ow_lo) * sizeof(T));
            else
              for (int64_t o = ow_lo; o < ow_hi; ++o) d[o] = src[o * s.stride_w];
            std::fill(d + ow_hi, d + g.ow, T(0));
          }
          std::fill(dst + oh_hi * g.ow, dst + band.r1 * g.ow, T(0));
        }
      }
    }
}

// Adds a band's column matrix onto the images at dx, zeroing them first at the first band.
// Each (image, channel) plane belongs to one thread and sums its taps in a fixed order.
template <class T>
void col2im(const Conv2dShape& s, const Geometry& g, const T* col, const Band& band, T* dx) {
  const int64_t ld = g.columns(band), per_image = (band.r1 - band.r0) * g.ow;
#pragma omp parallel for collapse(2) schedule(static) if (go_parallel(s.cin * s.kh * s.kw * ld))
  for (int64_t c = 0; c < s.cin; ++c)
    for (int64_t b = 0; b < band.nb; ++b) {
      T* xp = dx + (b * s.cin + c) * g.hw;
      if (band.r0 == 0) std::fill(xp, xp + g.hw, T(0));
      for (int64_t kh = 0; kh < s.kh; ++kh) {
        int64_t oh_lo, oh_hi;
        valid_range(s.h, g.oh, s.stride_h, s.pad_h, kh, oh_lo, oh_hi);
        oh_lo = std::clamp(oh_lo, band.r0, band.r1);
        oh_hi = std::clamp(oh_hi, oh_lo, band.r1);
        for (int64_t kw = 0; kw < s.kw; ++kw) {
          int64_t ow_lo, ow_hi;
          valid_range(s.w, g.ow, s.stride_w, s.pad_w, kw, ow_lo, ow_hi);
          const T* src = col + ((c * s.kh + kh) * s.kw + kw) * ld + b * per_image - band.r0 * g.ow;
          for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
            T* d = xp + (oh * s.stride_h - s.pad_h + kh) * s.w - s.pad_w + kw;
            const T* r = src + oh * g.ow;
            if (s.stride_w == 1)
              for (int64_t o = ow_lo; o < ow_hi; ++o) d[o] += r[o];
            else
              for (int64_t o = ow_lo; o < ow_hi; ++o) d[o * s.stride_w] += r[o];
          }
        }
      }
    }
}

// Rows of `nb` images [nb, rows, len] starting at src, laid side by side as [rows, nb * len].
template <class T>
void images_to_columns(const T* src, int64_t nb, int64_t rows, int64_t len, T* dst) {
#pragma omp parallel for collapse(2) schedule(static) if (go_parallel(rows * nb * len))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < nb; ++b)
      std::memcpy(dst + (r * nb + b) * len, src + (b * rows + r) * len, (size_t)len * sizeof(T));
}

// ---- depthwise: one input channel per group, cout = cin * multiplier ----

template <class T>
void depthwise_forward(const Conv2dShape& s, const Geometry& g, const T* x, const T* w, const T* bias, T* y) {
#pragma omp parallel for collapse(2) schedule(static) if (go_parallel(s.n * s.cout * g.ohw * s.kh * s.kw))
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t co = 0; co < s.cout; ++co) {
      const T* xp = x + (n * s.cin + co / g.cout_g) * g.hw;
      const T* wp = w + co * s.kh * s.kw;
      T* yp = y + (n * s.cout + co) * g.ohw;
      std::fill(yp, yp + g.ohw, bias ? bias[co] : T(0));
      for (int64_t kh = 0; kh < s.kh; ++kh) {
        int64_t oh_lo, oh_hi;
        valid_range(s.h, g.oh, s.stride_h, s.pad_h, kh, oh_lo, oh_hi);
        for (int64_t kw = 0; kw < s.kw; ++kw) {
          int64_t ow_lo, ow_hi;
          valid_range(s.w, g.ow, s.stride_w, s.pad_w, kw, ow_lo, ow_hi);
          const T wv = wp[kh * s.kw + kw];
          for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
            const T* src = xp + (oh * s.stride_h - s.pad_h + kh) * s.w - s.pad_w + kw;
            T* d = yp + oh * g.ow;
            for (int64_t o = ow_lo; o < ow_hi; ++o) d[o] += wv * src[o * s.stride_w];
          }
        }
      }
    }
}

template <class T>
void depthwise_backward_input(const Conv2dShape& s, const Geometry& g, const T* dy, const T* w, T* dx) {
#pragma omp parallel for collapse(2) schedule(static) if (go_parallel(s.n * s.cout * g.ohw * s.kh * s.kw))
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.cin; ++c) {
      T* xp = dx + (n * s.cin + c) * g.hw;
      std::fill(xp, xp + g.hw, T(0));
      for (int64_t co = c * g.cout_g; co < (c + 1) * g.cout_g; ++co) {
        const T* dyp = dy + (n * s.cout + co) * g.ohw;
        for (int64_t kh = 0; kh < s.kh; ++kh) {
          int64_t oh_lo, oh_hi;
          valid_range(s.h, g.oh, s.stride_h, s.pad_h, kh, oh_lo, oh_hi);
          for (int64_t kw = 0; kw < s.kw; ++kw) {
            int64_t ow_lo, ow_hi;
            valid_range(s.w, g.ow, s.stride_w, s.pad_w, kw, ow_lo, ow_hi);
            const T wv = w[(co * s.kh + kh) * s.kw + kw];
            for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
              T* d = xp + (oh * s.stride_h - s.pad_h + kh) * s.w - s.pad_w + kw;
              const T* r = dyp + oh * g.ow;
              for (int64_t o = ow_lo; o < ow_hi; ++o) d[o * s.stride_w] += wv * r[o];
            }
          }
        }
      }
    }
}

template <class T>
void depthwise_backward_weight(const Conv2dShape& s, const Geometry& g, const T* dy, const T* x, T* dw) {
#pragma omp parallel for schedule(static) if (go_parallel(s.cout * s.n * g.ohw * s.kh * s.kw))
  for (int64_t co = 0; co < s.cout; ++co)
    for (int64_t kh = 0; kh < s.kh; ++kh) {
      int64_t oh_lo, oh_hi;
      valid_range(s.h, g.oh, s.stride_h, s.pad_h, kh, oh_lo, oh_hi);
      for (int64_t kw = 0; kw < s.kw; ++kw) {
        int64_t ow_lo, ow_hi;
        valid_range(s.w, g.ow, s.stride_w, s.pad_w, kw, ow_lo, ow_hi);
        double acc = 0;  // sums over the whole batch: double keeps f32 sums accurate
        for (int64_t n = 0; n < s.n; ++n) {
          const T* xp = x + (n * s.cin + co / g.cout_g) * g.hw;
          const T* dyp = dy + (n * s.cout + co) * g.ohw;
          for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
            const T* src = xp + (oh * s.stride_h - s.pad_h + kh) * s.w - s.pad_w + kw;
            const T* r = dyp + oh * g.ow;
            for (int64_t o = ow_lo; o < ow_hi; ++o) acc += (double)r[o] * (double)src[o * s.stride_w];
          }
        }
        dw[(co * s.kh + kh) * s.kw + kw] = (T)acc;
      }
    }
}

bool is_depthwise(const Conv2dShape& s) { return s.groups > 1 && s.cin == s.groups; }

// Forward and input gradient: GEMMs writing a fresh [rows, columns] result. About 256 columns
// keep the column matrix in cache between im2col writing it and the GEMM packing it; at least
// cout_g columns, since each GEMM also repacks its weights (cout_g x ckk).
Geometry product_geometry(const Conv2dShape& s, size_t elem) {
  return Geometry(s, elem, std::max<int64_t>(256, s.cout / s.groups), 8);
}

// Weight gradient: GEMMs adding onto a [cout_g, ckk] result, which is read and written once per
// GEMM; more columns (the GEMM's depth) as it grows, so that this traffic stays small next to the
// products. Items may be few: each one's partial result costs a pass over dw.
Geometry weight_geometry(const Conv2dShape& s, size_t elem) {
  const int64_t wsize = (s.cout / s.groups) * (s.cin / s.groups) * s.kh * s.kw;
  return Geometry(s, elem, std::clamp<int64_t>(wsize / 1024, 256, 2048), 2);
}

// A matrix operand in memory: element (i, j) at p[i * ld + j].
template <class T>
struct Matrix {
  T* p;
  int64_t ld;
};

// The column matrix of a band: the input itself for a plain 1x1 on one image, else im2col into
// scratch slot 0.
template <class T>
Matrix<const T> band_columns(const Conv2dShape& s, const Geometry& g, const T* x, const Band& band) {
  const T* first = x + band.n0 * s.cin * g.hw;
  if (g.col_is_input && band.nb == 1) return {first + band.r0 * g.ow, g.hw};
  T* col = scratch<T>(0, (size_t)(s.cin * s.kh * s.kw * g.columns(band)));
  im2col(s, g, first, band, col);
  return {col, g.columns(band)};
}

// The output (gradient) rows of a band as [cout, columns]: in place for one image, else gathered
// into scratch slot 1.
template <class T>
Matrix<const T> band_outputs(const Conv2dShape& s, const Geometry& g, const T* dy, const Band& band) {
  const T* first = dy + band.n0 * s.cout * g.ohw;
  if (band.nb == 1) return {first + band.r0 * g.ow, g.ohw};
  T* c = scratch<T>(1, (size_t)(s.cout * g.columns(band)));
  images_to_columns(first, band.nb, s.cout, g.ohw, c);
  return {c, g.columns(band)};
}

}  // namespace

template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  const Geometry g = product_geometry(s, sizeof(T));
  if (is_depthwise(s)) return depthwise_forward(s, g, x, w, bias, y);
  for_each_item(g, [&](int64_t item) {
    for (int64_t k = 0; k < g.bands; ++k) {
      const Band band = g.band(item, k, s.n);
      const int64_t cols = g.columns(band);
      const Matrix<const T> col = band_columns(s, g, x, band);
      // One image writes straight into y; several land side by side in scratch first.
      const Matrix<T> out = band.nb == 1 ? Matrix<T>{y + band.n0 * s.cout * g.ohw + band.r0 * g.ow, g.ohw}
                                         : Matrix<T>{scratch<T>(1, (size_t)(s.cout * cols)), cols};
      for (int64_t gr = 0; gr < s.groups; ++gr)
        gemm_parallel<T>(false, false, g.cout_g, cols, g.ckk, T(1), w + gr * g.cout_g * g.ckk, g.ckk,
                         col.p + gr * g.ckk * col.ld, col.ld, T(0), out.p + gr * g.cout_g * out.ld, out.ld);
      if (band.nb == 1 && !bias) continue;
      const int64_t per_image = cols / band.nb;
#pragma omp parallel for collapse(2) schedule(static) if (go_parallel(s.cout * cols))
      for (int64_t b = 0; b < band.nb; ++b)
        for (int64_t co = 0; co < s.cout; ++co) {
          const T* src = out.p + co * out.ld + b * per_image;
          T* dst = y + ((band.n0 + b) * s.cout + co) * g.ohw + band.r0 * g.ow;
          const T add = bias ? bias[co] : T(0);
          for (int64_t p = 0; p < per_image; ++p) dst[p] = src[p] + add;
        }
    }
  });
}

template <class T>
void conv2d_backward_input(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  const Geometry g = product_geometry(s, sizeof(T));
  if (is_depthwise(s)) return depthwise_backward_input(s, g, dy, w, dx);
  if (s.stride_h == 1 && s.stride_w == 1 && s.pad_h < s.kh && s.pad_w < s.kw && g.cin_g >= 16) {
    // With stride 1 the gradient of the input is itself a convolution: of dy, padded by k - 1 - pad,
    // with the kernel flipped and its channel axes swapped within each group. That GEMM has the
    // forward's good shape (deep K, small output) instead of writing a column matrix kh * kw times
    // the input and adding it back; it needs enough input channels per group (its GEMM's rows).
    const Conv2dShape t{s.n,     s.cout, g.oh, g.ow, s.cin, s.kh, s.kw, 1, 1, s.kh - 1 - s.pad_h, s.kw - 1 - s.pad_w,
                        s.groups};
    const int64_t taps = s.kh * s.kw;
    T* wt = scratch<T>(2, (size_t)(s.cout * g.ckk));
#pragma omp parallel for collapse(2) schedule(static) if (go_parallel(s.cout * g.ckk))
    for (int64_t ci = 0; ci < s.cin; ++ci)
      for (int64_t j = 0; j < g.cout_g; ++j) {
        const int64_t co = ci / g.cin_g * g.cout_g + j;
        const T* src = w + (co * g.cin_g + ci % g.cin_g) * taps;
        T* dst = wt + (ci * g.cout_g + j) * taps;
        for (int64_t k = 0; k < taps; ++k) dst[k] = src[taps - 1 - k];
      }
    return conv2d_forward(t, dy, wt, static_cast<const T*>(nullptr), dx);
  }
  for_each_item(g, [&](int64_t item) {
    for (int64_t k = 0; k < g.bands; ++k) {
      const Band band = g.band(item, k, s.n);
      const int64_t cols = g.columns(band);
      const Matrix<const T> dyc = band_outputs(s, g, dy, band);
      T* dxc = dx + band.n0 * s.cin * g.hw;
      // A plain 1x1 on one image: its input rows are its output rows, written straight.
      const bool direct = g.col_is_input && band.nb == 1;
      const Matrix<T> dcol = direct ? Matrix<T>{dxc + band.r0 * g.ow, g.hw}
                                    : Matrix<T>{scratch<T>(0, (size_t)(s.cin * s.kh * s.kw * cols)), cols};
      for (int64_t gr = 0; gr < s.groups; ++gr)
        gemm_parallel<T>(true, false, g.ckk, cols, g.cout_g, T(1), w + gr * g.cout_g * g.ckk, g.ckk,
                         dyc.p + gr * g.cout_g * dyc.ld, dyc.ld, T(0), dcol.p + gr * g.ckk * dcol.ld, dcol.ld);
      if (!direct) col2im(s, g, dcol.p, band, dxc);
    }
  });
}

template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* dy, const T* x, T* dw, T* dbias) {
  const Geometry g = weight_geometry(s, sizeof(T));
  if (dbias) {
#pragma omp parallel for schedule(static) if (go_parallel(s.n * s.cout * g.ohw))
    for (int64_t co = 0; co < s.cout; ++co) {
      double acc = 0;
      for (int64_t n = 0; n < s.n; ++n) {
        const T* r = dy + (n * s.cout + co) * g.ohw;
        for (int64_t p = 0; p < g.ohw; ++p) acc += r[p];
      }
      dbias[co] = (T)acc;
    }
  }
  if (!dw) return;
  if (is_depthwise(s)) return depthwise_backward_weight(s, g, dy, x, dw);
  const int64_t wsize = s.cout * g.ckk;
  if (g.items == 0) return std::fill(dw, dw + wsize, T(0));
  // Each item writes its own partial gradient (its bands adding on in order); the partials are
  // then summed in item order, so the result does not depend on which thread ran which item.
  T* partials = g.items == 1 ? dw : scratch<T>(2, (size_t)(g.items * wsize));
  for_each_item(g, [&](int64_t item) {
    T* part = partials + item * wsize;
    for (int64_t k = 0; k < g.bands; ++k) {
      const Band band = g.band(item, k, s.n);
      const Matrix<const T> col = band_columns(s, g, x, band);
      const Matrix<const T> dyc = band_outputs(s, g, dy, band);
      for (int64_t gr = 0; gr < s.groups; ++gr)
        gemm_parallel<T>(false, true, g.cout_g, g.ckk, g.columns(band), T(1), dyc.p + gr * g.cout_g * dyc.ld, dyc.ld,
                         col.p + gr * g.ckk * col.ld, col.ld, T(k == 0 ? 0 : 1), part + gr * g.cout_g * g.ckk, g.ckk);
    }
  });
  if (g.items == 1) return;
#pragma omp parallel for schedule(static) if (go_parallel(g.items * wsize))
  for (int64_t j = 0; j < wsize; ++j) {
    T acc = partials[j];
    for (int64_t i = 1; i < g.items; ++i) acc += partials[i * wsize + j];
    dw[j] = acc;
  }
}

#define FF_CONV2D_INSTANTIATE(T)                                                         \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*); \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*);    \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*);
FF_CONV2D_INSTANTIATE(float)
FF_CONV2D_INSTANTIATE(double)
#undef FF_CONV2D_INSTANTIATE

}  // namespace ff::cpu
