// Synthetic faces: determinism, identity structure (same < different, family < random), pair lists.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>

#include "data/synth/dataset.h"
#include "data/synth/faces.h"
#include "data/synth/pairs.h"
#include "engine/error.h"
#include "engine/rng.h"

namespace ff::data::synth {
namespace {

uint64_t seed_for(const char* test, uint64_t fallback) {
  const char* env = std::getenv("FLATFACE_TEST_SEED");
  const uint64_t s = env ? std::strtoull(env, nullptr, 10) : fallback;
  std::printf("[%s] seed %llu (FLATFACE_TEST_SEED overrides)\n", test, (unsigned long long)s);
  return s;
}

// Mean absolute difference over the central crop, where the face is (the backdrop is random
// per image and would drown the comparison).
double centre_distance(const Image& a, const Image& b) {
  const int lo = a.height / 4, hi = a.height * 3 / 4;
  double sum = 0;
  int n = 0;
  for (int y = lo; y < hi; ++y)
    for (int x = lo; x < hi; ++x)
      for (int c = 0; c < 3; ++c, ++n) sum += std::abs(a.at(y, x)[c] - b.at(y, x)[c]);
  return sum / n;
}

TEST(Synth, SameInputsGiveTheSameImage) {
  SynthConfig cfg;
  cfg.seed = seed_for("SameInputsGiveTheSameImage", 11);
  const SynthFaces a(cfg), b(cfg);
  const Nuisance n = Nuisance::level(0.7);
  const Image x = a.render(5, 3, n), y = b.render(5, 3, n);
  ASSERT_EQ(x.height, 112);
  ASSERT_EQ(x.width, 112);
  ASSERT_EQ(x.channels, 3);
  EXPECT_EQ(x.pixels, y.pixels);
  EXPECT_EQ(a.render(b.identity(5), 3, n).pixels, x.pixels);
  // Anything else changes the image.
  EXPECT_NE(a.render(5, 4, n).pixels, x.pixels);
  EXPECT_NE(a.render(6, 3, n).pixels, x.pixels);
  cfg.seed += 1;
  EXPECT_NE(SynthFaces(cfg).render(5, 3, n).pixels, x.pixels);
}

TEST(Synth, ThreadCountDoesNotChangeImages) {
  SynthConfig cfg;
  cfg.seed = seed_for("ThreadCountDoesNotChangeImages", 12);
  const SynthFaces faces(cfg);
  const int count = 12;
  auto render_all = [&](int threads) {
    std::vector<Image> out(count);
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (int i = 0; i < count; ++i) out[i] = faces.render(i % 4, i, faces.training_nuisance());
    return out;
  };
  const auto one = render_all(1), three = render_all(3);
  for (int i = 0; i < count; ++i) EXPECT_EQ(one[i].pixels, three[i].pixels) << "image " << i;
  // And from plain threads through the Dataset interface, in reverse order.
  const SynthDataset ds(faces, 4, 3);
  std::vector<Image> threaded(count);
  std::vector<std::thread> pool;
  for (int t = 0; t < 3; ++t)
    pool.emplace_back([&, t] {
      for (int i = count - 1 - t; i >= 0; i -= 3) threaded[i] = ds.get(i).image;
    });
  for (auto& t : pool) t.join();
  for (int i = 0; i < count; ++i) EXPECT_EQ(threaded[i].pixels, faces.render(i / 3, i % 3, faces.training_nuisance()).pixels);
}

TEST(Synth, IdentitiesDifferMoreThanImagesOfOneIdentity) {
  SynthConfig cfg;
  cfg.seed = seed_for("IdentitiesDifferMoreThanImagesOfOneIdentity", 13);
  cfg.family_size = 1;  // unrelated identities
  const SynthFaces faces(cfg);
  const Nuisance calm = Nuisance::level(0);
  double same = 0, different = 0;
  const int ids = 8;
  for (int i = 0; i < ids; ++i) {
    same += centre_distance(faces.render(i, 0, calm), faces.render(i, 1, calm));
    different += centre_distance(faces.render(i, 2, calm), faces.render((i + 1) % ids, 2, calm));
  }
  same /= ids;
  different /= ids;
  std::printf("centre distance at nuisance 0: same identity %.2f, different %.2f\n", same, different);
  EXPECT_LT(same * 2, different);
  // Stronger nuisance spreads the images of one identity.
  double spread = 0;
  for (int i = 0; i < ids; ++i) spread += centre_distance(faces.render(i, 0, Nuisance::level(1)), faces.render(i, 1, Nuisance::level(1)));
  EXPECT_GT(spread / ids, same * 1.5);
}

TEST(Synth, FamilyMembersAreCloserThanRandomIdentities) {
  SynthConfig cfg;
  cfg.seed = seed_for("FamilyMembersAreCloserThanRandomIdentities", 14);
  cfg.family_size = 4;
  const SynthFaces faces(cfg);
  Rng rng(cfg.seed);
  double kin = 0, strangers = 0;
  const int trials = 200;
  for (int t = 0; t < trials; ++t) {
    const int64_t fam = (int64_t)rng.below(500), a = fam * 4 + (int64_t)rng.below(4), b = fam * 4 + (a % 4 + 1 + rng.below(3)) % 4;
    ASSERT_NE(a, b);
    ASSERT_EQ(faces.family_of(a), faces.family_of(b));
    kin += trait_distance(faces.identity(a), faces.identity(b));
    const int64_t c = (int64_t)rng.below(2000), d = (c + 4 + (int64_t)rng.below(1990)) % 2000;
    strangers += trait_distance(faces.identity(c), faces.identity(d));
  }
  std::printf("trait distance: family %.3f, random %.3f\n", kin / trials, strangers / trials);
  EXPECT_LT(kin * 1.5, strangers);
  // Harder populations make closer twins.
  SynthConfig easy = cfg, hard = cfg;
  easy.difficulty = 0;
  hard.difficulty = 1;
  double d_easy = 0, d_hard = 0;
  for (int64_t f = 0; f < 100; ++f) {
    d_easy += trait_distance(SynthFaces(easy).identity(4 * f), SynthFaces(easy).identity(4 * f + 1));
    d_hard += trait_distance(SynthFaces(hard).identity(4 * f), SynthFaces(hard).identity(4 * f + 1));
  }
  EXPECT_LT(d_hard, d_easy);
  // The images agree: twins' calm renders are closer than strangers'.
  const Nuisance calm = Nuisance::level(0);
  double img_kin = 0, img_strangers = 0;
  for (int64_t f = 0; f < 8; ++f) {
    img_kin += centre_distance(faces.render(4 * f, 0, calm), faces.render(4 * f + 1, 0, calm));
    img_strangers += centre_distance(faces.render(4 * f, 0, calm), faces.render(4 * ((f + 3) % 8) + 2, 0, calm));
  }
  std::printf("centre distance at nuisance 0: family %.2f, random %.2f\n", img_kin / 8, img_strangers / 8);
  EXPECT_LT(img_kin, img_strangers);
}

TEST(Synth, DatasetLabelsAndSizes) {
  SynthConfig cfg;
  cfg.seed = seed_for("DatasetLabelsAndSizes", 15);
  cfg.image_size = 64;
  const SynthDataset ds(SynthFaces(cfg), 7, 5, 100);
  EXPECT_EQ(ds.size(), 35u);
  EXPECT_EQ(ds.num_classes(), 7);
  const Sample s = ds.get(13);
  EXPECT_EQ(s.label, 2);
  EXPECT_EQ(ds.label(13), 2);
  EXPECT_EQ(s.image.height, 64);
  EXPECT_EQ(s.image.width, 64);
  EXPECT_EQ(s.image.pixels, ds.faces().render(102, 3, ds.faces().training_nuisance()).pixels);
  EXPECT_NE(ds.describe(13).find("identity 102 sample 3"), std::string::npos) << ds.describe(13);
  EXPECT_THROW(ds.get(35), Error);
  EXPECT_THROW(SynthFaces(SynthConfig{112, 1.5, 0, 4}), Error);
  EXPECT_THROW(SynthFaces(SynthConfig{112, 0.5, 0, 0}), Error);
  const Image sheet = preview_grid(ds.faces(), 0, 3, 4, Nuisance::level(0.5));
  EXPECT_EQ(sheet.height, 3 * 66 + 2);
  EXPECT_EQ(sheet.width, 4 * 66 + 2);
}

// Which fold each identity appears in must be unique (LFW's folds are identity-disjoint).
void expect_layout(const std::vector<Pair>& pairs, const PairConfig& cfg) {
  ASSERT_EQ(pairs.size(), (size_t)cfg.folds * (cfg.positives + cfg.negatives));
  std::map<int64_t, int> fold_of;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const Pair& p = pairs[i];
    const int fold = (int)(i / (cfg.positives + cfg.negatives));
    const bool positive = (int)(i % (cfg.positives + cfg.negatives)) < cfg.positives;
    ASSERT_EQ(p.same, positive) << "pair " << i;
    if (p.same) {
      EXPECT_EQ(p.id_a, p.id_b);
      EXPECT_NE(p.sample_a, p.sample_b);
    } else {
      EXPECT_NE(p.id_a, p.id_b);
    }
    for (int64_t id : {p.id_a, p.id_b}) {
      auto [it, fresh] = fold_of.emplace(id, fold);
      EXPECT_EQ(it->second, fold) << "identity " << id << " in folds " << it->second << " and " << fold;
    }
  }
}

TEST(SynthPairs, OpenSetUsesOnlyHeldOutIdentities) {
  SynthConfig cfg;
  cfg.seed = seed_for("OpenSetUsesOnlyHeldOutIdentities", 16);
  const SynthFaces faces(cfg);
  const int64_t train_ids = 400, test_ids = 200;
  PairConfig pc;
  pc.seed = cfg.seed;
  const auto pairs = open_set_pairs(faces, train_ids, test_ids, pc);
  expect_layout(pairs, pc);
  std::set<int64_t> used;
  for (const Pair& p : pairs) {
    for (int64_t id : {p.id_a, p.id_b}) {
      EXPECT_GE(id, train_ids);
      EXPECT_LT(id, train_ids + test_ids);
      used.insert(id);
    }
    EXPECT_DOUBLE_EQ(p.nuisance, pc.nuisance);
  }
  EXPECT_GT(used.size(), (size_t)test_ids * 3 / 4);  // spread over the held-out identities
  // Smaller layouts are honoured too.
  PairConfig small = pc;
  small.folds = 3;
  small.positives = 7;
  small.negatives = 5;
  expect_layout(open_set_pairs(faces, train_ids, 30, small), small);
  EXPECT_THROW(open_set_pairs(faces, train_ids, 15, pc), Error);  // 10 folds need 2 identities each
}

TEST(SynthPairs, SeenIdentityPairsUseOnlyUnseenSamples) {
  SynthConfig cfg;
  cfg.seed = seed_for("SeenIdentityPairsUseOnlyUnseenSamples", 17);
  const SynthFaces faces(cfg);
  const int64_t train_ids = 300, train_samples = 20;
  PairConfig pc;
  pc.seed = cfg.seed;
  pc.positives = 50;
  pc.negatives = 40;
  const auto pairs = seen_identity_pairs(faces, train_ids, train_samples, pc);
  expect_layout(pairs, pc);
  for (const Pair& p : pairs) {
    EXPECT_LT(std::max(p.id_a, p.id_b), train_ids);
    EXPECT_GE(std::min(p.sample_a, p.sample_b), train_samples);
  }
}

TEST(SynthPairs, HardNegativesAreNearestFamilyMembers) {
  SynthConfig cfg;
  cfg.seed = seed_for("HardNegativesAreNearestFamilyMembers", 18);
  cfg.family_size = 4;
  const SynthFaces faces(cfg);
  PairConfig pc;
  pc.seed = cfg.seed;
  pc.positives = 30;
  pc.negatives = 30;
  const int64_t first = 1000, count = 240;
  const auto pairs = hard_pairs(faces, first, count, pc);
  expect_layout(pairs, pc);
  for (const Pair& p : pairs) {
    EXPECT_DOUBLE_EQ(p.nuisance, pc.nuisance + pc.hard_extra);
    if (p.same) continue;
    ASSERT_EQ(faces.family_of(p.id_a), faces.family_of(p.id_b)) << p.id_a << " vs " << p.id_b;
    const Identity a = faces.identity(p.id_a);
    const double chosen = trait_distance(a, faces.identity(p.id_b));
    for (int64_t k = faces.family_of(p.id_a) * 4; k < faces.family_of(p.id_a) * 4 + 4; ++k)
      if (k != p.id_a) {
        EXPECT_LE(chosen, trait_distance(a, faces.identity(k)) + 1e-12);
      }
  }
  // Ordinary negatives are mostly strangers.
  int kin = 0;
  for (const Pair& p : open_set_pairs(faces, first, count, pc)) kin += !p.same && faces.family_of(p.id_a) == faces.family_of(p.id_b);
  EXPECT_LT(kin, pc.folds * pc.negatives / 4);
}

}  // namespace
}  // namespace ff::data::synth
