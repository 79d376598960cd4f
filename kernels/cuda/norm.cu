// Batch norm, PReLU, L2 normalise, channel sums; min bytes per f32 element: BN 12 fwd / 12 bwd, PReLU 8 / 12.
//
// In detail: batch-norm statistics read x once (4), forward reads x and writes y (8), backward reads
// dy and x for the sums and again for dx, writing dx (20; 12 at the minimum); L2 normalise 12 / 16.
// x is viewed as [N, C, S]. A per-channel sum runs in two fixed stages: a grid of C x P blocks, P
// chunks per channel chosen from the shape alone, each block summing its chunk in double; then one
// thread per channel adds its P partials in order. No atomics, so results are bitwise reproducible.
// Batch-norm statistics sum x - x[0, c, 0] and its square (one read of x; the shift keeps the
// variance free of cancellation when |mean| >> std). Checked against kernels/cpu/norm.h by
// tests/cuda/ops_test.cpp; timed as part of the model step.
#include <algorithm>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/context.h"
#include "kernels/cuda/ops.h"

namespace ff::cuda {

namespace {

struct Pair {
  double a, b;
};

// Chunks per channel: enough blocks to fill the GPU when C is small, one when M is.
int64_t chunks_for(int64_t M) { return std::clamp<int64_t>((M + 8191) / 8192, 1, 64); }

// Stage 1: block (c, p) sums terms(i, c) over chunk p of channel c's M = N * S elements.
template <class F>
__global__ void channel_partials_kernel(F terms, int64_t N, int64_t C, int64_t S, Pair* partial) {
  const int64_t c = blockIdx.x, p = blockIdx.y, P = gridDim.y, M = N * S;
  const int64_t per = (M + P - 1) / P, begin = p * per, end = min(M, begin + per);
  double a = 0, b = 0;
  for (int64_t m = begin + threadIdx.x; m < end; m += kBlock) {
    const int64_t n = m / S, s = m - n * S;
    const Pair t = terms((n * C + c) * S + s, c);
    a += t.a;
    b += t.b;
  }
  a = block_sum(a);
  b = block_sum(b);
  if (threadIdx.x == 0) partial[c * P + p] = {a, b};
}

// Stage 2: one thread per channel adds the partials in order and hands the sums to finish(c, sums).
template <class F>
__global__ void channel_finish_kernel(const Pair* partial, int64_t C, int64_t P, F finish) {
  for (int64_t c = global_thread(); c < C; c += grid_threads()) {
    Pair s{0, 0};
    for (int64_t p = 0; p < P && partial; ++p) {
      s.a += partial[c * P + p].a;
      s.b += partial[c * P + p].b;
    }
    finish(c, s);
  }
}

// Elementwise over x [N, C, S]: f(i, c) for every flat index i, c its channel.
template <class F>
__global__ void channel_map_kernel(int64_t total, int64_t C, int64_t S, F f) {
  for (int64_t i = global_thread(); i < total; i += grid_threads()) f(i, (i / S) % C);
}

// Runs both stages: finish(c, sums) gets the channel sums of terms(i, c) (zeros when skip_sums).
template <class Terms, class Finish>
void channel_reduce(const char* what, int64_t N, int64_t C, int64_t S, Terms terms, Finish finish,
                    bool skip_sums = false) {
  if (C == 0) return;
  FF_CHECK(C < (1LL << 31), what, " (CUDA): ", C, " channels is too many");
  const int64_t P = chunks_for(N * S);
  Storage ws = scratch(skip_sums ? 0 : (size_t)(C * P) * sizeof(Pair));
  Pair* partial = skip_sums ? nullptr : static_cast<Pair*>(ws.data);
  if (!skip_sums) {
    channel_partials_kernel<<<dim3((unsigned)C, (unsigned)P), kBlock, 0, stream()>>>(terms, N, C, S, partial);
    FF_CUDA_LAUNCH_CHECK("channel_partials_kernel");
  }
  channel_finish_kernel<<<blocks_for(C), kBlock, 0, stream()>>>(partial, C, P, finish);
  FF_CUDA_LAUNCH_CHECK("channel_finish_kernel");
}

template <class F>
void channel_map(int64_t N, int64_t C, int64_t S, F f) {
  const int64_t total = N * C * S;
  if (total == 0) return;
  channel_map_kernel<<<blocks_for(total), kBlock, 0, stream()>>>(total, C, S, f);
  FF_CUDA_LAUNCH_CHECK("channel_map_kernel");
}

// ---- per-channel terms and finishers (device functors) ----

template <class T>
struct StatsTerms {
  const T* x;
  int64_t S;
  __device__ Pair operator()(int64_t i, int64_t c) const {
    const double d = (double)x[i] - (double)x[c * S];
    return {d, d * d};
  }
};

template <class T>
struct StatsFinish {
  const T* x;
  int64_t S;
  double M;
  double *mean, *var;
  __device__ void operator()(int64_t c, Pair s) const {
    if (M == 0) {  // 0 / 0, as the CPU kernel gives
      mean[c] = var[c] = s.a / M;
      return;
    }
    const double d = s.a / M;
    mean[c] = (double)x[c * S] + d;
    var[c] = fmax(s.b / M - d * d, 0.0);
  }
};

template <class T>
struct BackwardTerms {
  const T *dy, *x;
  const double* mean;
  __device__ Pair operator()(int64_t i, int64_t c) const {
    const double g = (double)dy[i];
    return {g, g * ((double)x[i] - mean[c])};
  }
};

// Writes dweight / dbias and the coefficients of dx = dy * a + (x - mean) * kx + k0 (as in the CPU kernel).
template <class T>
struct BackwardFinish {
  const double *mean, *invstd;
  const T* weight;
  bool training;
  double M;
  T *dweight, *dbias, *coef;
  __device__ void operator()(int64_t c, Pair s) const {
    const double is = invstd[c];
    if (dweight) dweight[c] = (T)(s.b * is);
    if (dbias) dbias[c] = (T)s.a;
    if (!coef) return;
    const double a = is * (weight ? (double)weight[c] : 1.0);
    coef[3 * c] = (T)a;
    coef[3 * c + 1] = training ? (T)(-a * is * is * s.b / M) : T(0);
    coef[3 * c + 2] = training ? (T)(-a * s.a / M) : T(0);
  }
};

template <class T>
struct PreluTerms {
  const T *dy, *x;
  __device__ Pair operator()(int64_t i, int64_t) const {
    return {x[i] > T(0) ? 0.0 : (double)dy[i] * (double)x[i], 0.0};
  }
};

template <class T>
struct SumTerms {
  const T* x;
  __device__ Pair operator()(int64_t i, int64_t) const { return {(double)x[i], 0.0}; }
};

template <class T>
struct StoreFirst {
  T* out;
  __device__ void operator()(int64_t c, Pair s) const { out[c] = (T)s.a; }
};

// ---- elementwise maps over [N, C, S] (device functors) ----

template <class T>
struct ForwardMap {
  const T* x;
  const double *mean, *invstd;
  const T *weight, *bias;
  T* y;
  __device__ void operator()(int64_t i, int64_t c) const {
    const T m = (T)mean[c];
    const T a = (T)(invstd[c] * (weight ? (double)weight[c] : 1.0));
    const T b = bias ? bias[c] : T(0);
    y[i] = (x[i] - m) * a + b;
  }
};

template <class T>
struct BackwardMap {
  const T *dy, *x;
  const double* mean;
  const T* coef;
  T* dx;
  __device__ void operator()(int64_t i, int64_t c) const {
    dx[i] = dy[i] * coef[3 * c] + (x[i] - (T)mean[c]) * coef[3 * c + 1] + coef[3 * c + 2];
  }
};

template <class T>
struct PreluMap {
  const T *x, *weight;
  T* y;
  __device__ void operator()(int64_t i, int64_t c) const { y[i] = x[i] > T(0) ? x[i] : weight[c] * x[i]; }
};

template <class T>
struct PreluBackwardMap {
  const T *dy, *x, *weight;
  T* dx;
  __device__ void operator()(int64_t i, int64_t c) const { dx[i] = x[i] > T(0) ? dy[i] : weight[c] * dy[i]; }
};

__global__ void invstd_kernel(int64_t C, double eps, const double* var, double* invstd) {
  for (int64_t c = global_thread(); c < C; c += grid_threads()) invstd[c] = 1.0 / sqrt(var[c] + eps);
}

template <class T>
__global__ void running_stats_kernel(int64_t C, double eps, const T* rm, const T* rv, double* mean, double* invstd) {
  for (int64_t c = global_thread(); c < C; c += grid_threads()) {
    mean[c] = (double)rm[c];
    invstd[c] = 1.0 / sqrt((double)rv[c] + eps);
  }
}

template <class T>
__global__ void update_running_kernel(int64_t C, double unbias, double momentum, const double* mean, const double* var,
                                      T* rm, T* rv) {
  for (int64_t c = global_thread(); c < C; c += grid_threads()) {
    rm[c] = (T)((1.0 - momentum) * (double)rm[c] + momentum * mean[c]);
    rv[c] = (T)((1.0 - momentum) * (double)rv[c] + momentum * var[c] * unbias);
  }
}

// One block per row r of x [N, D] (grid-stride over rows).
template <class T>
__global__ void l2_forward_kernel(const T* x, int64_t N, int64_t D, double eps, T* y, double* norm) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* p = x + r * D;
    double s = 0;
    for (int64_t j = threadIdx.x; j < D; j += kBlock) s += (double)p[j] * (double)p[j];
    const double nrm = sqrt(block_sum(s)), d = fmax(nrm, eps);
    if (threadIdx.x == 0) norm[r] = nrm;
    for (int64_t j = threadIdx.x; j < D; j += kBlock) y[r * D + j] = (T)((double)p[j] / d);
  }
}

template <class T>
__global__ void l2_backward_kernel(const T* dy, const T* x, int64_t N, int64_t D, double eps, const double* norm,
                                   T* dx) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T *g = dy + r * D, *p = x + r * D;
    const double nrm = norm[r];
    if (nrm > eps) {  // the same branch for the whole block: norm[r] is one value
      double dot = 0;
      for (int64_t j = threadIdx.x; j < D; j += kBlock) dot += (double)p[j] * (double)g[j];
      const double k = block_sum(dot) / (nrm * nrm * nrm);
      for (int64_t j = threadIdx.x; j < D; j += kBlock) dx[r * D + j] = (T)((double)g[j] / nrm - (double)p[j] * k);
    } else {
      for (int64_t j = threadIdx.x; j < D; j += kBlock) dx[r * D + j] = (T)((double)g[j] / eps);
    }
  }
}

unsigned row_blocks(int64_t N) { return (unsigned)std::clamp<int64_t>(N, 1, 65536); }

}  // namespace

template <class T>
void batch_norm_stats(const T* x, int64_t N, int64_t C, int64_t S, double* mean, double* var) {
  channel_reduce("batch_norm_stats", N, C, S, StatsTerms<T>{x, S}, StatsFinish<T>{x, S, (double)(N * S), mean, var});
}

void batch_norm_invstd(int64_t C, double eps, const double* var, double* invstd) {
  if (C == 0) return;
  invstd_kernel<<<blocks_for(C), kBlock, 0, stream()>>>(C, eps, var, invstd);
  FF_CUDA_LAUNCH_CHECK("invstd_kernel");
}

template <class T>
void batch_norm_running_stats(int64_t C, double eps, const T* running_mean, const T* running_var, double* mean,
                              double* invstd) {
  if (C == 0) return;
  running_stats_kernel<T><<<blocks_for(C), kBlock, 0, stream()>>>(C, eps, running_mean, running_var, mean, invstd);
  FF_CUDA_LAUNCH_CHECK("running_stats_kernel");
}

template <class T>
void batch_norm_update_running(int64_t C, int64_t M, double momentum, const double* mean, const double* var,
                               T* running_mean, T* running_var) {
  if (C == 0) return;
  const double unbias = (double)M / (double)(M - 1);
  update_running_kernel<T>
      <<<blocks_for(C), kBlock, 0, stream()>>>(C, unbias, momentum, mean, var, running_mean, running_var);
  FF_CUDA_LAUNCH_CHECK("update_running_kernel");
}

template <class T>
void batch_norm_forward(const T* x, int64_t N, int64_t C, int64_t S, const double* mean, const double* invstd,
                        const T* weight, const T* bias, T* y) {
  channel_map(N, C, S, ForwardMap<T>{x, mean, invstd, weight, bias, y});
}

template <class T>
void batch_norm_backward(const T* dy, const T* x, int64_t N, int64_t C, int64_t S, const double* mean,
                         const double* invstd, const T* weight, bool training, T* dx, T* dweight, T* dbias) {
  const bool need_sums = training || dweight || dbias;
  Storage coef_ws = scratch(dx ? (size_t)(3 * C) * sizeof(T) : 0);
  T* coef = dx ? static_cast<T*>(coef_ws.data) : nullptr;
  channel_reduce("batch_norm_backward", N, C, S, BackwardTerms<T>{dy, x, mean},
                 BackwardFinish<T>{mean, invstd, weight, training, (double)(N * S), dweight, dbias, coef}, !need_sums);
  if (dx) channel_map(N, C, S, BackwardMap<T>{dy, x, mean, coef, dx});
}

template <class T>
void prelu_forward(const T* x, int64_t N, int64_t C, int64_t S, const T* weight, T* y) {
  channel_map(N, C, S, PreluMap<T>{x, weight, y});
}

template <class T>
void prelu_backward(const T* dy, const T* x, int64_t N, int64_t C, int64_t S, const T* weight, T* dx, T* dweight) {
  if (dx) channel_map(N, C, S, PreluBackwardMap<T>{dy, x, weight, dx});
  if (dweight) channel_reduce("prelu_backward", N, C, S, PreluTerms<T>{dy, x}, StoreFirst<T>{dweight});
}

template <class T>
void channel_sum(const T* x, int64_t N, int64_t C, int64_t S, T* out) {
  channel_reduce("channel_sum", N, C, S, SumTerms<T>{x}, StoreFirst<T>{out});
}

template <class T>
void l2_normalize_forward(const T* x, int64_t N, int64_t D, double eps, T* y, double* norm) {
  if (N == 0) return;
  l2_forward_kernel<T><<<row_blocks(N), kBlock, 0, stream()>>>(x, N, D, eps, y, norm);
  FF_CUDA_LAUNCH_CHECK("l2_forward_kernel");
}

template <class T>
void l2_normalize_backward(const T* dy, const T* x, int64_t N, int64_t D, double eps, const double* norm, T* dx) {
  if (N == 0) return;
  l2_backward_kernel<T><<<row_blocks(N), kBlock, 0, stream()>>>(dy, x, N, D, eps, norm, dx);
  FF_CUDA_LAUNCH_CHECK("l2_backward_kernel");
}

#define FF_INSTANTIATE(T)                                                                                           \
  template void batch_norm_stats<T>(const T*, int64_t, int64_t, int64_t, double*, double*);                         \
  template void batch_norm_running_stats<T>(int64_t, double, const T*, const T*, double*, double*);                 \
  template void batch_norm_update_running<T>(int64_t, int64_t, double, const double*, const double*, T*, T*);       \
  template void batch_norm_forward<T>(const T*, int64_t, int64_t, int64_t, const double*, const double*, const T*,  \
                                      const T*, T*);                                                                \
  template void batch_norm_backward<T>(const T*, const T*, int64_t, int64_t, int64_t, const double*, const double*, \
                                       const T*, bool, T*, T*, T*);                                                 \
  template void prelu_forward<T>(const T*, int64_t, int64_t, int64_t, const T*, T*);                                \
  template void prelu_backward<T>(const T*, const T*, int64_t, int64_t, int64_t, const T*, T*, T*);                 \
  template void channel_sum<T>(const T*, int64_t, int64_t, int64_t, T*);                                            \
  template void l2_normalize_forward<T>(const T*, int64_t, int64_t, double, T*, double*);                           \
  template void l2_normalize_backward<T>(const T*, const T*, int64_t, int64_t, double, const double*, T*);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff::cuda
