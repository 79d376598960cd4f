// 2-D convolution on the GPU through cuDNN (NCHW, stride, padding, groups): forward, input gradient,
// weight gradient; 2*N*Cout*OH*OW*(Cin/groups)*KH*KW FLOPs each. The bias gradient is our own
// deterministic per-channel sum (norm.cu). Algorithms come from cuDNN's heuristics, deterministic ones
// first, chosen once per shape / dtype / TF32 setting and cached with the descriptors; workspaces come
// from the caching allocator. Checked against a direct loop by tests/cuda/ops_test.cpp.
#include <climits>
#include <cstdio>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "kernels/cuda/context.h"
#include "kernels/cuda/ops.h"

namespace ff::cuda {

namespace {

std::string shape_text(const Conv2dShape& s) {
  return msg("x [", s.n, ", ", s.cin, ", ", s.h, ", ", s.w, "] weight [", s.cout, ", ", s.cin / s.groups, ", ", s.kh,
             ", ", s.kw, "] stride (", s.stride_h, ", ", s.stride_w, ") padding (", s.pad_h, ", ", s.pad_w, ") groups ",
             s.groups);
}

// Descriptors and chosen algorithms of one convolution shape. Never freed: the cache lives for the
// process (destroying cuDNN objects at exit may run after the driver has gone).
struct Plan {
  cudnnDataType_t type;
  cudnnTensorDescriptor_t x, y, bias;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  bool have_fwd = false, have_bwd_data = false, have_bwd_filter = false;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  cudnnMathType_t fwd_math{}, bwd_data_math{}, bwd_filter_math{};
  size_t fwd_ws = 0, bwd_data_ws = 0, bwd_filter_ws = 0;
};

using Key = std::tuple<int, int, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t>;

int to_int(int64_t v, const Conv2dShape& s) {
  FF_CHECK(v >= 0 && v <= INT_MAX, "conv2d (CUDA): ", shape_text(s), " exceeds cuDNN's int range");
  return (int)v;
}

// Picks the first usable algorithm of cuDNN's ranked list, deterministic ones first; without TF32
// an algorithm reported for tensor-op math is not usable. Falls back to a non-deterministic one with
// a one-line warning.
template <class Perf>
const Perf& pick(const Perf* perf, int count, bool fma_only, const char* pass, const Conv2dShape& s) {
  auto usable = [&](const Perf& p) {
    const bool tensor_ops = p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    return p.status == CUDNN_STATUS_SUCCESS && !(fma_only && tensor_ops);
  };
  for (int i = 0; i < count; ++i)
    if (usable(perf[i]) && perf[i].determinism == CUDNN_DETERMINISTIC) return perf[i];
  for (int i = 0; i < count; ++i)
    if (usable(perf[i])) {
      std::fprintf(stderr, "flatface: cuDNN has no deterministic %s algorithm for %s; using algorithm %d\n", pass,
                   shape_text(s).c_str(), (int)perf[i].algo);
      return perf[i];
    }
  throw Error(
      msg("conv2d (CUDA): cuDNN offers no ", pass, " algorithm for ", shape_text(s), fma_only ? " without TF32" : ""));
}

// The math type an algorithm runs with: FMA whenever TF32 is off for f32, whatever cuDNN reported.
cudnnMathType_t run_math(cudnnMathType_t reported, bool fma_only) { return fma_only ? CUDNN_FMA_MATH : reported; }

class PlanCache {
 public:
  template <class T>
  Plan& get(const Conv2dShape& s) {
    constexpr bool f32 = std::is_same_v<T, float>;
    const bool tf32 = f32 && allow_tf32();
    Key key{current_device(), f32 ? 0 : 1, tf32,    s.n,     s.cin,   s.h, s.w, s.cout, s.kh, s.kw,
            s.stride_h,       s.stride_w,  s.pad_h, s.pad_w, s.groups};
    std::lock_guard<std::mutex> lock(mu_);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    Plan p;  // filled completely before it enters the cache, so a failure leaves no half plan
    p.type = f32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
    for (int64_t v :
         {s.n * s.cin * s.h * s.w, s.n * s.cout * s.oh() * s.ow(), s.cout * (s.cin / s.groups) * s.kh * s.kw})
      to_int(v, s);
    FF_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.x));
    FF_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.y));
    FF_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.bias));
    FF_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w));
    FF_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv));
    FF_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.x, CUDNN_TENSOR_NCHW, p.type, to_int(s.n, s), to_int(s.cin, s),
                                              to_int(s.h, s), to_int(s.w, s)));
    FF_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p.w, p.type, CUDNN_TENSOR_NCHW, to_int(s.cout, s),
                                              to_int(s.cin / s.groups, s), to_int(s.kh, s), to_int(s.kw, s)));
    FF_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p.conv, to_int(s.pad_h, s), to_int(s.pad_w, s),
                                                   to_int(s.stride_h, s), to_int(s.stride_w, s), 1, 1,
                                                   CUDNN_CROSS_CORRELATION, p.type));
    FF_CUDNN_CHECK(cudnnSetConvolutionGroupCount(p.conv, to_int(s.groups, s)));
    // FMA math keeps f32 out of TF32; otherwise cuDNN may use tensor cores.
    FF_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, f32 && !tf32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH));
    int n = 0, c = 0, h = 0, w = 0;
    FF_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p.conv, p.x, p.w, &n, &c, &h, &w));
    FF_CHECK(n == s.n && c == s.cout && h == s.oh() && w == s.ow(), "conv2d (CUDA): cuDNN's output [", n, ", ", c, ", ",
             h, ", ", w, "] differs from the expected for ", shape_text(s));
    FF_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.y, CUDNN_TENSOR_NCHW, p.type, n, c, h, w));
    FF_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.bias, CUDNN_TENSOR_NCHW, p.type, 1, c, 1, 1));
    return plans_.emplace(key, p).first->second;
  }

  // The algorithms are chosen on first use of each pass (a forward-only model never asks for the others).
  void choose_fwd(Plan& p, const Conv2dShape& s, bool fma_only) {
    std::lock_guard<std::mutex> lock(mu_);
    if (p.have_fwd) return;
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;
    FF_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cudnn(), p.x, p.w, p.conv, p.y,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf));
    const auto& best = pick(perf, count, fma_only, "forward", s);
    p.fwd = best.algo;
    p.fwd_math = run_math(best.mathType, fma_only);
    FF_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.fwd_math));
    FF_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(cudnn(), p.x, p.w, p.conv, p.y, p.fwd, &p.fwd_ws));
    p.have_fwd = true;
  }
  void choose_bwd_data(Plan& p, const Conv2dShape& s, bool fma_only) {
    std::lock_guard<std::mutex> lock(mu_);
    if (p.have_bwd_data) return;
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int count = 0;
    FF_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnn(), p.w, p.y, p.conv, p.x,
                                                               CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf));
    const auto& best = pick(perf, count, fma_only, "input-gradient", s);
    p.bwd_data = best.algo;
    p.bwd_data_math = run_math(best.mathType, fma_only);
    FF_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_data_math));
    FF_CUDNN_CHECK(
        cudnnGetConvolutionBackwardDataWorkspaceSize(cudnn(), p.w, p.y, p.conv, p.x, p.bwd_data, &p.bwd_data_ws));
    p.have_bwd_data = true;
  }
  void choose_bwd_filter(Plan& p, const Conv2dShape& s, bool fma_only) {
    std::lock_guard<std::mutex> lock(mu_);
    if (p.have_bwd_filter) return;
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int count = 0;
    FF_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        cudnn(), p.x, p.y, p.conv, p.w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perf));
    const auto& best = pick(perf, count, fma_only, "weight-gradient", s);
    p.bwd_filter = best.algo;
    p.bwd_filter_math = run_math(best.mathType, fma_only);
    FF_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_filter_math));
    FF_CUDNN_CHECK(
        cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnn(), p.x, p.y, p.conv, p.w, p.bwd_filter, &p.bwd_filter_ws));
    p.have_bwd_filter = true;
  }

 private:
  std::mutex mu_;
  std::map<Key, Plan> plans_;
};

PlanCache& cache() {
  static auto* c = new PlanCache();  // see Plan: lives for the process
  return *c;
}

template <class T>
bool fma_only() {
  return std::is_same_v<T, float> && !allow_tf32();
}

void check_shape(const Conv2dShape& s) {
  FF_CHECK(s.n >= 0 && s.cin >= 1 && s.cout >= 1 && s.groups >= 1 && s.cin % s.groups == 0 && s.cout % s.groups == 0 &&
               s.kh >= 1 && s.kw >= 1 && s.stride_h >= 1 && s.stride_w >= 1 && s.pad_h >= 0 && s.pad_w >= 0 &&
               s.oh() >= 1 && s.ow() >= 1,
           "conv2d (CUDA): invalid shape ", shape_text(s));
}

}  // namespace

template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  check_shape(s);
  if (s.n == 0) return;
  Plan& p = cache().get<T>(s);
  cache().choose_fwd(p, s, fma_only<T>());
  FF_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.fwd_math));
  Storage ws = scratch(p.fwd_ws);
  const T one = 1, zero = 0;
  FF_CUDNN_CHECK(
      cudnnConvolutionForward(cudnn(), &one, p.x, x, p.w, w, p.conv, p.fwd, ws.data, p.fwd_ws, &zero, p.y, y));
  if (bias) FF_CUDNN_CHECK(cudnnAddTensor(cudnn(), &one, p.bias, bias, &one, p.y, y));
}

template <class T>
void conv2d_backward_input(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  check_shape(s);
  if (s.n == 0) return;
  Plan& p = cache().get<T>(s);
  cache().choose_bwd_data(p, s, fma_only<T>());
  FF_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_data_math));
  Storage ws = scratch(p.bwd_data_ws);
  const T one = 1, zero = 0;
  FF_CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn(), &one, p.w, w, p.y, dy, p.conv, p.bwd_data, ws.data,
                                              p.bwd_data_ws, &zero, p.x, dx));
}

template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* dy, const T* x, T* dw, T* dbias) {
  check_shape(s);
  if (dbias) channel_sum<T>(dy, s.n, s.cout, s.oh() * s.ow(), dbias);
  if (!dw) return;
  if (s.n == 0) {  // no images: the gradient is zero (cuDNN would refuse the empty batch)
    fill<T>(s.cout * (s.cin / s.groups) * s.kh * s.kw, dw, 0.0);
    return;
  }
  Plan& p = cache().get<T>(s);
  cache().choose_bwd_filter(p, s, fma_only<T>());
  FF_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_filter_math));
  Storage ws = scratch(p.bwd_filter_ws);
  const T one = 1, zero = 0;
  FF_CUDNN_CHECK(cudnnConvolutionBackwardFilter(cudnn(), &one, p.x, x, p.y, dy, p.conv, p.bwd_filter, ws.data,
                                                p.bwd_filter_ws, &zero, p.w, dw));
}

#define FF_INSTANTIATE(T)                                                                \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*); \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*);    \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff::cuda
