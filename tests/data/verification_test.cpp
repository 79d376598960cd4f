// Verification protocol against numbers computed in numpy the insightface way (fixtures/verification.json).
#include "data/verification.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "data/file_io.h"
#include "test_util.h"

namespace ff::data {
namespace {
using test::expect_error;

const nlohmann::json& cases() {
  static const nlohmann::json j = [] {
    auto b = read_file_bytes(test::fixture("verification.json"));
    return nlohmann::json::parse(b.begin(), b.end())["cases"];
  }();
  return j;
}

void expect_all_near(const std::vector<double>& got, const nlohmann::json& want, const char* what) {
  auto w = want.get<std::vector<double>>();
  ASSERT_EQ(got.size(), w.size()) << what;
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(got[i], w[i], 1e-6) << what << "[" << i << "]";
}

TEST(Verification, MatchesNumpyReference) {
  ASSERT_EQ(cases().size(), 3u);
  for (const auto& c : cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto dist = c["distances"].get<std::vector<double>>();
    auto same = c["issame"].get<std::vector<bool>>();
    VerificationResult r = evaluate_verification(dist, same);
    const auto& e = c["expected"];
    expect_all_near(r.fold_accuracy, e["fold_accuracy"], "fold_accuracy");
    expect_all_near(r.fold_threshold, e["fold_threshold"], "fold_threshold");
    expect_all_near(r.fold_tar, e["fold_tar"], "fold_tar");
    expect_all_near(r.fold_far, e["fold_far"], "fold_far");
    expect_all_near(r.fold_tar_threshold, e["fold_tar_threshold"], "fold_tar_threshold");
    EXPECT_NEAR(r.accuracy_mean, e["accuracy_mean"].get<double>(), 1e-6);
    EXPECT_NEAR(r.accuracy_std, e["accuracy_std"].get<double>(), 1e-6);
    EXPECT_NEAR(r.threshold_mean, e["threshold_mean"].get<double>(), 1e-6);
    EXPECT_NEAR(r.tar_mean, e["tar_mean"].get<double>(), 1e-6);
    EXPECT_NEAR(r.tar_std, e["tar_std"].get<double>(), 1e-6);
    EXPECT_NEAR(r.far_mean, e["far_mean"].get<double>(), 1e-6);
    // The fixture must exercise the protocol, not sit at a trivial corner.
    EXPECT_GT(r.accuracy_mean, 0.6);
    EXPECT_LT(r.accuracy_mean, 1.0);
  }
}

TEST(Verification, RocTarAtFarMatchesBruteForce) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto dist = c["distances"].get<std::vector<double>>();
    auto same = c["issame"].get<std::vector<bool>>();
    std::vector<RocPoint> roc = tar_at_far(dist, same);
    ASSERT_EQ(roc.size(), c["roc"].size());
    for (size_t i = 0; i < roc.size(); ++i) {
      const auto& w = c["roc"][i];
      EXPECT_DOUBLE_EQ(roc[i].far_target, w["far_target"].get<double>());
      EXPECT_NEAR(roc[i].tar, w["tar"].get<double>(), 1e-6) << "FAR " << roc[i].far_target;
      EXPECT_NEAR(roc[i].far, w["far"].get<double>(), 1e-6) << "FAR " << roc[i].far_target;
      EXPECT_LE(roc[i].far, roc[i].far_target + 1e-12);
      double thr = w["threshold"].is_null() ? std::numeric_limits<double>::infinity() : w["threshold"].get<double>();
      EXPECT_EQ(roc[i].threshold, thr);
    }
  }
}

TEST(Verification, PairDistancesFromFlippedEmbeddings) {
  const auto& c = cases()[2];
  ASSERT_EQ(c["name"], "embeddings");
  auto emb = c["embeddings"].get<std::vector<float>>(), flip = c["flipped"].get<std::vector<float>>();
  size_t dim = c["dim"], rows = emb.size() / dim;
  auto d = pair_distances(emb, flip, rows, dim);
  expect_all_near(d, c["distances"], "distances");
  // Without the flip the distances change; scaling a row does not (it is normalised).
  auto plain = pair_distances(emb, {}, rows, dim);
  EXPECT_GT(std::abs(plain[0] - d[0]), 1e-4);
  for (size_t j = 0; j < dim; ++j) emb[j] *= 3.5f, flip[j] *= 3.5f;
  EXPECT_NEAR(pair_distances(emb, flip, rows, dim)[0], d[0], 1e-6);  // float32 scaling rounds
  expect_error([&] { pair_distances(emb, flip, rows + 1, dim); }, {"do not make pairs"});
  expect_error([&] { pair_distances(emb, std::vector<float>(3), rows, dim); }, {"flipped embeddings have 3 values"});
}

TEST(Verification, SeparableDistancesGiveFullAccuracy) {
  std::vector<double> d;
  std::vector<bool> same;
  for (int i = 0; i < 100; ++i) {
    same.push_back(i % 3 != 0);
    d.push_back(same.back() ? 0.25 : 1.5 + 0.001 * i);
  }
  VerificationResult r = evaluate_verification(d, same);
  EXPECT_EQ(r.accuracy_mean, 1.0);
  EXPECT_EQ(r.accuracy_std, 0.0);
  for (double t : r.fold_threshold) EXPECT_NEAR(t, 0.26, 1e-12);  // the first grid threshold above 0.25
  EXPECT_EQ(r.tar_mean, 1.0);
  EXPECT_EQ(r.tar_std, 0.0);
  // Each training set's FAR reaches 1e-3 just above its smallest different-pair distance.
  for (double t : r.fold_tar_threshold) EXPECT_TRUE(t > 1.5 && t < 1.513) << t;
}

TEST(Verification, BadArguments) {
  std::vector<double> d = {0.1, 0.2, 0.3};
  expect_error([&] { evaluate_verification(d, {true, false}); }, {"3 distances but 2 issame flags"});
  expect_error([&] { evaluate_verification(d, {true, false, true}); }, {"cannot make 10 folds of 3 pairs"});
  std::vector<double> nan(20, 0.5);
  nan[7] = std::nan("");
  expect_error([&] { evaluate_verification(nan, std::vector<bool>(20, true)); }, {"pair 7"});
  expect_error([&] { tar_at_far(d, {true, true, true}); }, {"needs same and different pairs"});
}

}  // namespace
}  // namespace ff::data
