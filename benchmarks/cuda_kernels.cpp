// Microbenchmarks of the fused CUDA kernels (kernels/cuda/fused.h) next to the machine's measured
// ceilings: a large device-to-device copy (bytes read + written) and large cuBLAS FP32 / TF32 GEMMs.
// Cases: perturbation norm / apply / restore and restore + SGD (+ AdamW) over the parameters of
// iResNet-50 and iResNet-100 plus 10k class centres (the real tensor list, hundreds of tensors);
// margin softmax CE forward + backward at B = 128, d = 512, C = 10k, 100k, 1M, timed without its
// GEMMs (against copy bandwidth, counting the minimum bytes each kernel file states) and with them
// (against the same three GEMMs bare). Each time is the median of 25 runs after 3 warm-ups, timed
// with CUDA events, on inputs rotated over several sets so that every run reads more than the L2.
// Prints one table; run from benchmarks/gpu/run.sh or alone (no arguments).
#include <cstdio>

#include "engine/device_hooks.h"

#ifndef FLATFACE_HAVE_CUDA

int main() {
  std::printf("bench_cuda_kernels: built without CUDA\n");
  return 0;
}

#else

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"
#include "kernels/cuda/fused.h"
#include "models/backbone.h"

namespace {

using ff::Error;
using ff::msg;

void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(msg(what, ": ", cudaGetErrorString(e)));
}
void ok(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error(msg(what, ": ", cublasGetStatusString(s)));
}

// Device memory filled with uniform values in [lo, hi) (never zeros: zeros can run faster).
class Dev {
 public:
  Dev(size_t n, float lo, float hi) : n_(n) {
    ok(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(float)), "cudaMalloc");
    std::vector<float> h(std::min<size_t>(n, size_t(1) << 24));
    uint64_t s = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n ^ (uint64_t)(lo * 1000);
    for (auto& x : h) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      x = lo + (hi - lo) * (float)((s >> 40) * 0x1.0p-24);
    }
    for (size_t at = 0; at < n; at += h.size())
      ok(cudaMemcpy(p_ + at, h.data(), std::min(h.size(), n - at) * sizeof(float), cudaMemcpyHostToDevice), "fill");
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cudaFree(p_); }
  float* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  float* p_ = nullptr;
  size_t n_;
};

// Median milliseconds of f(run) over `reps` runs after `warmup`, each run timed with events.
double median_ms(const std::function<void(int)>& f, int warmup = 3, int reps = 25) {
  cudaEvent_t a, b;
  ok(cudaEventCreate(&a), "event");
  ok(cudaEventCreate(&b), "event");
  for (int i = 0; i < warmup; ++i) f(i);
  ok(cudaDeviceSynchronize(), "warm-up");
  std::vector<float> t((size_t)reps);
  for (int i = 0; i < reps; ++i) {
    ok(cudaEventRecord(a, 0), "record");
    f(i);
    ok(cudaEventRecord(b, 0), "record");
    ok(cudaEventSynchronize(b), "sync");
    ok(cudaEventElapsedTime(&t[i], a, b), "elapsed");
  }
  ok(cudaEventDestroy(a), "event");
  ok(cudaEventDestroy(b), "event");
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Row {
  std::string name;
  double ms, value, ceiling;
  const char* unit;
  std::string goal;
};
std::vector<Row> g_rows;

void add_row(const std::string& name, double ms, double value, double ceiling, const char* unit,
             const std::string& goal) {
  g_rows.push_back({name, ms, value, ceiling, unit, goal});
  std::printf("  %-58s %9.3f ms  %9.1f %-7s (%.2f of %.0f)  %s\n", name.c_str(), ms, value, unit, value / ceiling,
              ceiling, goal.c_str());
  std::fflush(stdout);
}

struct Ceilings {
  double copy_gbs = 0, sgemm_tflops = 0, tf32_tflops = 0;
};

cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t x;
    ok(cublasCreate(&x), "cublasCreate");
    return x;
  }();
  return h;
}

// Column-major cuBLAS with FP32 or TF32 math.
void sgemm(bool tf32, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float* A, int lda,
           const float* B, int ldb, float* C, int ldc) {
  const float one = 1, zero = 0;
  ok(cublasGemmEx(handle(), ta, tb, m, n, k, &one, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, &zero, C, CUDA_R_32F, ldc,
                  tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
     "cublasGemmEx");
}

Ceilings measure_ceilings() {
  Ceilings c;
  {
    const size_t n = size_t(1) << 28;  // 1 GiB each way
    Dev src(n, -1, 1), dst(n, -1, 1);
    const double ms = median_ms([&](int) {
      ok(cudaMemcpyAsync(dst.get(), src.get(), n * sizeof(float), cudaMemcpyDeviceToDevice, 0), "copy");
    });
    c.copy_gbs = 2.0 * (double)n * sizeof(float) / (ms * 1e6);
    add_row("ceiling: device-to-device copy 1 GiB (read + write)", ms, c.copy_gbs, c.copy_gbs, "GB/s", "");
  }
  {
    const int n = 8192;
    Dev a((size_t)n * n, -1, 1), b((size_t)n * n, -1, 1), out((size_t)n * n, -1, 1);
    for (bool tf32 : {false, true}) {
      const double ms = median_ms(
          [&](int) { sgemm(tf32, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, a.get(), n, b.get(), n, out.get(), n); }, 2, 10);
      const double tf = 2.0 * n * (double)n * n / (ms * 1e9);
      (tf32 ? c.tf32_tflops : c.sgemm_tflops) = tf;
      add_row(msg("ceiling: cuBLAS ", tf32 ? "TF32" : "FP32", " GEMM 8192^3"), ms, tf, tf, "TFLOP/s", "");
    }
  }
  return c;
}

// ---- multi-tensor kernels over a real parameter list ----

// Parameter sizes of a backbone (backbone tensors, then the class centres), and slices of one arena
// per role at 256-byte aligned offsets, as an allocator would hand them out.
struct ParamSet {
  std::vector<int64_t> numel;
  std::vector<size_t> offset;
  size_t total = 0;
  ParamSet(const std::string& arch, int64_t classes) {
    ff::BackboneConfig cfg;
    cfg.arch = arch;
    auto net = ff::make_backbone(cfg);
    for (const auto& [name, t] : net->named_parameters()) numel.push_back(t.numel());
    numel.push_back(classes * 512);
    for (int64_t n : numel) {
      offset.push_back(total);
      total += ((size_t)n + 63) / 64 * 64;
    }
  }
  template <class P>
  std::vector<P> ptrs(const Dev& d) const {
    std::vector<P> v;
    for (size_t o : offset) v.push_back(d.get() + o);
    return v;
  }
  int64_t elems() const {
    int64_t s = 0;
    for (int64_t n : numel) s += n;
    return s;
  }
};

void bench_multi_tensor(const std::string& arch, const Ceilings& c) {
  const ParamSet ps(arch, 10000);
  const int64_t count = (int64_t)ps.numel.size(), n = ps.elems();
  std::printf("-- %s + 10k centres: %lld tensors, %.1f M parameters (%.0f MB each role)\n", arch.c_str(),
              (long long)count, (double)n / 1e6, (double)n * 4 / 1e6);
  Dev w(ps.total, -1, 1), g(ps.total, -1e-2f, 1e-2f), saved(ps.total, -1, 1), mom(ps.total, -0.1f, 0.1f),
      v(ps.total, 0, 1e-2f);
  auto pw = ps.ptrs<float*>(w), ps_saved = ps.ptrs<float*>(saved), pm = ps.ptrs<float*>(mom), pv = ps.ptrs<float*>(v);
  auto pg = ps.ptrs<const float*>(g), pw_c = ps.ptrs<const float*>(w), psaved_c = ps.ptrs<const float*>(saved);
  const std::string goal = "goal >= 0.80 of copy";
  auto gbs = [&](double bytes_per_elem, double ms) { return bytes_per_elem * (double)n / (ms * 1e6); };
  double* result = reinterpret_cast<double*>(v.get());  // any 8 bytes of device memory
  double ms =
      median_ms([&](int) { ff::cuda::perturb_sq_norm_to<float>(count, pg.data(), nullptr, ps.numel.data(), result); });
  add_row(arch + " perturb_sq_norm_to (4 B/elem, result on device)", ms, gbs(4, ms), c.copy_gbs, "GB/s", goal);
  ms = median_ms([&](int) { ff::cuda::perturb_sq_norm<float>(count, pg.data(), nullptr, ps.numel.data()); });
  add_row(arch + " perturb_sq_norm (4 B/elem, + copy to host and wait)", ms, gbs(4, ms), c.copy_gbs, "GB/s", goal);
  ms = median_ms(
      [&](int) { ff::cuda::perturb_sq_norm_to<float>(count, pg.data(), pw_c.data(), ps.numel.data(), result); });
  add_row(arch + " perturb_sq_norm_to adaptive (8 B/elem)", ms, gbs(8, ms), c.copy_gbs, "GB/s", goal);
  ms = median_ms([&](int) {
    ff::cuda::perturb_apply<float>(count, pw.data(), ps_saved.data(), pg.data(), ps.numel.data(), 1e-3, false);
  });
  add_row(arch + " perturb_apply (16 B/elem)", ms, gbs(16, ms), c.copy_gbs, "GB/s", goal);
  ms = median_ms([&](int) { ff::cuda::perturb_restore<float>(count, pw.data(), psaved_c.data(), ps.numel.data()); });
  add_row(arch + " perturb_restore (8 B/elem)", ms, gbs(8, ms), c.copy_gbs, "GB/s", goal);
  const std::vector<uint8_t> first((size_t)count, 0);
  const ff::cuda::SgdHyper sgd{0.1, 0.9, 0, 5e-4, false};
  ms = median_ms([&](int) {
    ff::cuda::sgd_update<float>(count, pw.data(), psaved_c.data(), pg.data(), pm.data(), first.data(), ps.numel.data(),
                                sgd);
  });
  add_row(arch + " restore + SGD momentum (20 B/elem)", ms, gbs(20, ms), c.copy_gbs, "GB/s", goal);
  const std::vector<int64_t> step((size_t)count, 10);
  const ff::cuda::AdamWHyper adamw{1e-3, 0.9, 0.999, 1e-8, 0.05};
  ms = median_ms([&](int) {
    ff::cuda::adamw_update<float>(count, pw.data(), psaved_c.data(), pg.data(), pm.data(), pv.data(), step.data(),
                                  ps.numel.data(), adamw);
  });
  add_row(arch + " restore + AdamW (28 B/elem)", ms, gbs(28, ms), c.copy_gbs, "GB/s", goal);
}

// ---- margin softmax cross-entropy ----

// One input set. `small` holds doubles: f norms [B], w norms [C], 4 row arrays [B], outputs [3B + 1].
struct MarginSet {
  Dev f, w, gf, gw, ws, small;
  std::unique_ptr<int64_t, void (*)(void*)> labels{nullptr, [](void* p) { cudaFree(p); }};
  MarginSet(int64_t B, int64_t C, int64_t d, size_t ws_bytes)
      : f((size_t)(B * d), -1, 1),
        w((size_t)(C * d), -0.05f, 0.05f),
        gf((size_t)(B * d), 0, 1),
        gw((size_t)(C * d), 0, 1),
        ws(ws_bytes / sizeof(float) + 1, 0, 1),
        small(2 * (size_t)(C + 8 * B + 1), 0, 1) {
    std::vector<int64_t> y((size_t)B);
    for (int64_t i = 0; i < B; ++i) y[i] = (i * 7919) % C;
    int64_t* p = nullptr;
    ok(cudaMalloc(&p, (size_t)B * sizeof(int64_t)), "cudaMalloc");
    labels.reset(p);
    ok(cudaMemcpy(p, y.data(), (size_t)B * sizeof(int64_t), cudaMemcpyHostToDevice), "labels");
  }
};

// Returns the time of the three bare GEMMs. With column blocks (chunk > 0) the workspace is too small
// for them: pass the time measured without blocks as `bare_ms`.
double bench_margin(int64_t C, int64_t chunk, bool tf32, const Ceilings& c, double bare_ms = 0) {
  const int64_t B = 128, d = 512;
  ff::cuda::MarginShape s;
  s.B = B, s.C = C, s.d = d, s.chunk = chunk, s.tf32 = tf32;
  const size_t ws_bytes = ff::cuda::margin_workspace_bytes(s, sizeof(float));
  const double set_bytes = (double)(2 * C * d + B * C) * 4;
  const int nsets = std::max(1, (int)(256e6 / set_bytes + 0.999));  // every run reads past the L2
  std::vector<std::unique_ptr<MarginSet> > sets;
  for (int i = 0; i < nsets; ++i) sets.push_back(std::make_unique<MarginSet>(B, C, d, ws_bytes));
  ff::cuda::MarginParams p;  // ArcFace s = 64, m = 0.5, exact gradient, margin loss
  const std::string tag =
      msg("margin B 128 d 512 C ", C, chunk ? msg(" chunk ", chunk) : std::string(), tf32 ? " TF32" : " FP32");

  // The three GEMMs alone, same shapes as the op (forward dots, grad_f, grad_w).
  const double gemm_ms = chunk ? bare_ms : median_ms([&](int i) {
    MarginSet& m = *sets[(size_t)i % sets.size()];
    float* buf = reinterpret_cast<float*>(m.ws.get());
    sgemm(tf32, CUBLAS_OP_T, CUBLAS_OP_N, (int)C, (int)B, (int)d, m.w.get(), (int)d, m.f.get(), (int)d, buf, (int)C);
    sgemm(tf32, CUBLAS_OP_N, CUBLAS_OP_N, (int)d, (int)B, (int)C, m.w.get(), (int)d, buf, (int)C, m.gf.get(), (int)d);
    sgemm(tf32, CUBLAS_OP_N, CUBLAS_OP_T, (int)d, (int)C, (int)B, m.f.get(), (int)d, buf, (int)C, m.gw.get(), (int)d);
  });
  const double flops = 3 * 2.0 * (double)B * (double)C * (double)d;
  if (!chunk)
    add_row(tag + " bare GEMMs x3", gemm_ms, flops / (gemm_ms * 1e9), tf32 ? c.tf32_tflops : c.sgemm_tflops, "TFLOP/s",
            "");

  // The whole op, forward + backward.
  const double full_ms = median_ms([&](int i) {
    MarginSet& m = *sets[(size_t)i % sets.size()];
    double* out = reinterpret_cast<double*>(m.small.get()) + C + 5 * B;
    ff::cuda::margin_fused_forward<float>(p, s, m.labels.get(), m.f.get(), m.w.get(), 1.0 / B, m.ws.get(),
                                          {out, nullptr, out + B, out + 2 * B});
    ff::cuda::margin_fused_backward<float>(p, s, m.labels.get(), m.f.get(), m.w.get(), 1.0 / B, 1.0, m.ws.get(),
                                           m.gf.get(), m.gw.get());
  });
  const double extra_gemm = chunk && chunk < C ? 4.0 / 3.0 : 1.0;  // column blocks recompute the dots
  add_row(tag + " fused fwd+bwd incl. GEMMs", full_ms, full_ms / gemm_ms, extra_gemm * 1.2, "x GEMMs",
          msg("goal <= ", extra_gemm * 1.2, "x bare GEMMs (value / ceiling <= 1)"));

  if (chunk) return gemm_ms;
  // Everything but the GEMMs, on the steps (one block): the minimum bytes of margin_softmax.cu.
  const double rest_ms = median_ms([&](int i) {
    MarginSet& m = *sets[(size_t)i % sets.size()];
    double* fn = reinterpret_cast<double*>(m.small.get());
    double* wn = fn + B;
    double* r = wn + C;
    const ff::cuda::MarginRows mr{r, r + B, r + 2 * B, r + 3 * B};
    float* buf = m.ws.get();  // the workspace holds at least the [B, C] buffer
    ff::cuda::row_norms<float>(B, d, m.f.get(), fn);
    ff::cuda::row_norms<float>(C, d, m.w.get(), wn);
    ff::cuda::margin_row_stats<float>(p, B, C, 0, m.labels.get(), fn, wn, buf, mr, false);
    ff::cuda::row_losses(p, B, mr, nullptr, nullptr, nullptr);
    ff::cuda::logits_to_grad<float>(p, B, C, 0, m.labels.get(), mr, fn, wn, 1.0 / B, buf);
    ff::cuda::project_rows<float>(B, d, m.f.get(), fn, m.gf.get());
    ff::cuda::project_rows<float>(C, d, m.w.get(), wn, m.gw.get());
  });
  const double bytes = 12.0 * B * C + 16.0 * C * d + 16.0 * B * d;  // GEMM's write of the dots not counted
  add_row(tag + " fused without GEMMs (12 B/BC + 16 B/Cd)", rest_ms, bytes / (rest_ms * 1e6), c.copy_gbs, "GB/s",
          "goal >= 0.70 of copy");
  return gemm_ms;
}

}  // namespace

int main() {
  if (!ff::cuda_available()) {
    std::printf("bench_cuda_kernels: no CUDA device\n");
    return 0;
  }
  try {
    cudaDeviceProp prop{};
    ok(cudaGetDeviceProperties(&prop, 0), "properties");
    std::printf("bench_cuda_kernels on %s: %d SMs, %.0f MB L2, %.1f GB\n", prop.name, prop.multiProcessorCount,
                prop.l2CacheSize / 1e6, prop.totalGlobalMem / 1e9);
    const Ceilings c = measure_ceilings();
    for (const char* arch : {"r50", "r100"}) bench_multi_tensor(arch, c);
    double bare_1m = 0;
    for (int64_t C : {10000, 100000, 1000000}) bare_1m = bench_margin(C, 0, false, c);
    bench_margin(1000000, 262144, false, c, bare_1m);  // against the same bare GEMMs (x 4/3 allowed)
    for (int64_t C : {100000, 1000000}) bench_margin(C, 0, true, c);

    std::printf("\n| case | median ms | achieved | ceiling | fraction | goal |\n|---|---:|---:|---:|---:|---|\n");
    for (const Row& r : g_rows)
      std::printf("| %s | %.3f | %.1f %s | %.1f | %.2f | %s |\n", r.name.c_str(), r.ms, r.value, r.unit, r.ceiling,
                  r.value / r.ceiling, r.goal.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_kernels: %s\n", e.what());
    return 1;
  }
  return 0;
}

#endif  // FLATFACE_HAVE_CUDA
