// The face-verification protocol (LFW-style 10-fold accuracy, TAR@FAR) and ROC TAR at fixed FARs, as pure functions.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace ff::data {

// Distances of the N pairs of 2N images (rows 2k and 2k+1, file order): each row's embedding is
// embeddings + flipped ("accuracy-flip"; pass an empty `flipped` for none), L2-normalised (a zero
// vector stays zero, as sklearn's normalize), and the distance is the squared Euclidean one (= 2 − 2·cos).
// Computed in double.
std::vector<double> pair_distances(std::span<const float> embeddings, std::span<const float> flipped, size_t rows,
                                   size_t dim);

struct VerificationOptions {
  int folds = 10;
  double far_target = 1e-3;
};

struct VerificationResult {
  // Accuracy: per fold, the threshold in {i·0.01 : i = 0 … 399} with the highest accuracy on the
  // other folds (first one on ties), and the accuracy it gives on the fold.
  std::vector<double> fold_accuracy, fold_threshold;
  double accuracy_mean = 0, accuracy_std = 0, threshold_mean = 0;
  // TAR (VAL) at far_target: per fold, the threshold found on the other folds, and TAR/FAR on the fold.
  std::vector<double> fold_tar, fold_far, fold_tar_threshold;
  double tar_mean = 0, tar_std = 0, far_mean = 0;
};

// The protocol papers report (insightface's verification.py evaluate(), reproduced exactly):
// - A pair is predicted "same" when distance < threshold (strict).
// - Folds: the pairs in file order cut into `folds` contiguous blocks, the first N mod folds blocks
//   one pair longer (sklearn KFold(n_splits=folds, shuffle=False)); each block is the test fold once,
//   the rest its training set.
// - Accuracy = (true accepts + true rejects) / pairs. Grid thresholds are i·0.01 in double, i = 0 … 399.
// - TAR@FAR: on the training set, FAR(t) = false accepts / different pairs for t on the finer grid
//   i·0.001, i = 0 … 3999. If max FAR ≥ far_target, the threshold is scipy interp1d(FAR, t,
//   kind='slinear')(far_target): with j the last grid index whose FAR ≤ far_target, linear
//   interpolation between grid points j and j+1 (if j is the last index, so far_target equals the
//   largest FAR, the first grid threshold reaching that FAR); otherwise the threshold is 0. On the
//   test fold TAR = true accepts / same pairs and FAR = false accepts / different pairs (0 where
//   a fold has no same, or no different, pairs — insightface divides by zero there).
// - Means and standard deviations over folds; std is the population one (numpy.std).
VerificationResult evaluate_verification(std::span<const double> distances, const std::vector<bool>& issame,
                                         const VerificationOptions& options = {});

inline constexpr double kDefaultFarTargetsArray[] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1};
inline constexpr std::span<const double> kDefaultFarTargets{kDefaultFarTargetsArray};

struct RocPoint {
  double far_target = 0;
  double tar = 0;        // true accepts / same pairs at the chosen threshold
  double far = 0;        // false accepts / different pairs actually reached (≤ far_target)
  double threshold = 0;  // accept when distance < threshold (+infinity: everything is accepted)
};

// TAR at fixed FARs from all pairs at once (IJB-B/C style, for large sets). For each target f,
// with n different pairs and k = floor(f·n) false accepts allowed, the threshold is the (k+1)-th
// smallest different-pair distance, so the operating point is the most accepting one whose FAR does
// not exceed f (ties there can only lower the FAR). Note insightface's IJB script instead takes the
// ROC point whose FAR is closest to f, which may exceed it.
std::vector<RocPoint> tar_at_far(std::span<const double> distances, const std::vector<bool>& issame,
                                 std::span<const double> far_targets = kDefaultFarTargets);

}  // namespace ff::data
