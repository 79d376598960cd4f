// The fused CUDA kernels (kernels/cuda/fused.h) against their CPU twins: margin softmax cross-entropy
// (steps and the chunked driver; every margin type, both gradient modes, both losses; batch 1, C = 1,
// C not a multiple of 4 or 32, d = 128 and 512, C = 300k, forced column blocks), the perturbation
// norm / apply / restore over many tensors of odd sizes at misaligned addresses, and SGD / AdamW
// fused with the restore. Every output sits between sentinel guard regions that are checked after.
// Each check prints its seed and its worst error as a fraction of the tolerance; FLATFACE_TEST_SEED
// replays a seed. The margin references are the CPU twin in double on the same inputs, so a float
// result's error is the GPU's own; perturbation and optimizer results must match bit for bit.
// Without a GPU every test skips with one line.
#include <gtest/gtest.h>

#include "engine/device_hooks.h"

#define SKIP_WITHOUT_CUDA() \
  if (!::ff::cuda_available()) GTEST_SKIP() << "no CUDA device: skipping"

#ifndef FLATFACE_HAVE_CUDA

TEST(CudaFused, Backend) {
  SKIP_WITHOUT_CUDA();
  FAIL() << "a build without the CUDA backend reports a CUDA device";
}

#else

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/error.h"
#include "engine/rng.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/margin_softmax.h"
#include "kernels/cpu/perturb.h"
#include "kernels/cpu/sgd.h"
#include "kernels/cuda/fused.h"
#include "tests/cuda/compare.h"
#include "tests/engine/gradcheck.h"

namespace ff::test {
namespace {

// ---------------------------------------------------------------------------------------------
// Harness: guarded device buffers, comparisons with the error printed as a fraction of tolerance.

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(msg(what, ": ", cudaGetErrorString(e)));
}

// n elements on the device at `offset` elements past a guard region of sentinels; offset 1 makes the
// pointer misaligned for 16-byte access.
template <class T>
class DevBuf {
 public:
  explicit DevBuf(int64_t n, int64_t offset = 0) : n_(n), off_(offset), total_(n + 2 * kGuard + offset) {
    void* p = nullptr;
    cuda_ok(cudaMalloc(&p, (size_t)total_ * sizeof(T)), "cudaMalloc");
    base_ = static_cast<T*>(p);
    std::vector<T> s((size_t)total_, sentinel<T>());
    cuda_ok(cudaMemcpy(base_, s.data(), s.size() * sizeof(T), cudaMemcpyHostToDevice), "fill guards");
  }
  DevBuf(const std::vector<T>& v, int64_t offset = 0) : DevBuf((int64_t)v.size(), offset) { upload(v); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { cudaFree(base_); }

  T* ptr() const { return base_ + kGuard + off_; }
  int64_t size() const { return n_; }
  void upload(const std::vector<T>& v) {
    ASSERT_EQ((int64_t)v.size(), n_);
    cuda_ok(cudaMemcpy(ptr(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> host() const {
    std::vector<T> v((size_t)n_);
    cuda_ok(cudaMemcpy(v.data(), ptr(), v.size() * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return v;
  }
  // Fails when a write landed outside the n elements.
  void expect_guards(const std::string& label) const {
    std::vector<T> all((size_t)total_);
    cuda_ok(cudaMemcpy(all.data(), base_, all.size() * sizeof(T), cudaMemcpyDeviceToHost), "download");
    expect_guards_intact(all, off_, n_, label);
  }


 private:
  T* base_ = nullptr;
  int64_t n_, off_, total_;
};

void sync() { cuda_ok(cudaDeviceSynchronize(), "kernel"); }

// ‖got − want‖₂ / ‖want‖₂ ≤ tol.
template <class A>
void expect_rel_l2(const std::string& label, uint64_t seed, const std::vector<A>& got, const std::vector<double>& want,
                   double tol) {
  ASSERT_EQ(got.size(), want.size()) << label;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = (double)got[i] - want[i];
    num += e * e;
    den += want[i] * want[i];
  }
  const double rel = std::sqrt(num) / std::sqrt(den);
  std::printf("[cuda] %-78s seed %llu relative L2 error %.2e: %.3f of tolerance\n", label.c_str(),
              (unsigned long long)seed, rel, rel / tol);
  EXPECT_LT(rel, tol) << label << " seed " << seed;  // NaN fails too
}

template <class T>
void expect_bitwise(const std::string& label, uint64_t seed, const std::vector<T>& got, const std::vector<T>& want) {
  ASSERT_EQ(got.size(), want.size()) << label;
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0 && bad++ == 0) first = (int64_t)i;
  std::printf("[cuda] %-78s seed %llu %lld of %zu elements differ (bitwise)\n", label.c_str(),
              (unsigned long long)seed, (long long)bad, got.size());
  EXPECT_EQ(bad, 0) << label << " seed " << seed << ": first difference at " << first << ": got "
                    << (double)got[(size_t)first] << " want " << (double)want[(size_t)first];
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// ---------------------------------------------------------------------------------------------
// Margin softmax cross-entropy.

using cpu::MarginGrad;
using cpu::MarginLoss;
using cpu::MarginParams;
using cpu::MarginType;

MarginParams margin_params(MarginType type, MarginGrad grad, MarginLoss loss) {
  MarginParams p;
  p.type = type;
  p.grad = grad;
  p.loss = loss;
  if (type == MarginType::ArcFace) {
    p.s = 64, p.m1 = 1, p.m2 = 0.5, p.m3 = 0;
  } else if (type == MarginType::CosFace) {
    p.s = 64, p.m1 = 1, p.m2 = 0, p.m3 = 0.4;
  } else {  // fallback past cos θ0 = −0.951
    p.s = 32, p.m1 = 0.9, p.m2 = 0.6, p.m3 = 0.15;
  }
  return p;
}

std::string margin_name(const MarginParams& p) {
  const char* t = p.type == MarginType::ArcFace ? "arcface" : p.type == MarginType::CosFace ? "cosface" : "combined";
  return msg(t, p.grad == MarginGrad::Exact ? "/exact" : "/straight",
             p.loss == MarginLoss::Margin ? "/margin" : "/aace");
}

// Embeddings, centres and labels (values representable in T). A third of the labelled centres get a
// cosine of 0.5..0.95 to their row's embedding, a third −0.99..−0.96 (the fallback branch of the
// ArcFace and combined test margins, clear of their thresholds −0.878 and −0.951 so float and double
// take the same branch), the rest stay random; centre norms vary by a factor 4.
template <class T>
struct MarginInputs {
  int64_t B, C, d;
  std::vector<T> f, w;
  std::vector<int64_t> labels;
};

template <class T>
MarginInputs<T> margin_inputs(int64_t B, int64_t C, int64_t d, Rng& rng) {
  MarginInputs<T> in{B, C, d, {}, {}, {}};
  std::vector<double> f((size_t)(B * d)), w((size_t)(C * d));
  for (auto& x : f) x = rng.normal();
  for (int64_t j = 0; j < C; ++j) {
    const double scale = 0.05 * rng.uniform(0.5, 2.0);
    for (int64_t k = 0; k < d; ++k) w[j * d + k] = scale * rng.normal();
  }
  in.labels.resize((size_t)B);
  std::vector<char> set((size_t)C, 0);
  for (int64_t i = 0; i < B; ++i) {
    const int64_t y = (int64_t)rng.below((uint64_t)C);
    in.labels[i] = y;
    if (set[y] || i % 3 == 0) continue;
    set[y] = 1;
    const double c = i % 3 == 1 ? rng.uniform(0.5, 0.95) : rng.uniform(-0.99, -0.96);
    // w_y = |w_y| (c f̂ + sqrt(1 − c²) û), û a random unit vector orthogonal to f̂.
    double nf = 0, nw = 0, dot = 0, nu = 0;
    std::vector<double> u((size_t)d);
    for (int64_t k = 0; k < d; ++k) nf += f[i * d + k] * f[i * d + k], nw += w[y * d + k] * w[y * d + k];
    nf = std::sqrt(nf), nw = std::sqrt(nw);
    for (int64_t k = 0; k < d; ++k) u[k] = rng.normal(), dot += u[k] * f[i * d + k] / nf;
    for (int64_t k = 0; k < d; ++k) u[k] -= dot * f[i * d + k] / nf, nu += u[k] * u[k];
    nu = std::sqrt(nu);
    for (int64_t k = 0; k < d; ++k) w[y * d + k] = nw * (c * f[i * d + k] / nf + std::sqrt(1 - c * c) * u[k] / nu);
  }
  in.f.assign(f.begin(), f.end());
  in.w.assign(w.begin(), w.end());
  return in;
}

// The CPU twin in double on the same values, step by step.
struct MarginRef {
  std::vector<double> f_norm, w_norm, target_cos, target_logit, max_other, sum_other, loss, buf, grad_f, grad_w;
  std::vector<int64_t> correct;
  double loss_mean = 0;
};

template <class T>
MarginRef margin_reference(const MarginParams& p, const MarginInputs<T>& in, double scale, double grad_out) {
  const int64_t B = in.B, C = in.C, d = in.d;
  const std::vector<double> f = to_double(in.f), w = to_double(in.w);
  MarginRef r;
  r.f_norm.resize(B), r.w_norm.resize(C), r.target_cos.resize(B), r.target_logit.resize(B), r.max_other.resize(B);
  r.sum_other.resize(B), r.loss.resize(B), r.correct.resize(B), r.buf.resize((size_t)(B * C));
  r.grad_f.resize((size_t)(B * d)), r.grad_w.resize((size_t)(C * d));
  cpu::MarginRows rows{r.target_cos.data(), r.target_logit.data(), r.max_other.data(), r.sum_other.data()};
  cpu::row_norms(B, d, f.data(), r.f_norm.data());
  cpu::row_norms(C, d, w.data(), r.w_norm.data());
  cpu::cosine_logits(B, C, d, f.data(), r.f_norm.data(), w.data(), r.w_norm.data(), r.buf.data());
  cpu::apply_margin(p, B, C, 0, in.labels.data(), r.buf.data(), rows);
  cpu::row_sum_other(B, C, 0, in.labels.data(), r.buf.data(), rows);
  cpu::row_losses(p, B, rows, r.loss.data(), r.correct.data());
  for (double l : r.loss) r.loss_mean += l;
  r.loss_mean /= (double)B;
  cpu::logits_to_grad(p, B, C, 0, in.labels.data(), rows, r.f_norm.data(), r.w_norm.data(), scale, r.buf.data());
  cpu::margin_backward(B, C, d, f.data(), r.f_norm.data(), w.data(), r.w_norm.data(), r.buf.data(), grad_out,
                       r.grad_f.data(), r.grad_w.data());
  return r;
}

// Tolerances of a float result against the double reference: a cosine is off by the float rounding
// of a d-term dot (~1e-6 at worst), a logit by s·ψ' (≤ 2.4 here) times that, a probability
// exp(z − lse) relatively by the error of its logits. A CPU emulation of these kernels (float GEMMs
// by OpenBLAS) reached at most 0.03 of each bound; the GPU's GEMM order and __expf may cost a few
// times that.
template <class T>
struct MarginTol {
  static constexpr bool f32 = std::is_same_v<T, float>;
  double s;
  Tol cosine() const { return Tol{0, 0, 0, f32 ? 1e-5 : 1e-12}; }
  Tol logit() const { return Tol{0, 0, 0, (f32 ? 1e-5 : 1e-12) * s}; }
  Tol loss() const { return Tol{0, f32 ? 3e-5 : 1e-10, 0, (f32 ? 1e-5 : 1e-12) * s}; }
  // Plus a floor far below any gradient that matters: a row whose gradient is ~1e-40 (a well
  // classified row under aace) is computed from float exps deep in the subnormal range.
  Tol grad(int64_t row) const { return Tol{f32 ? 1e-3 : 1e-9, f32 ? 1e-3 : 1e-9, row, f32 ? 1e-30 : 1e-290}; }
};

// The target logit of each row is compared on the scale s (it spans ±s); max_other + log(sum_other),
// the log-sum-exp of the other classes, too.
std::vector<double> lse_other(const std::vector<double>& m, const std::vector<double>& s) {
  std::vector<double> r(m.size());
  for (size_t i = 0; i < m.size(); ++i) r[i] = m[i] + std::log(s[i]);
  return r;
}

// Rows where the reference's prediction is not within `gap` of a tie must agree on `correct`.
void expect_correct(const std::string& label, uint64_t seed, const MarginParams& p, const MarginRef& ref,
                    const std::vector<int64_t>& got, double gap) {
  int64_t bad = 0, compared = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::fabs(p.s * ref.target_cos[i] - ref.max_other[i]) <= gap) continue;
    ++compared;
    bad += got[i] != ref.correct[i];
  }
  std::printf("[cuda] %-78s seed %llu %lld of %lld rows disagree\n", (label + " correct").c_str(),
              (unsigned long long)seed, (long long)bad, (long long)compared);
  EXPECT_EQ(bad, 0) << label << " seed " << seed;
}

struct MarginCase {
  int64_t B, C, d, chunk;
  MarginParams p;
  int64_t offset = 0;  // elements: 1 misaligns f, w and the gradients
};

// The whole op (margin_fused_forward + margin_fused_backward) against the CPU twin.
template <class T>
void check_margin_fused(const MarginCase& c, uint64_t seed) {
  Rng rng(seed);
  const MarginInputs<T> in = margin_inputs<T>(c.B, c.C, c.d, rng);
  const double scale = 1.0 / (double)c.B, grad_out = rng.uniform(0.5, 1.5);
  const MarginRef ref = margin_reference(c.p, in, scale, grad_out);
  const std::string label = msg("margin ", type_name<T>(), " ", margin_name(c.p), " B ", c.B, " C ", c.C, " d ", c.d,
                                " chunk ", c.chunk, c.offset ? " misaligned" : "");

  cuda::MarginShape shape;
  shape.B = c.B, shape.C = c.C, shape.d = c.d, shape.chunk = c.chunk;
  DevBuf<T> f(in.f, c.offset), w(in.w, c.offset);
  DevBuf<int64_t> labels(in.labels);
  DevBuf<char> ws((int64_t)cuda::margin_workspace_bytes(shape, sizeof(T)));
  DevBuf<double> loss(c.B), target_cos(c.B), loss_mean(1);
  DevBuf<int64_t> correct(c.B);
  DevBuf<T> grad_f(c.B * c.d, c.offset), grad_w(c.C * c.d, c.offset);
  cuda::MarginOutputs out{loss.ptr(), correct.ptr(), target_cos.ptr(), loss_mean.ptr()};
  cuda::margin_fused_forward<T>(c.p, shape, labels.ptr(), f.ptr(), w.ptr(), scale, ws.ptr(), out);
  cuda::margin_fused_backward<T>(c.p, shape, labels.ptr(), f.ptr(), w.ptr(), scale, grad_out, ws.ptr(), grad_f.ptr(),
                                 grad_w.ptr());
  sync();

  const MarginTol<T> tol{c.p.s};
  for (auto* b : {&loss, &target_cos, &loss_mean}) b->expect_guards(label);
  correct.expect_guards(label);
  grad_f.expect_guards(label + " grad_f");
  grad_w.expect_guards(label + " grad_w");
  ws.expect_guards(label + " workspace");
  expect_close(label + " target_cos", seed, target_cos.host(), ref.target_cos, tol.cosine());
  expect_close(label + " loss", seed, loss.host(), ref.loss, tol.loss());
  expect_close(label + " loss_mean", seed, loss_mean.host(), std::vector<double>{ref.loss_mean}, tol.loss());
  expect_correct(label, seed, c.p, ref, correct.host(), std::is_same_v<T, float> ? 1e-2 : 0.0);
  expect_close(label + " grad_f", seed, grad_f.host(), ref.grad_f, tol.grad(c.d));
  expect_close(label + " grad_w", seed, grad_w.host(), ref.grad_w, tol.grad(c.d));

  // Run to run: the same bits again.
  std::vector<T> gf1 = grad_f.host(), gw1 = grad_w.host();
  std::vector<double> l1 = loss.host();
  cuda::margin_fused_forward<T>(c.p, shape, labels.ptr(), f.ptr(), w.ptr(), scale, ws.ptr(), out);
  cuda::margin_fused_backward<T>(c.p, shape, labels.ptr(), f.ptr(), w.ptr(), scale, grad_out, ws.ptr(), grad_f.ptr(),
                                 grad_w.ptr());
  sync();
  expect_bitwise(label + " loss rerun", seed, loss.host(), l1);
  expect_bitwise(label + " grad_f rerun", seed, grad_f.host(), gf1);
  expect_bitwise(label + " grad_w rerun", seed, grad_w.host(), gw1);
}

std::vector<MarginParams> all_margins() {
  std::vector<MarginParams> v;
  for (MarginType t : {MarginType::ArcFace, MarginType::CosFace, MarginType::Combined})
    for (MarginGrad g : {MarginGrad::Exact, MarginGrad::StraightThrough})
      for (MarginLoss l : {MarginLoss::Margin, MarginLoss::Aace}) v.push_back(margin_params(t, g, l));
  return v;
}

TEST(CudaFusedMargin, EveryOptionAgainstCpu) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(301);
  for (const MarginParams& p : all_margins()) {
    check_margin_fused<float>({7, 1000, 512, 0, p}, seed);  // C a multiple of 4, not of 32
    check_margin_fused<float>({5, 1001, 128, 0, p}, seed);  // C odd: the scalar path
    check_margin_fused<double>({6, 333, 128, 0, p}, seed);
  }
}

TEST(CudaFusedMargin, AwkwardSizes) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(302);
  const MarginParams arc = margin_params(MarginType::ArcFace, MarginGrad::Exact, MarginLoss::Margin);
  const MarginParams aace = margin_params(MarginType::Combined, MarginGrad::Exact, MarginLoss::Aace);
  for (auto run : {check_margin_fused<float>, check_margin_fused<double>}) {
    run({1, 10, 128, 0, arc}, seed);       // batch 1
    run({1, 37, 512, 0, aace}, seed);      // batch 1, aace
    run({3, 1, 128, 0, arc}, seed);        // one class: the target is all there is
    run({9, 2, 128, 0, aace}, seed);       // aace's smallest C
    run({13, 515, 130, 0, arc, 1}, seed);  // d not a multiple of 4, misaligned pointers
    run({11, 260, 128, 0, aace, 1}, seed);
  }
  check_margin_fused<float>({128, 5000, 512, 0, arc}, seed);  // the training shape, smaller C
}

TEST(CudaFusedMargin, ColumnBlocksMatchOneBlock) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(303);
  for (const MarginParams& p : {margin_params(MarginType::ArcFace, MarginGrad::Exact, MarginLoss::Margin),
                                margin_params(MarginType::CosFace, MarginGrad::StraightThrough, MarginLoss::Aace),
                                margin_params(MarginType::Combined, MarginGrad::Exact, MarginLoss::Margin)}) {
    check_margin_fused<float>({6, 1000, 128, 96, p}, seed);  // 10 blocks of 96, last of 40
    check_margin_fused<float>({6, 1000, 128, 97, p}, seed);  // odd width: the scalar path
    check_margin_fused<double>({4, 301, 64, 50, p}, seed);
    check_margin_fused<float>({1, 100, 128, 1, p}, seed);  // one class per block
  }
}

TEST(CudaFusedMargin, LargeC) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(304);
  const MarginParams arc = margin_params(MarginType::ArcFace, MarginGrad::Exact, MarginLoss::Margin);
  const MarginParams aace = margin_params(MarginType::ArcFace, MarginGrad::StraightThrough, MarginLoss::Aace);
  check_margin_fused<float>({3, 300000, 128, 0, arc}, seed);
  check_margin_fused<float>({3, 300000, 128, 65536, aace}, seed);
}

// The steps one by one against the CPU steps, on a shard that holds classes [class_begin, +C) of a
// larger set, so some rows' targets are elsewhere; and two column blocks chained with `accumulate`.
template <class T>
void check_margin_steps(const MarginParams& p, int64_t B, int64_t C, int64_t d, uint64_t seed) {
  Rng rng(seed);
  MarginInputs<T> in = margin_inputs<T>(B, C, d, rng);
  const int64_t class_begin = 5;
  for (auto& y : in.labels) y += class_begin;  // labels 5..C+4: ids ≥ C + 5 are not in this shard
  for (int64_t i = 0; i < B; i += 4) in.labels[i] = C + class_begin + (int64_t)rng.below(50);
  const std::string label = msg("margin steps ", type_name<T>(), " ", margin_name(p), " B ", B, " C ", C, " d ", d);
  const double scale = 1.0 / (double)B;

  const std::vector<double> f = to_double(in.f), w = to_double(in.w);
  std::vector<double> fn(B), wn(C), tc(B), tl(B), mo(B), so(B), buf((size_t)(B * C));
  cpu::MarginRows rows{tc.data(), tl.data(), mo.data(), so.data()};
  cpu::row_norms(B, d, f.data(), fn.data());
  cpu::row_norms(C, d, w.data(), wn.data());
  cpu::cosine_logits(B, C, d, f.data(), fn.data(), w.data(), wn.data(), buf.data());
  cpu::apply_margin(p, B, C, class_begin, in.labels.data(), buf.data(), rows);
  cpu::row_sum_other(B, C, class_begin, in.labels.data(), buf.data(), rows);
  std::vector<double> ref_loss(B);
  std::vector<int64_t> ref_correct(B);
  cpu::row_losses(p, B, rows, ref_loss.data(), ref_correct.data());
  cpu::logits_to_grad(p, B, C, class_begin, in.labels.data(), rows, fn.data(), wn.data(), scale, buf.data());

  DevBuf<T> gf(in.f), gw(in.w), gbuf(B * C);
  DevBuf<int64_t> glabels(in.labels), gcorrect(B);
  DevBuf<double> gfn(B), gwn(C), gtc(B), gtl(B), gmo(B), gso(B), gloss(B), gmean(1);
  const cuda::MarginRows grows{gtc.ptr(), gtl.ptr(), gmo.ptr(), gso.ptr()};
  cuda::row_norms<T>(B, d, gf.ptr(), gfn.ptr());
  cuda::row_norms<T>(C, d, gw.ptr(), gwn.ptr());
  // Two column blocks [0, h) and [h, C) of the shard, chained; each holds its own contiguous dots.
  const int64_t h = C / 3;
  DevBuf<T> gbuf2(B * (C - h));
  cuda::logits_gemm<T>(B, h, d, gf.ptr(), gw.ptr(), gbuf.ptr());
  cuda::margin_row_stats<T>(p, B, h, class_begin, glabels.ptr(), gfn.ptr(), gwn.ptr(), gbuf.ptr(), grows, false);
  cuda::logits_gemm<T>(B, C - h, d, gf.ptr(), gw.ptr() + h * d, gbuf2.ptr());
  cuda::margin_row_stats<T>(p, B, C - h, class_begin + h, glabels.ptr(), gfn.ptr(), gwn.ptr() + h, gbuf2.ptr(), grows,
                            true);
  cuda::row_losses(p, B, grows, gloss.ptr(), gcorrect.ptr(), gmean.ptr());
  // The gradient on the whole shard in one block.
  cuda::logits_gemm<T>(B, C, d, gf.ptr(), gw.ptr(), gbuf.ptr());
  cuda::logits_to_grad<T>(p, B, C, class_begin, glabels.ptr(), grows, gfn.ptr(), gwn.ptr(), scale, gbuf.ptr());
  sync();

  const MarginTol<T> tol{p.s};
  for (auto* b : {&gfn, &gwn, &gtc, &gtl, &gmo, &gso, &gloss, &gmean}) b->expect_guards(label);
  gbuf.expect_guards(label + " H");
  gbuf2.expect_guards(label + " second block");
  gcorrect.expect_guards(label + " correct");
  expect_close(label + " f_norm", seed, gfn.host(), fn, Tol{0, 1e-13});
  expect_close(label + " w_norm", seed, gwn.host(), wn, Tol{0, 1e-13});
  expect_close(label + " target_cos", seed, gtc.host(), tc, tol.cosine());
  expect_close(label + " target_logit", seed, gtl.host(), tl, tol.logit());
  expect_close(label + " max_other", seed, gmo.host(), mo, tol.logit());
  expect_close(label + " lse_other", seed, lse_other(gmo.host(), gso.host()), lse_other(mo, so), tol.logit());
  expect_close(label + " loss", seed, gloss.host(), ref_loss, tol.loss());
  expect_close(label + " H", seed, gbuf.host(), buf, tol.grad(C));
  MarginRef r;
  r.target_cos = tc, r.max_other = mo, r.correct = ref_correct;
  expect_correct(label, seed, p, r, gcorrect.host(), std::is_same_v<T, float> ? 1e-2 : 0.0);
  double mean = 0;
  for (double l : ref_loss) mean += l;
  expect_close(label + " loss_mean", seed, gmean.host(), std::vector<double>{mean / (double)B}, tol.loss());

  // margin_backward from the reference H rounded to T (so only the backward is measured).
  std::vector<double> ref_gf((size_t)(B * d)), ref_gw((size_t)(C * d));
  DevBuf<T> hbuf(std::vector<T>(buf.begin(), buf.end())), dgf(B * d), dgw(C * d);
  std::vector<double> ref_hr(buf.size());
  for (size_t i = 0; i < buf.size(); ++i) ref_hr[i] = (double)(T)buf[i];
  cpu::margin_backward(B, C, d, f.data(), fn.data(), w.data(), wn.data(), ref_hr.data(), 0.75, ref_gf.data(),
                       ref_gw.data());
  cuda::margin_backward<T>(B, C, d, gf.ptr(), gfn.ptr(), gw.ptr(), gwn.ptr(), hbuf.ptr(), 0.75, dgf.ptr(), dgw.ptr());
  sync();
  dgf.expect_guards(label + " backward grad_f");
  dgw.expect_guards(label + " backward grad_w");
  constexpr bool f32 = std::is_same_v<T, float>;
  const Tol gemm_tol{f32 ? 1e-4 : 1e-12, f32 ? 1e-4 : 1e-12, d, f32 ? 1e-30 : 1e-290};
  expect_close(label + " backward grad_f", seed, dgf.host(), ref_gf, gemm_tol);
  expect_close(label + " backward grad_w", seed, dgw.host(), ref_gw, gemm_tol);
}

TEST(CudaFusedMargin, StepsAgainstCpuSteps) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(305);
  for (const MarginParams& p : all_margins()) {
    check_margin_steps<float>(p, 9, 777, 128, seed);
    check_margin_steps<double>(p, 10, 259, 96, seed);
  }
}

TEST(CudaFusedMargin, Tf32StaysClose) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(306);
  Rng rng(seed);
  const MarginParams p = margin_params(MarginType::ArcFace, MarginGrad::Exact, MarginLoss::Margin);
  const MarginInputs<float> in = margin_inputs<float>(32, 2000, 512, rng);
  const MarginRef ref = margin_reference(p, in, 1.0 / 32, 1.0);
  cuda::MarginShape shape;
  shape.B = 32, shape.C = 2000, shape.d = 512, shape.tf32 = true;
  DevBuf<float> f(in.f), w(in.w), grad_f(32 * 512), grad_w(2000 * 512);
  DevBuf<int64_t> labels(in.labels);
  DevBuf<char> ws((int64_t)cuda::margin_workspace_bytes(shape, sizeof(float)));
  DevBuf<double> tc(32), mean(1);
  cuda::margin_fused_forward<float>(p, shape, labels.ptr(), f.ptr(), w.ptr(), 1.0 / 32, ws.ptr(),
                                    {nullptr, nullptr, tc.ptr(), mean.ptr()});
  cuda::margin_fused_backward<float>(p, shape, labels.ptr(), f.ptr(), w.ptr(), 1.0 / 32, 1.0, ws.ptr(), grad_f.ptr(),
                                     grad_w.ptr());
  sync();
  // TF32 rounds each factor to 10 mantissa bits: cosines off by ~5e-5, gradients by ~0.5%; the bounds
  // only catch a wrong product (a transpose or stride is off by O(1)).
  expect_close("margin tf32 target_cos", seed, tc.host(), ref.target_cos, Tol{0, 0, 0, 1e-3});
  expect_close("margin tf32 loss_mean", seed, mean.host(), std::vector<double>{ref.loss_mean}, Tol{0, 1e-2});
  expect_rel_l2("margin tf32 grad_f", seed, grad_f.host(), ref.grad_f, 0.05);
  expect_rel_l2("margin tf32 grad_w", seed, grad_w.host(), ref.grad_w, 0.05);
  ws.expect_guards("margin tf32 workspace");
}

TEST(CudaFusedMargin, RejectsBadShapes) {
  SKIP_WITHOUT_CUDA();
  cuda::MarginShape s;
  s.B = 4, s.C = 1, s.d = 8;
  const MarginParams aace = margin_params(MarginType::ArcFace, MarginGrad::Exact, MarginLoss::Aace);
  EXPECT_THROW(cuda::margin_fused_forward<float>(aace, s, nullptr, nullptr, nullptr, 0.25, nullptr, {}), Error);
  s.C = 10, s.d = 0;
  EXPECT_THROW(cuda::margin_fused_forward<float>(aace, s, nullptr, nullptr, nullptr, 0.25, nullptr, {}), Error);
}

// ---------------------------------------------------------------------------------------------
// Multi-tensor lists: many tensors of odd sizes (1, around the 16K chunk, empty), some misaligned.

std::vector<int64_t> odd_sizes(Rng& rng) {
  std::vector<int64_t> n = {1, 3, 4, 5, 0, 16383, 16384, 16385, 100003, 7, 1, 64, 65537, 2, 0, 31};
  for (int i = 0; i < 150; ++i) n.push_back(1 + (int64_t)rng.below(3000));
  return n;
}

template <class T>
struct TensorSet {
  std::vector<std::unique_ptr<DevBuf<T> > > bufs;
  std::vector<T*> ptrs;
  std::vector<std::vector<T> > values;
  // offset of tensor k: 1 element for every third tensor (misaligned for 16-byte access).
  TensorSet(const std::vector<int64_t>& numel, Rng& rng, double lo, double hi) {
    for (size_t k = 0; k < numel.size(); ++k) {
      values.push_back(rand_vec<T>(numel[k], rng, lo, hi));
      bufs.push_back(std::make_unique<DevBuf<T> >(values.back(), k % 3 == 1 ? 1 : 0));
      ptrs.push_back(bufs.back()->ptr());
    }
  }
  std::vector<const T*> cptrs() const { return std::vector<const T*>(ptrs.begin(), ptrs.end()); }
  std::vector<std::vector<T> > host() const {
    std::vector<std::vector<T> > h;
    for (const auto& b : bufs) h.push_back(b->host());
    return h;
  }
  void expect_guards(const std::string& label) const {
    for (size_t k = 0; k < bufs.size(); ++k) bufs[k]->expect_guards(msg(label, " tensor ", k));
  }
};

template <class T>
std::vector<T*> host_ptrs(std::vector<std::vector<T> >& v) {
  std::vector<T*> p;
  for (auto& x : v) p.push_back(x.data());
  return p;
}
template <class T>
std::vector<const T*> host_cptrs(const std::vector<std::vector<T> >& v) {
  std::vector<const T*> p;
  for (auto& x : v) p.push_back(x.data());
  return p;
}
template <class T>
std::vector<T> flat(const std::vector<std::vector<T> >& v) {
  std::vector<T> r;
  for (const auto& x : v) r.insert(r.end(), x.begin(), x.end());
  return r;
}

template <class T>
void check_perturb(uint64_t seed) {
  Rng rng(seed);
  const std::vector<int64_t> numel = odd_sizes(rng);
  const int64_t count = (int64_t)numel.size();
  TensorSet<T> w(numel, rng, -2, 2), g(numel, rng, -1e-2, 1e-2), saved(numel, rng, 0, 1);
  auto hw = w.values;
  const auto hg = g.values;
  auto hsaved = saved.values;
  const std::string tn = type_name<T>();

  for (bool adaptive : {false, true}) {
    const double got =
        cuda::perturb_sq_norm<T>(count, g.cptrs().data(), adaptive ? w.cptrs().data() : nullptr, numel.data());
    const double want =
        cpu::perturb_sq_norm<T>(count, host_cptrs(hg).data(), adaptive ? host_cptrs(hw).data() : nullptr, numel.data());
    expect_close(msg("perturb_sq_norm ", tn, adaptive ? " adaptive" : " plain", " ", count, " tensors"), seed,
                 std::vector<double>{got}, std::vector<double>{want}, Tol{0, 1e-12});
    EXPECT_GT(want, 0);
    DevBuf<double> on_device(1);
    cuda::perturb_sq_norm_to<T>(count, g.cptrs().data(), adaptive ? w.cptrs().data() : nullptr, numel.data(),
                                on_device.ptr());
    sync();
    on_device.expect_guards("perturb_sq_norm_to");
    expect_bitwise(msg("perturb_sq_norm_to ", tn, adaptive ? " adaptive" : " plain", " equals perturb_sq_norm"), seed,
                   on_device.host(), std::vector<double>{got});
  }
  EXPECT_EQ(cuda::perturb_sq_norm<T>(0, nullptr, nullptr, nullptr), 0.0);

  for (bool adaptive : {false, true}) {
    const double scale = (adaptive ? -0.5 : 0.05) / std::sqrt(rng.uniform(0.5, 2.0));
    const auto original = w.host();
    cuda::perturb_apply<T>(count, w.ptrs.data(), saved.ptrs.data(), g.cptrs().data(), numel.data(), scale, adaptive);
    cpu::perturb_apply<T>(count, host_ptrs(hw).data(), host_ptrs(hsaved).data(), host_cptrs(hg).data(), numel.data(),
                          scale, adaptive);
    sync();
    const std::string label = msg("perturb_apply ", tn, adaptive ? " adaptive" : " plain");
    w.expect_guards(label + " param");
    saved.expect_guards(label + " saved");
    expect_bitwise(label + " param", seed, flat(w.host()), flat(hw));
    expect_bitwise(label + " saved", seed, flat(saved.host()), flat(original));
    expect_bitwise(label + " gradient untouched", seed, flat(g.host()), flat(hg));

    cuda::perturb_restore<T>(count, w.ptrs.data(), saved.cptrs().data(), numel.data());
    sync();
    w.expect_guards(msg("perturb_restore ", tn, " param"));
    expect_bitwise(msg("perturb_restore ", tn, " param equals the original"), seed, flat(w.host()), flat(original));
    hw = original;
  }
}

TEST(CudaFusedPerturb, ManyOddTensorsAgainstCpu) {
  SKIP_WITHOUT_CUDA();
  check_perturb<float>(test_seed(311));
  check_perturb<double>(test_seed(312));
}

TEST(CudaFusedPerturb, RejectsNullPointers) {
  SKIP_WITHOUT_CUDA();
  DevBuf<float> a(10);
  const int64_t numel[2] = {10, 5};
  const float* grads[2] = {a.ptr(), nullptr};
  EXPECT_THROW(cuda::perturb_sq_norm<float>(2, grads, nullptr, numel), Error);
  const int64_t empty[2] = {10, 0};  // an empty tensor may have no pointer
  EXPECT_NO_THROW(cuda::perturb_sq_norm<float>(2, grads, nullptr, empty));
}

// ---------------------------------------------------------------------------------------------
// SGD / AdamW fused with the restore: bit for bit the CPU twins.

template <class T>
void check_sgd(const cpu::SgdHyper& h, uint64_t seed) {
  Rng rng(seed);
  const std::vector<int64_t> numel = odd_sizes(rng);
  const int64_t count = (int64_t)numel.size();
  TensorSet<T> w(numel, rng, -1, 1), saved(numel, rng, -1, 1), g(numel, rng, -1, 1), mom(numel, rng, -0.1, 0.1);
  std::vector<uint8_t> first((size_t)count);
  for (auto& f : first) f = rng.below(3) == 0;
  std::vector<T*> sp = saved.ptrs;
  std::vector<std::vector<T> > hw = w.values, hsaved = saved.values, hmom = mom.values;
  std::vector<T*> hsp = host_ptrs(hsaved);
  for (int64_t k = 0; k < count; k += 5) sp[k] = nullptr, hsp[k] = nullptr;  // no saved copy: update in place
  std::vector<const T*> csp(sp.begin(), sp.end()), chsp(hsp.begin(), hsp.end());

  cuda::sgd_update<T>(count, w.ptrs.data(), csp.data(), g.cptrs().data(), mom.ptrs.data(), first.data(), numel.data(),
                      h);
  cpu::sgd_update<T>(count, host_ptrs(hw).data(), chsp.data(), host_cptrs(g.values).data(), host_ptrs(hmom).data(),
                     first.data(), numel.data(), h);
  sync();
  const std::string label = msg("sgd_update ", type_name<T>(), " lr ", h.lr, " momentum ", h.momentum, " dampening ",
                                h.dampening, " wd ", h.weight_decay, h.nesterov ? " nesterov" : "");
  w.expect_guards(label + " param");
  mom.expect_guards(label + " momentum");
  expect_bitwise(label + " param", seed, flat(w.host()), flat(hw));
  expect_bitwise(label + " momentum", seed, flat(mom.host()), h.momentum != 0 ? flat(hmom) : flat(mom.values));
  expect_bitwise(label + " saved untouched", seed, flat(saved.host()), flat(saved.values));
}

TEST(CudaFusedOptim, SgdBitwiseAgainstCpu) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(321);
  for (const cpu::SgdHyper& h : {cpu::SgdHyper{0.1, 0.9, 0, 5e-4, false}, cpu::SgdHyper{0.05, 0.9, 0, 5e-4, true},
                                 cpu::SgdHyper{0.3, 0.8, 0.1, 0, false}, cpu::SgdHyper{0.01, 0, 0, 1e-3, false},
                                 cpu::SgdHyper{0.02, 0, 0, 0, false}}) {
    check_sgd<float>(h, seed);
    check_sgd<double>(h, seed);
  }
}

template <class T>
void check_adamw(const cpu::AdamWHyper& h, uint64_t seed) {
  Rng rng(seed);
  const std::vector<int64_t> numel = odd_sizes(rng);
  const int64_t count = (int64_t)numel.size();
  TensorSet<T> w(numel, rng, -1, 1), saved(numel, rng, -1, 1), g(numel, rng, -1, 1), m(numel, rng, -0.1, 0.1),
      v(numel, rng, 0, 0.01);
  std::vector<int64_t> step((size_t)count);
  for (auto& s : step) s = 1 + (int64_t)rng.below(3) * (int64_t)rng.below(500);
  std::vector<T*> sp = saved.ptrs;
  std::vector<std::vector<T> > hw = w.values, hsaved = saved.values, hm = m.values, hv = v.values;
  std::vector<T*> hsp = host_ptrs(hsaved);
  for (int64_t k = 2; k < count; k += 7) sp[k] = nullptr, hsp[k] = nullptr;
  std::vector<const T*> csp(sp.begin(), sp.end()), chsp(hsp.begin(), hsp.end());

  cuda::adamw_update<T>(count, w.ptrs.data(), csp.data(), g.cptrs().data(), m.ptrs.data(), v.ptrs.data(), step.data(),
                        numel.data(), h);
  cpu::adamw_update<T>(count, host_ptrs(hw).data(), chsp.data(), host_cptrs(g.values).data(), host_ptrs(hm).data(),
                       host_ptrs(hv).data(), step.data(), numel.data(), h);
  sync();
  const std::string label =
      msg("adamw_update ", type_name<T>(), " lr ", h.lr, " betas ", h.beta1, "/", h.beta2, " wd ", h.weight_decay);
  w.expect_guards(label + " param");
  m.expect_guards(label + " exp_avg");
  v.expect_guards(label + " exp_avg_sq");
  expect_bitwise(label + " param", seed, flat(w.host()), flat(hw));
  expect_bitwise(label + " exp_avg", seed, flat(m.host()), flat(hm));
  expect_bitwise(label + " exp_avg_sq", seed, flat(v.host()), flat(hv));
}

TEST(CudaFusedOptim, AdamWBitwiseAgainstCpu) {
  SKIP_WITHOUT_CUDA();
  const uint64_t seed = test_seed(322);
  for (const cpu::AdamWHyper& h : {cpu::AdamWHyper{1e-3, 0.9, 0.999, 1e-8, 0.05},
                                   cpu::AdamWHyper{3e-4, 0.2, 0.99, 1e-6, 0}}) {  // beta1 0.2: lerp's other form
    check_adamw<float>(h, seed);
    check_adamw<double>(h, seed);
  }
}

}  // namespace
}  // namespace ff::test

#endif  // FLATFACE_HAVE_CUDA
