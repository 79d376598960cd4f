// CPU convolution: im2col + GEMM over chunks of images, direct loops for depthwise layers.
#include "kernels/cpu/conv2d.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace ff::cpu {

namespace {

// A chunk gathers enough images for the GEMM to see at least this many columns (late layers
// have 7x7 outputs: one image alone would give a thin, slow GEMM) ...
constexpr int64_t kMinChunkColumns = 4096;
// ... while its column matrix stays under this many bytes.
constexpr size_t kMaxChunkBytes = size_t(16) << 20;
// Loops over fewer elements than this stay on one thread (waking the pool costs more).
constexpr int64_t kParallelWork = 32768;

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

struct Geometry {
  int64_t oh, ow, ohw, hw, cin_g, cout_g, ckk;  // ckk: GEMM depth per group, cin_g * kh * kw
  bool col_is_input;                            // 1x1, stride 1, no padding: the image is its own column matrix
  int64_t chunk;                                // images per chunk

  Geometry(const Conv2dShape& s, size_t elem) {
    oh = s.oh();
    ow = s.ow();
    ohw = oh * ow;
    hw = s.h * s.w;
    cin_g = s.cin / s.groups;
    cout_g = s.cout / s.groups;
    ckk = cin_g * s.kh * s.kw;
    col_is_input = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0;
    const size_t col_bytes_per_image = (size_t)(s.cin * s.kh * s.kw * ohw) * elem;
    int64_t b = std::clamp<int64_t>((kMinChunkColumns + ohw - 1) / ohw, 1, std::max<int64_t>(s.n, 1));
    b = std::max<int64_t>(1, std::min<int64_t>(b, (int64_t)(kMaxChunkBytes / std::max<size_t>(col_bytes_per_image, 1))));
    const int64_t chunks = (s.n + b - 1) / b;
    chunk = chunks ? (s.n + chunks - 1) / chunks : 1;  // even chunks
  }
};

// Column matrix of `nb` images starting at x: rows (c, kh, kw), columns (image, oh, ow).
template <class T>
void im2col(const Conv2dShape& s, const Geometry& g, const T* x, int64_t nb, T* col) {
  const int64_t ld = nb * g.ohw;
#pragma omp parallel for collapse(2) schedule(static) if (s.cin * s.kh * s.kw * ld > kParallelWork)
  for (int64_t c = 0; c < s.cin; ++c)
    for (int64_t b = 0; b < nb; ++b) {
      const T* xp = x + (b * s.cin + c) * g.hw;
      for (int64_t kh = 0; kh < s.kh; ++kh) {
        int64_t oh_lo, oh_hi;
        valid_range(s.h, g.oh, s.stride_h, s.pad_h, kh, oh_lo, oh_hi);
        for (int64_t kw = 0; kw < s.kw; ++kw) {
          int64_t ow_lo, ow_hi;
          valid_range(s.w, g.ow, s.stride_w, s.pad_w, kw, ow_lo, ow_hi);
          T* dst = col + ((c * s.kh + kh) * s.kw + kw) * ld + b * g.ohw;
          std::fill(dst, dst + oh_lo * g.ow, T(0));
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
          std::fill(dst + oh_hi * g.ow, dst + g.ohw, T(0));
        }
      }
    }
}

// Adds the column matrix back onto the `nb` images at dx (overwriting them); each (image, channel)
// plane belongs to one thread and sums its taps in a fixed order.
template <class T>
void col2im(const Conv2dShape& s, const Geometry& g, const T* col, int64_t nb, T* dx) {
  const int64_t ld = nb * g.ohw;
#pragma omp parallel for collapse(2) schedule(static) if (s.cin * s.kh * s.kw * ld > kParallelWork)
  for (int64_t c = 0; c < s.cin; ++c)
    for (int64_t b = 0; b < nb; ++b) {
      T* xp = dx + (b * s.cin + c) * g.hw;
      std::fill(xp, xp + g.hw, T(0));
      for (int64_t kh = 0; kh < s.kh; ++kh) {
        int64_t oh_lo, oh_hi;
        valid_range(s.h, g.oh, s.stride_h, s.pad_h, kh, oh_lo, oh_hi);
        for (int64_t kw = 0; kw < s.kw; ++kw) {
          int64_t ow_lo, ow_hi;
          valid_range(s.w, g.ow, s.stride_w, s.pad_w, kw, ow_lo, ow_hi);
          const T* src = col + ((c * s.kh + kh) * s.kw + kw) * ld + b * g.ohw;
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
#pragma omp parallel for collapse(2) schedule(static) if (rows * nb * len > kParallelWork)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < nb; ++b)
      std::memcpy(dst + (r * nb + b) * len, src + (b * rows + r) * len, (size_t)len * sizeof(T));
}

// ---- depthwise: one input channel per group, cout = cin * multiplier ----

template <class T>
void depthwise_forward(const Conv2dShape& s, const Geometry& g, const T* x, const T* w, const T* bias, T* y) {
#pragma omp parallel for collapse(2) schedule(static) if (s.n * s.cout * g.ohw * s.kh * s.kw > kParallelWork)
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
#pragma omp parallel for collapse(2) schedule(static) if (s.n * s.cout * g.ohw * s.kh * s.kw > kParallelWork)
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
#pragma omp parallel for schedule(static) if (s.cout * s.n * g.ohw * s.kh * s.kw > kParallelWork)
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

}  // namespace

template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  const Geometry g(s, sizeof(T));
  if (is_depthwise(s)) return depthwise_forward(s, g, x, w, bias, y);
  for (int64_t n0 = 0; n0 < s.n; n0 += g.chunk) {
    const int64_t nb = std::min(g.chunk, s.n - n0), ld = nb * g.ohw;
    const T* col = x + n0 * s.cin * g.hw;
    if (!(g.col_is_input && nb == 1)) {
      T* c = scratch<T>(0, (size_t)(s.cin * s.kh * s.kw * ld));
      im2col(s, g, col, nb, c);
      col = c;
    }
    // One image writes straight into y; several land side by side in scratch first.
    T* out = nb == 1 ? y + n0 * s.cout * g.ohw : scratch<T>(1, (size_t)(s.cout * ld));
    for (int64_t gr = 0; gr < s.groups; ++gr)
      gemm_parallel<T>(false, false, g.cout_g, ld, g.ckk, T(1), w + gr * g.cout_g * g.ckk, g.ckk, col + gr * g.ckk * ld,
                       ld, T(0), out + gr * g.cout_g * ld, ld);
    if (nb == 1 && !bias) continue;
#pragma omp parallel for collapse(2) schedule(static) if (nb * s.cout * g.ohw > kParallelWork)
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t co = 0; co < s.cout; ++co) {
        const T* src = out + co * ld + b * g.ohw;
        T* dst = y + ((n0 + b) * s.cout + co) * g.ohw;
        const T add = bias ? bias[co] : T(0);
        for (int64_t p = 0; p < g.ohw; ++p) dst[p] = src[p] + add;
      }
  }
}

template <class T>
void conv2d_backward_input(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  const Geometry g(s, sizeof(T));
  if (is_depthwise(s)) return depthwise_backward_input(s, g, dy, w, dx);
  if (s.stride_h == 1 && s.stride_w == 1 && s.pad_h < s.kh && s.pad_w < s.kw && g.cin_g >= 16) {
    // With stride 1 the gradient of the input is itself a convolution: of dy, padded by k - 1 - pad,
    // with the kernel flipped and its channel axes swapped within each group. That GEMM has the
    // forward's good shape (deep K, small output) instead of writing a column matrix kh * kw times
    // the input and adding it back; it needs enough input channels per group (its GEMM's rows).
    const Conv2dShape t{s.n, s.cout, g.oh, g.ow, s.cin, s.kh, s.kw, 1, 1, s.kh - 1 - s.pad_h, s.kw - 1 - s.pad_w,
                        s.groups};
    const int64_t taps = s.kh * s.kw;
    T* wt = scratch<T>(2, (size_t)(s.cout * g.ckk));
#pragma omp parallel for collapse(2) schedule(static) if (s.cout * g.ckk > kParallelWork)
    for (int64_t ci = 0; ci < s.cin; ++ci)
      for (int64_t j = 0; j < g.cout_g; ++j) {
        const int64_t co = ci / g.cin_g * g.cout_g + j;
        const T* src = w + (co * g.cin_g + ci % g.cin_g) * taps;
        T* dst = wt + (ci * g.cout_g + j) * taps;
        for (int64_t k = 0; k < taps; ++k) dst[k] = src[taps - 1 - k];
      }
    return conv2d_forward(t, dy, wt, static_cast<const T*>(nullptr), dx);
  }
  for (int64_t n0 = 0; n0 < s.n; n0 += g.chunk) {
    const int64_t nb = std::min(g.chunk, s.n - n0), ld = nb * g.ohw;
    const T* dyc = dy + n0 * s.cout * g.ohw;
    if (nb > 1) {
      T* c = scratch<T>(1, (size_t)(s.cout * ld));
      images_to_columns(dyc, nb, s.cout, g.ohw, c);
      dyc = c;
    }
    T* dxc = dx + n0 * s.cin * g.hw;
    const bool direct = g.col_is_input && nb == 1;
    T* dcol = direct ? dxc : scratch<T>(0, (size_t)(s.cin * s.kh * s.kw * ld));
    for (int64_t gr = 0; gr < s.groups; ++gr)
      gemm_parallel<T>(true, false, g.ckk, ld, g.cout_g, T(1), w + gr * g.cout_g * g.ckk, g.ckk, dyc + gr * g.cout_g * ld,
                       ld, T(0), dcol + gr * g.ckk * ld, ld);
    if (!direct) col2im(s, g, dcol, nb, dxc);
  }
}

template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* dy, const T* x, T* dw, T* dbias) {
  const Geometry g(s, sizeof(T));
  if (dbias) {
#pragma omp parallel for schedule(static) if (s.n * s.cout * g.ohw > kParallelWork)
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
  std::fill(dw, dw + s.cout * g.ckk, T(0));
  // Chunks add onto dw one after another, in batch order.
  for (int64_t n0 = 0; n0 < s.n; n0 += g.chunk) {
    const int64_t nb = std::min(g.chunk, s.n - n0), ld = nb * g.ohw;
    const T* col = x + n0 * s.cin * g.hw;
    if (!(g.col_is_input && nb == 1)) {
      T* c = scratch<T>(0, (size_t)(s.cin * s.kh * s.kw * ld));
      im2col(s, g, col, nb, c);
      col = c;
    }
    const T* dyc = dy + n0 * s.cout * g.ohw;
    if (nb > 1) {
      T* c = scratch<T>(1, (size_t)(s.cout * ld));
      images_to_columns(dyc, nb, s.cout, g.ohw, c);
      dyc = c;
    }
    for (int64_t gr = 0; gr < s.groups; ++gr)
      gemm_parallel<T>(false, true, g.cout_g, g.ckk, ld, T(1), dyc + gr * g.cout_g * ld, ld, col + gr * g.ckk * ld, ld,
                       T(1), dw + gr * g.cout_g * g.ckk, g.ckk);
  }
}

#define FF_CONV2D_INSTANTIATE(T)                                                              \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*);      \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*);         \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*);
FF_CONV2D_INSTANTIATE(float)
FF_CONV2D_INSTANTIATE(double)
#undef FF_CONV2D_INSTANTIATE

}  // namespace ff::cpu
