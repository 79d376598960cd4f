// Verification protocol: pair distances, 10-fold accuracy with a threshold grid, TAR@FAR, and ROC TAR at fixed FARs.
#include "data/verification.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/error.h"

namespace ff::data {
namespace {

constexpr int kAccGrid = 400;   // thresholds i * 0.01 (numpy.arange(0, 4, 0.01))
constexpr int kValGrid = 4000;  // thresholds i * 0.001 (numpy.arange(0, 4, 0.001))

// numpy.arange computes element i as start + i * step; with start 0 that is i * step, not i / (1/step).
double grid(int i, double step) { return i * step; }

// The first grid index whose threshold accepts d (d < i*step), or `count` when none does.
int first_accepting(double d, double step, int count) {
  int c = d < 0 ? 0 : (int)std::min<double>(count, std::floor(d / step));
  while (c > 0 && grid(c - 1, step) > d) --c;
  while (c < count && !(grid(c, step) > d)) ++c;
  return c;
}

struct Counts {
  std::vector<int64_t> tp, fp;  // accepted same / different pairs at each grid index
  int64_t pos = 0, neg = 0;
};

// Accept counts over a set of pairs for every grid threshold, by histogram and prefix sum.
Counts grid_counts(const std::vector<int>& first, const std::vector<bool>& issame, size_t begin, size_t end,
                   int count) {
  Counts c;
  c.tp.assign(count + 1, 0);
  c.fp.assign(count + 1, 0);
  for (size_t i = 0; i < first.size(); ++i) {
    if (i >= begin && i < end) continue;  // the held-out fold
    (issame[i] ? c.tp : c.fp)[first[i]]++;
    (issame[i] ? c.pos : c.neg)++;
  }
  for (int g = 1; g <= count; ++g) {
    c.tp[g] += c.tp[g - 1];
    c.fp[g] += c.fp[g - 1];
  }
  return c;
}

void mean_std(const std::vector<double>& x, double& mean, double& std_dev) {
  double s = 0;
  for (double v : x) s += v;
  mean = s / (double)x.size();
  double ss = 0;
  for (double v : x) ss += (v - mean) * (v - mean);
  std_dev = std::sqrt(ss / (double)x.size());
}

double ratio(int64_t num, int64_t den) { return den == 0 ? 0.0 : (double)num / (double)den; }

}  // namespace

std::vector<double> pair_distances(std::span<const float> emb, std::span<const float> flipped, size_t rows,
                                   size_t dim) {
  FF_CHECK(rows % 2 == 0, "pair_distances: ", rows, " embeddings do not make pairs");
  FF_CHECK(emb.size() == rows * dim, "pair_distances: ", emb.size(), " values for ", rows, "x", dim, " embeddings");
  FF_CHECK(flipped.empty() || flipped.size() == emb.size(), "pair_distances: flipped embeddings have ", flipped.size(),
           " values, expected ", emb.size());
  std::vector<double> normed(rows * dim);
  for (size_t r = 0; r < rows; ++r) {
    double* v = &normed[r * dim];
    double sq = 0;
    for (size_t j = 0; j < dim; ++j) {
      v[j] = (double)emb[r * dim + j] + (flipped.empty() ? 0.0 : (double)flipped[r * dim + j]);
      sq += v[j] * v[j];
    }
    double norm = std::sqrt(sq);
    if (norm > 0)
      for (size_t j = 0; j < dim; ++j) v[j] /= norm;
  }
  std::vector<double> dist(rows / 2);
  for (size_t k = 0; k < rows / 2; ++k) {
    double s = 0;
    for (size_t j = 0; j < dim; ++j) {
      double d = normed[2 * k * dim + j] - normed[(2 * k + 1) * dim + j];
      s += d * d;
    }
    dist[k] = s;
  }
  return dist;
}

VerificationResult evaluate_verification(std::span<const double> distances, const std::vector<bool>& issame,
                                         const VerificationOptions& options) {
  const size_t n = distances.size();
  const int folds = options.folds;
  FF_CHECK(issame.size() == n, "evaluate_verification: ", n, " distances but ", issame.size(), " issame flags");
  FF_CHECK(folds >= 2 && (size_t)folds <= n, "evaluate_verification: cannot make ", folds, " folds of ", n, " pairs");
  for (size_t i = 0; i < n; ++i)
    FF_CHECK(std::isfinite(distances[i]), "evaluate_verification: distance of pair ", i, " is ", distances[i]);

  std::vector<int> first_acc(n), first_val(n);
  for (size_t i = 0; i < n; ++i) {
    first_acc[i] = first_accepting(distances[i], 0.01, kAccGrid);
    first_val[i] = first_accepting(distances[i], 0.001, kValGrid);
  }

  VerificationResult r;
  size_t begin = 0;
  for (int f = 0; f < folds; ++f) {
    size_t end = begin + n / folds + ((size_t)f < n % folds ? 1 : 0);

    // Accuracy: best grid threshold on the training folds (first maximum), applied to this fold.
    Counts acc = grid_counts(first_acc, issame, begin, end, kAccGrid);
    int best = 0;
    int64_t best_correct = -1;
    for (int g = 0; g < kAccGrid; ++g) {
      int64_t correct = acc.tp[g] + (acc.neg - acc.fp[g]);
      if (correct > best_correct) best_correct = correct, best = g;
    }
    double t = grid(best, 0.01);
    int64_t correct = 0;
    for (size_t i = begin; i < end; ++i) correct += (distances[i] < t) == issame[i];
    r.fold_accuracy.push_back((double)correct / (double)(end - begin));
    r.fold_threshold.push_back(t);

    // TAR@FAR: interpolate the training FAR curve at the target, as scipy's interp1d 'slinear' does.
    Counts val = grid_counts(first_val, issame, begin, end, kValGrid);
    std::vector<double> far(kValGrid);
    for (int g = 0; g < kValGrid; ++g) far[g] = ratio(val.fp[g], val.neg);
    double target = options.far_target, vt = 0.0;
    if (*std::max_element(far.begin(), far.end()) >= target) {
      int j = kValGrid - 1;
      while (j > 0 && far[j] > target) --j;  // FAR is non-decreasing in the threshold
      if (j == kValGrid - 1) {
        int m = j;
        while (m > 0 && far[m - 1] == far[j]) --m;
        vt = grid(m, 0.001);
      } else {
        double t0 = grid(j, 0.001), t1 = grid(j + 1, 0.001);
        vt = t0 + (t1 - t0) * (target - far[j]) / (far[j + 1] - far[j]);
      }
    }
    int64_t ta = 0, fa = 0, ns = 0, nd = 0;
    for (size_t i = begin; i < end; ++i) {
      bool accept = distances[i] < vt;
      if (issame[i])
        ++ns, ta += accept;
      else
        ++nd, fa += accept;
    }
    r.fold_tar.push_back(ratio(ta, ns));
    r.fold_far.push_back(ratio(fa, nd));
    r.fold_tar_threshold.push_back(vt);
    begin = end;
  }
  double unused;
  mean_std(r.fold_accuracy, r.accuracy_mean, r.accuracy_std);
  mean_std(r.fold_threshold, r.threshold_mean, unused);
  mean_std(r.fold_tar, r.tar_mean, r.tar_std);
  mean_std(r.fold_far, r.far_mean, unused);
  return r;
}

std::vector<RocPoint> tar_at_far(std::span<const double> distances, const std::vector<bool>& issame,
                                 std::span<const double> far_targets) {
  FF_CHECK(issame.size() == distances.size(), "tar_at_far: ", distances.size(), " distances but ", issame.size(),
           " issame flags");
  std::vector<double> pos, neg;
  for (size_t i = 0; i < distances.size(); ++i) {
    FF_CHECK(!std::isnan(distances[i]), "tar_at_far: distance of pair ", i, " is NaN");
    (issame[i] ? pos : neg).push_back(distances[i]);
  }
  FF_CHECK(!pos.empty() && !neg.empty(), "tar_at_far: needs same and different pairs, got ", pos.size(), " and ",
           neg.size());
  std::sort(pos.begin(), pos.end());
  std::sort(neg.begin(), neg.end());
  std::vector<RocPoint> out;
  for (double f : far_targets) {
    FF_CHECK(f >= 0 && f <= 1, "tar_at_far: FAR target ", f, " is not in [0, 1]");
    // floor(f * n) with a little slack so that e.g. 1e-3 * 3000 counts as 3 despite rounding.
    size_t k = (size_t)std::floor(f * (double)neg.size() * (1 + 1e-12));
    double thr = k < neg.size() ? neg[k] : std::numeric_limits<double>::infinity();
    auto below = [thr](const std::vector<double>& v) {
      return (double)(std::lower_bound(v.begin(), v.end(), thr) - v.begin()) / (double)v.size();
    };
    out.push_back(RocPoint{f, below(pos), below(neg), thr});
  }
  return out;
}

}  // namespace ff::data
