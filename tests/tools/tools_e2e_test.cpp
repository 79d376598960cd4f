// The tool binaries end to end on tiny data the test makes: synth, train, exact resume, eval,
// embed, pack, sharpness, and their errors for bad input.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/npy.h"
#include "data/recordio.h"
#include "engine/device_hooks.h"
#include "engine/safetensors.h"

namespace fs = std::filesystem;

namespace {

const std::string kBin = std::string(FLATFACE_BINARY_DIR) + "/bin/";

struct ToolRun {
  int code;
  std::string output;
};

// Runs a tool with stdout and stderr captured.
ToolRun run(const std::string& args) {
  std::string cmd = kBin + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  int status = p ? pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// One tiny synthetic benchmark shared by the tests of this file.
class ToolsE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("flatface_e2e_" + std::to_string(getpid()));
    fs::remove_all(root_);
    ToolRun r = run("flatface-synth -o " + data() + " -n 24 -k 6 --size 32 --folds 10 --pairs-per-fold 2 --family-size 2 "
                "--open-identities 40 --seed 3 --threads 2");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static std::string data() { return (root_ / "data").string(); }
  static std::string dir(const std::string& name) { return (root_ / name).string(); }
  static std::string train_args(const std::string& out) {
    return "flatface-train --quiet model.backbone=r18 model.width=0.125 model.embedding_size=16 data.input_size=32 "
           "head.s=16 train.batch_size=8 train.steps=6 optim.warmup_steps=1 train.threads=2 data.workers=2 "
           "data.train=" + data() + "/train.rec data.val=" + data() + "/open_set.bin train.output=" + out;
  }
  static fs::path root_;
};
fs::path ToolsE2E::root_;

std::map<std::string, ff::Tensor> weights(const std::string& path) { return ff::load_safetensors(path); }

void expect_bitwise_equal(const std::map<std::string, ff::Tensor>& a, const std::map<std::string, ff::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (auto& [name, t] : a) {
    auto it = b.find(name);
    ASSERT_NE(it, b.end()) << name;
    ASSERT_EQ(t.nbytes(), it->second.nbytes()) << name;
    EXPECT_EQ(std::memcmp(t.raw(), it->second.raw(), t.nbytes()), 0) << "tensor " << name << " differs";
  }
}

std::vector<double> losses(const std::string& run_dir) {
  std::vector<double> l;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "train") l.push_back(j["loss"].get<double>());
  }
  return l;
}

TEST_F(ToolsE2E, SynthWritesReadableFiles) {
  ff::data::RecordDataset ds(data() + "/train.rec", data() + "/train.idx");
  EXPECT_EQ(ds.size(), 144u);
  EXPECT_EQ(ds.num_classes(), 24);
  EXPECT_TRUE(ds.face_layout());
  for (const char* f : {"open_set.bin", "open_set_hard.bin", "train_ids.bin", "train_ids_hard.bin", "preview.png"})
    EXPECT_TRUE(fs::exists(data() + "/" + f)) << f;
}

TEST_F(ToolsE2E, ResumeContinuesExactly) {
  std::string straight = dir("straight"), split = dir("split");
  ToolRun a = run(train_args(straight) + " train.log_every=1 --save " + straight + "/final.safetensors");
  ASSERT_EQ(a.code, 0) << a.output;
  ToolRun b1 = run(train_args(split) + " train.log_every=1 --stop-at 3");
  ASSERT_EQ(b1.code, 0) << b1.output;
  ASSERT_EQ(ff::load_safetensors(split + "/checkpoints/step-00000003/model.safetensors").size(),
            weights(straight + "/final.safetensors").size());
  ToolRun b2 = run(train_args(split) + " train.log_every=1 --resume --save " + split + "/final.safetensors");
  ASSERT_EQ(b2.code, 0) << b2.output;
  expect_bitwise_equal(weights(straight + "/final.safetensors"), weights(split + "/final.safetensors"));
  expect_bitwise_equal(weights(straight + "/checkpoints/step-00000006/state.safetensors"),
                       weights(split + "/checkpoints/step-00000006/state.safetensors"));
  std::vector<double> la = losses(straight), lb = losses(split);
  ASSERT_EQ(la.size(), 6u);
  EXPECT_EQ(la, lb);  // the resumed log reads as one run with the same losses
  EXPECT_TRUE(fs::exists(straight + "/loss.svg"));
  EXPECT_TRUE(fs::exists(straight + "/config.toml"));
}

TEST_F(ToolsE2E, CorruptCheckpointIsRefusedWhileThePreviousOneLoads) {
  std::string out = dir("corrupt");
  ToolRun r = run(train_args(out) + " train.save_every=2 train.keep=5");
  ASSERT_EQ(r.code, 0) << r.output;
  std::string last = out + "/checkpoints/step-00000006/model.safetensors";
  fs::resize_file(last, fs::file_size(last) / 2);
  ToolRun bad = run("flatface-eval -m " + out + "/checkpoints/step-00000006 -b " + data() + "/open_set.bin");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.output.find("step-00000006"), std::string::npos) << bad.output;
  ToolRun resume = run(train_args(out) + " --resume");
  EXPECT_NE(resume.code, 0);
  EXPECT_NE(resume.output.find("step-00000004"), std::string::npos) << "should point at the previous checkpoint: "
                                                                    << resume.output;
  ToolRun good = run("flatface-eval -m " + out + "/checkpoints/step-00000004 -b " + data() + "/open_set.bin");
  EXPECT_EQ(good.code, 0) << good.output;
}

TEST_F(ToolsE2E, EvalEmbedSharpnessAndPack) {
  std::string out = dir("tools");
  ASSERT_EQ(run(train_args(out) + " method.name=sgd --save " + out + "/m.safetensors").code, 0);
  ToolRun e = run("flatface-eval -m " + out + "/m.safetensors -b " + data() + "/open_set.bin -b " + data() +
              "/train_ids.bin --json " + out + "/eval.json --roc " + out + "/roc.svg");
  ASSERT_EQ(e.code, 0) << e.output;
  std::ifstream in(out + "/eval.json");
  auto j = nlohmann::json::parse(in);
  ASSERT_EQ(j.size(), 2u);
  for (auto& row : j) {
    double acc = row["accuracy"].get<double>();
    EXPECT_GE(acc, 0.0);
    EXPECT_LE(acc, 1.0);
    EXPECT_EQ(row["fold_accuracy"].size(), 10u);
  }
  EXPECT_TRUE(fs::exists(out + "/roc.svg"));

  ToolRun em = run("flatface-embed -m " + out + "/m.safetensors -i " + data() + "/train.rec -o " + out + "/emb.npy");
  ASSERT_EQ(em.code, 0) << em.output;
  ff::data::NpyMatrix m = ff::data::read_npy(out + "/emb.npy");
  EXPECT_EQ(m.rows, 144);
  EXPECT_EQ(m.cols, 16);

  ToolRun s = run("flatface-sharpness -m " + out + "/m.safetensors -d " + data() +
              "/train.rec --batches 1 --batch-size 8 --directions 2 --json " + out + "/sharp.json");
  ASSERT_EQ(s.code, 0) << s.output;
  std::ifstream sin(out + "/sharp.json");
  auto sj = nlohmann::json::parse(sin);
  EXPECT_TRUE(std::isfinite(sj["worst_rise"].get<double>()));
  // One ascent step along the gradient raises the loss at least as much as random directions do.
  EXPECT_GT(sj["worst_rise"].get<double>(), sj["random_rise"].get<double>());

  // pack: an image folder -> RecordIO readable by the reader.
  fs::create_directories(out + "/folder/alice");
  fs::create_directories(out + "/folder/bob");
  fs::copy_file(data() + "/preview.png", out + "/folder/alice/1.png");
  fs::copy_file(data() + "/preview.png", out + "/folder/bob/1.png");
  fs::copy_file(data() + "/preview.png", out + "/folder/bob/2.png");
  ToolRun p = run("flatface-pack rec " + out + "/folder -o " + out + "/packed/train.rec");
  ASSERT_EQ(p.code, 0) << p.output;
  ff::data::RecordDataset packed(out + "/packed/train.rec", out + "/packed/train.idx");
  EXPECT_EQ(packed.size(), 3u);
  EXPECT_EQ(packed.num_classes(), 2);
  std::ofstream(out + "/folder/pairs.txt") << "alice/1.png bob/1.png 0\nbob/1.png bob/2.png 1\n";
  ToolRun pb = run("flatface-pack bin " + out + "/folder/pairs.txt -o " + out + "/pairs.bin");
  ASSERT_EQ(pb.code, 0) << pb.output;
  EXPECT_NE(pb.output.find("2 pairs"), std::string::npos) << pb.output;
}

TEST_F(ToolsE2E, BadInputGetsOneClearError) {
  auto expect_error = [](const std::string& args, const std::string& needle) {
    ToolRun r = run(args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
  };
  expect_error(train_args(dir("bad")) + " method.rhoo=0.1", "method.rhoo");
  expect_error(train_args(dir("bad")) + " method.name=adam", "adam");
  expect_error(train_args(dir("bad")) + " data.train=/nonexistent/train.rec", "/nonexistent/train.rec");
  expect_error(train_args(dir("bad")) + " train.batch_size=1000", "train.batch_size");
  expect_error(train_args(dir("bad")) + " train.device=tpu", "train.device 'tpu'");
  if (!ff::cuda_available()) expect_error(train_args(dir("bad")) + " train.device=cuda", "train.device = cuda");
  expect_error("flatface-eval -m /nonexistent.safetensors -b " + data() + "/open_set.bin", "nonexistent");
  expect_error("flatface-eval -m x -b " + data() + "/train.idx", "");  // not a pickle: refused
}

}  // namespace
