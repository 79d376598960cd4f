// CPU op microbenchmarks at the shapes of iResNet-50 training (batch 32, 112x112 faces): every
// distinct convolution (forward, gradient of the input, gradient of the weight) and the matrix
// products of the fc layer and of a margin head, with GFLOP/s counters, and training-mode batch
// norm at the same feature-map shapes (GB/s). Threads: OMP_NUM_THREADS.
// benchmarks/cpu_ops_table.py runs this next to PyTorch (benchmarks/torch_cpu_ops.py). The names
// encode the shapes; that script parses them, so keep the format.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <string>
#include <vector>

#include "engine/ops.h"
#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/gemm.h"

namespace {

using ff::Tensor;

Tensor random(const ff::Shape& shape, ff::Rng& rng) { return ff::rand_uniform(shape, rng, -1, 1); }

void set_counters(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = omp_get_max_threads();
}

enum class Pass { Forward, BackwardInput, BackwardWeight };
const char* pass_name(Pass p) {
  return p == Pass::Forward ? "fwd" : p == Pass::BackwardInput ? "bwd_input" : "bwd_weight";
}

void bm_conv(benchmark::State& state, ff::cpu::Conv2dShape s, Pass pass) {
  ff::Rng rng(1);
  Tensor x = random({s.n, s.cin, s.h, s.w}, rng), w = random({s.cout, s.cin / s.groups, s.kh, s.kw}, rng);
  Tensor y = random({s.n, s.cout, s.oh(), s.ow()}, rng);  // output, or its gradient
  Tensor dx = Tensor::empty(x.shape()), dw = Tensor::empty(w.shape());
  auto run = [&] {
    if (pass == Pass::Forward)
      ff::cpu::conv2d_forward<float>(s, x.data<float>(), w.data<float>(), nullptr, y.data<float>());
    else if (pass == Pass::BackwardInput)
      ff::cpu::conv2d_backward_input<float>(s, y.data<float>(), w.data<float>(), dx.data<float>());
    else
      ff::cpu::conv2d_backward_weight<float>(s, y.data<float>(), x.data<float>(), dw.data<float>(), nullptr);
  };
  run();  // warm-up: first touch of the outputs and of the kernels' scratch memory
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  set_counters(state, s.flops());
}

// y[m, n] = x[m, k] W[n, k]^T (linear / margin head logits) and its two backward products.
void bm_linear(benchmark::State& state, int64_t m, int64_t k, int64_t n, Pass pass) {
  ff::Rng rng(2);
  Tensor x = random({m, k}, rng), w = random({n, k}, rng), y = random({m, n}, rng);
  Tensor dx = Tensor::empty(x.shape()), dw = Tensor::empty(w.shape());
  auto run = [&] {
    if (pass == Pass::Forward)  // x W^T
      ff::cpu::gemm_parallel<float>(false, true, m, n, k, 1.f, x.data<float>(), k, w.data<float>(), k, 0.f,
                                    y.data<float>(), n);
    else if (pass == Pass::BackwardInput)  // dy W
      ff::cpu::gemm_parallel<float>(false, false, m, k, n, 1.f, y.data<float>(), n, w.data<float>(), k, 0.f,
                                    dx.data<float>(), k);
    else  // dy^T x
      ff::cpu::gemm_parallel<float>(true, false, n, k, m, 1.f, y.data<float>(), n, x.data<float>(), k, 0.f,
                                    dw.data<float>(), k);
  };
  run();  // warm-up: first touch of the output
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * (double)(m * n * k));
}

// Training-mode batch norm at the iResNet-50 feature-map shapes: forward (statistics, running
// update, normalise) or backward (gradients of input, weight and bias through the engine's op).
void bm_batchnorm(benchmark::State& state, ff::Shape shape, Pass pass) {
  ff::Rng rng(3);
  Tensor x = random(shape, rng).set_requires_grad(pass != Pass::Forward);
  Tensor w = ff::Tensor::full({shape[1]}, 1.0).set_requires_grad(pass != Pass::Forward);
  Tensor b = ff::Tensor::zeros({shape[1]}).set_requires_grad(pass != Pass::Forward);
  Tensor rm = ff::Tensor::zeros({shape[1]}), rv = ff::Tensor::full({shape[1]}, 1.0);
  ff::BatchNormOptions opt;
  Tensor dy = random(shape, rng);
  Tensor y = ff::batch_norm(x, w, b, rm, rv, opt);
  auto run = [&] {
    if (pass == Pass::Forward) y = ff::batch_norm(x, w, b, rm, rv, opt);
    else y.backward(dy);  // the graph is kept; gradients accumulate into x, w, b as autograd does
  };
  run();
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter((pass == Pass::Forward ? 3.0 : 5.0) * 4.0 * (double)ff::shape_numel(shape) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// Distinct convolutions of iResNet-50 at batch 32: stem, then per stage the first block's conv1
// (channel change), its stride-2 conv2 and 1x1 stride-2 downsample, and the repeated 3x3.
std::vector<ff::cpu::Conv2dShape> iresnet50_convs() {
  std::vector<ff::cpu::Conv2dShape> v;
  auto add = [&](int64_t cin, int64_t hw, int64_t cout, int64_t k, int64_t stride) {
    v.push_back({32, cin, hw, hw, cout, k, k, stride, stride, k / 2, k / 2, 1});
  };
  add(3, 112, 64, 3, 1);  // stem
  int64_t in = 64, hw = 112;
  for (int64_t width : {64, 128, 256, 512}) {
    add(in, hw, width, 3, 1);     // block 1 conv1, at the input resolution
    add(width, hw, width, 3, 2);  // block 1 conv2, stride 2
    add(in, hw, width, 1, 2);     // downsample
    hw /= 2;
    add(width, hw, width, 3, 1);  // the other blocks' convs
    in = width;
  }
  return v;
}

std::string conv_name(const ff::cpu::Conv2dShape& s, Pass p) {
  return std::string("conv2d_") + pass_name(p) + "/n" + std::to_string(s.n) + "_cin" + std::to_string(s.cin) + "_h" +
         std::to_string(s.h) + "_w" + std::to_string(s.w) + "_cout" + std::to_string(s.cout) + "_k" +
         std::to_string(s.kh) + "_s" + std::to_string(s.stride_h) + "_p" + std::to_string(s.pad_h) + "_g" +
         std::to_string(s.groups);
}

int register_all() {
  for (Pass p : {Pass::Forward, Pass::BackwardInput}) {
    for (ff::Shape shape : {ff::Shape{32, 64, 112, 112}, {32, 64, 56, 56}, {32, 128, 28, 28}, {32, 256, 14, 14},
                            {32, 512, 7, 7}}) {
      std::string name = std::string("batchnorm_") + (p == Pass::Forward ? "fwd" : "bwd") + "/n" +
                         std::to_string(shape[0]) + "_c" + std::to_string(shape[1]) + "_h" + std::to_string(shape[2]) +
                         "_w" + std::to_string(shape[3]);
      benchmark::RegisterBenchmark(name.c_str(), bm_batchnorm, shape, p)->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  }
  for (Pass p : {Pass::Forward, Pass::BackwardInput, Pass::BackwardWeight}) {
    for (const auto& s : iresnet50_convs())
      benchmark::RegisterBenchmark(conv_name(s, p).c_str(), bm_conv, s, p)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    // fc layer (512 x 7 x 7 -> 512) and margin-head logits (512 -> 10000 classes).
    for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{32, 25088, 512}, {32, 512, 10000}}) {
      std::string name = std::string("linear_") + pass_name(p) + "/m" + std::to_string(m) + "_k" + std::to_string(k) +
                         "_n" + std::to_string(n);
      benchmark::RegisterBenchmark(name.c_str(), bm_linear, m, k, n, p)->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
