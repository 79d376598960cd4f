// The tool binaries end to end on tiny data the test makes: synth, train, exact resume, eval,
// embed, pack, sharpness, and their errors for bad input.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "data/bin_pairs.h"
#include "data/npy.h"
#include "data/recordio.h"
#include "engine/device_hooks.h"
#include "engine/safetensors.h"
#include "tests/data/test_util.h"

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

// A tool run that must fail with one clear message: non-zero exit, every needle in its output, and
// never CLI11's raw numeric range ("1797693...").
void expect_error(const std::string& args, std::initializer_list<std::string> needles) {
  ToolRun r = run(args);
  EXPECT_NE(r.code, 0) << args;
  for (const std::string& n : needles) EXPECT_NE(r.output.find(n), std::string::npos) << args << "\n" << r.output;
  EXPECT_EQ(r.output.find("1797693"), std::string::npos) << r.output;
}

// One tiny synthetic benchmark shared by the tests of this file.
class ToolsE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("flatface_e2e_" + std::to_string(getpid()));
    fs::remove_all(root_);
    ToolRun r = run("flatface-synth -o " + data() +
                    " -n 24 -k 6 --size 32 --folds 10 --pairs-per-fold 2 --family-size 2 "
                    "--open-identities 40 --seed 3 --threads 2");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static std::string data() { return (root_ / "data").string(); }
  static std::string dir(const std::string& name) { return (root_ / name).string(); }
  static std::string train_args(const std::string& out) {
    return "flatface-train --quiet model.backbone=r18 model.width=0.125 model.embedding_size=16 data.input_size=32 "
           "head.s=16 train.batch_size=8 train.steps=6 optim.warmup_steps=1 train.threads=2 data.workers=2 "
           "data.train=" +
           data() + "/train.rec data.val=" + data() + "/open_set.bin train.output=" + out;
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

// The metrics.jsonl lines of a run with the given "type".
std::vector<nlohmann::json> metric_lines(const std::string& run_dir, const std::string& type) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == type) out.push_back(j);
  }
  return out;
}

std::vector<double> losses(const std::string& run_dir) {
  std::vector<double> l;
  for (auto& j : metric_lines(run_dir, "train")) l.push_back(j["loss"].get<double>());
  return l;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string fixture(const std::string& rel) { return std::string(FLATFACE_SOURCE_DIR) + "/tests/data/fixtures/" + rel; }

TEST_F(ToolsE2E, SynthWritesReadableFiles) {
  ff::data::RecordDataset ds(data() + "/train.rec", data() + "/train.idx");
  EXPECT_EQ(ds.size(), 144u);
  EXPECT_EQ(ds.num_classes(), 24);
  EXPECT_TRUE(ds.face_layout());
  for (const char* f : {"open_set.bin", "open_set_hard.bin", "train_ids.bin", "train_ids_hard.bin", "preview.png"})
    EXPECT_TRUE(fs::exists(data() + "/" + f)) << f;
}

// The synthetic set read by Python alone: the .bin files through pickle, train.rec/train.idx by a
// reader that follows the RecordIO layout of FORMATS.md (not our code).
TEST_F(ToolsE2E, SynthFilesReadInPython) {
  ASSERT_TRUE(fs::exists(ff::data::test::kPython)) << "/usr/bin/python3 is needed (tools/install-deps.sh)";
  const std::string script = R"PY(
import pickle, struct, sys
d = sys.argv[1]
for name in ["open_set", "open_set_hard", "train_ids", "train_ids_hard"]:
    bins, same = pickle.load(open(d + "/" + name + ".bin", "rb"))
    assert len(bins) == 2 * len(same) and len(same) > 0, name
    assert all(b[:2] == b"\xff\xd8" for b in bins), name + ": not JPEG"
    print(name, len(same), "pairs")
rec = open(d + "/train.rec", "rb").read()
def record(off):
    magic, lrec = struct.unpack_from("<II", rec, off)
    assert magic == 0xCED7230A and lrec >> 29 == 0, off
    return rec[off + 8: off + 8 + (lrec & ((1 << 29) - 1))]
def header(p):
    flag, label, _, _ = struct.unpack_from("<IfQQ", p, 0)
    labels = struct.unpack_from("<%df" % flag, p, 24) if flag else (label,)
    return labels, p[24 + 4 * flag:]
index = {int(k): int(v) for k, v in (line.split("	") for line in open(d + "/train.idx"))}
(a, b), _ = header(record(index[0]))
a, b = int(a), int(b)
labels = []
for key in range(1, a):
    lab, img = header(record(index[key]))
    assert img[:2] == b"\xff\xd8", key
    labels.append(int(lab[0]))
assert labels == sorted(labels)
for i, key in enumerate(range(a, b)):
    (lo, hi), _ = header(record(index[key]))
    assert all(labels[k - 1] == i for k in range(int(lo), int(hi))), key
print("images", a - 1, "identities", b - a)
)PY";
  std::ofstream(dir("read_synth.py")) << script;
  int status = -1;
  std::string out = ff::data::test::run_command(
      std::string(ff::data::test::kPython) + " " + dir("read_synth.py") + " " + data(), &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("images 144 identities 24"), std::string::npos) << out;
  EXPECT_NE(out.find("open_set 40 pairs"), std::string::npos) << out;
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
  EXPECT_NE(resume.output.find("step-00000004"), std::string::npos)
      << "should point at the previous checkpoint: " << resume.output;
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
  ff::data::BinPairs back = ff::data::read_bin_pairs(out + "/pairs.bin");
  ASSERT_EQ(back.pairs(), 2u);
  EXPECT_EQ(back.issame, (std::vector<bool>{false, true}));
  EXPECT_EQ(back.images[0], file_bytes(out + "/folder/alice/1.png"));
  EXPECT_EQ(back.images[3], file_bytes(out + "/folder/bob/2.png"));

  // embed: an image folder to safetensors, rows in sorted file order, the names beside it.
  ToolRun ef = run("flatface-embed -m " + out + "/m.safetensors -i " + out + "/folder -o " + out + "/emb.safetensors");
  ASSERT_EQ(ef.code, 0) << ef.output;
  auto embs = ff::load_safetensors(out + "/emb.safetensors");
  ASSERT_EQ(embs.count("embeddings"), 1u);
  EXPECT_EQ(embs.at("embeddings").shape(), (ff::Shape{3, 16}));
  std::ifstream names(out + "/emb.txt");
  std::string first;
  std::getline(names, first);
  EXPECT_NE(first.find("alice/1.png"), std::string::npos) << first;
}

// The training options the project's checks rely on: --steps, --init, --no-shuffle, --no-flip,
// and what a run leaves behind (evaluation lines, the accuracy plot, only the last K checkpoints).
TEST_F(ToolsE2E, TrainOptionsAndOutputs) {
  std::string a = dir("opts_a"), b = dir("opts_b");
  ToolRun r = run(train_args(a) +
                  " train.log_every=1 train.save_every=1 train.keep=2 train.eval_every=2 --steps 4 --no-shuffle --no-flip"
                  " --save " +
                  a + "/final.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(losses(a).size(), 4u) << "--steps 4 overrides train.steps";
  std::ifstream cfg(a + "/config.toml");
  std::string resolved((std::istreambuf_iterator<char>(cfg)), {});
  EXPECT_NE(resolved.find("shuffle = false"), std::string::npos) << resolved;
  EXPECT_NE(resolved.find("flip = false"), std::string::npos) << resolved;
  std::vector<std::string> ckpts;
  for (auto& e : fs::directory_iterator(a + "/checkpoints")) ckpts.push_back(e.path().filename().string());
  std::sort(ckpts.begin(), ckpts.end());
  EXPECT_EQ(ckpts, (std::vector<std::string>{"step-00000003", "step-00000004"})) << "train.keep=2";
  auto evals = metric_lines(a, "eval");
  ASSERT_EQ(evals.size(), 2u) << "eval at step 2 and at the end";
  EXPECT_EQ(evals[0]["step"], 2);
  EXPECT_EQ(evals[1]["set"], "open_set");
  EXPECT_TRUE(fs::exists(a + "/val_accuracy.svg"));

  // Without shuffling or flipping the data order is fixed, so the same seed gives the same run.
  ToolRun again = run(train_args(b) + " train.log_every=1 --steps 4 --no-shuffle --no-flip");
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_EQ(losses(a), losses(b));

  // --init starts from a checkpoint's weights: a run of 0 learning rate keeps them.
  std::string c = dir("opts_init");
  ToolRun init = run(train_args(c) + " optim.lr=0 optim.weight_decay=0 optim.warmup_steps=0 --steps 1 --init " + a +
                     "/final.safetensors --save " + c + "/final.safetensors");
  ASSERT_EQ(init.code, 0) << init.output;
  auto w0 = weights(a + "/final.safetensors"), w1 = weights(c + "/final.safetensors");
  for (const char* name : {"conv1.weight", "fc.weight", "head.weight"})
    EXPECT_EQ(std::memcmp(w0.at(name).raw(), w1.at(name).raw(), w0.at(name).nbytes()), 0) << name;
}

// SIGTERM in the middle of a run writes a checkpoint and exits 0; --resume finishes the run.
TEST_F(ToolsE2E, SigtermWritesACheckpointAndResumes) {
  std::string out = dir("sigterm");
  fs::create_directories(out);
  std::string cmd = "exec " + kBin + train_args(out) + " train.steps=400 train.log_every=1 > " + out + "/log.txt 2>&1";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
    _exit(127);
  }
  // Wait for the first logged step (the run is under way), then interrupt it.
  auto t0 = std::chrono::steady_clock::now();
  while (losses(out).empty() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_FALSE(losses(out).empty()) << "no step logged within 120 s";
  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::ifstream log(out + "/log.txt");
  std::string text((std::istreambuf_iterator<char>(log)), {});
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 0) << text;
  ASSERT_TRUE(fs::exists(out + "/checkpoints")) << text;
  ToolRun resume = run(train_args(out) + " train.steps=400 train.log_every=1 --resume --stop-at 1000");
  ASSERT_EQ(resume.code, 0) << resume.output;
  EXPECT_EQ(losses(out).size(), 400u) << "the resumed log reads as one run of 400 steps";
}

// A RecordIO set written by an independent Python writer (tests/data/fixtures) and verification
// pairs pickled by Python itself train and evaluate unchanged.
TEST_F(ToolsE2E, TrainsOnFilesWrittenByPythonTools) {
  ASSERT_TRUE(fs::exists(ff::data::test::kPython)) << ff::data::test::kPython << " is needed (tools/install-deps.sh installs it)";
  std::string out = dir("python");
  fs::create_directories(out);
  for (int protocol : {2, 4}) {
    std::string script =
        "import pickle, sys\n"
        "d = sys.argv[1]\n"
        "imgs = [open(d + '/' + n, 'rb').read() for n in ['rgb.jpg', 'rgb.png', 'grey.jpg', "
        "'palette.png', 'rgba.png', 'wide.jpg', 'grey.png']]\n"
        "bins, same = [], []\n"
        "for k in range(20):\n"
        "    bins += [imgs[k % 7], imgs[(k * 3 + 1) % 7]]\n"
        "    same.append(k % 2 == 0)\n"
        "pickle.dump((bins, same), open(sys.argv[2], 'wb'), protocol=" +
        std::to_string(protocol) + ")\n";
    std::ofstream(out + "/write_bin.py") << script;
    int status = -1;
    std::string bin = out + "/py_p" + std::to_string(protocol) + ".bin";
    std::string said = ff::data::test::run_command(
        std::string(ff::data::test::kPython) + " " + out + "/write_bin.py " + fixture("images") + " " + bin, &status);
    ASSERT_EQ(status, 0) << said;
  }
  ToolRun t =
      run("flatface-train --quiet model.backbone=r18 model.width=0.125 model.embedding_size=16 "
          "data.input_size=32 head.s=16 train.batch_size=2 train.steps=3 optim.warmup_steps=1 "
          "train.threads=2 data.workers=1 train.log_every=1 data.train=" +
          fixture("rec/face.rec") + " data.val=" + out + "/py_p2.bin," + out + "/py_p4.bin train.output=" + out +
          "/run --save " + out + "/m.safetensors");
  ASSERT_EQ(t.code, 0) << t.output;
  EXPECT_EQ(losses(out + "/run").size(), 3u);
  EXPECT_EQ(metric_lines(out + "/run", "eval").size(), 2u) << "both pickled pair files evaluated at the end";
  ToolRun e = run("flatface-eval -m " + out + "/m.safetensors -b " + out + "/py_p2.bin -b " + out +
                  "/py_p4.bin --json " + out + "/eval.json");
  ASSERT_EQ(e.code, 0) << e.output;
  std::ifstream in(out + "/eval.json");
  auto j = nlohmann::json::parse(in);
  ASSERT_EQ(j.size(), 2u);
  // The same images and pairs under both protocols: the same numbers.
  EXPECT_EQ(j[0]["fold_accuracy"], j[1]["fold_accuracy"]);
}

TEST_F(ToolsE2E, BadInputGetsOneClearError) {
  expect_error(train_args(dir("bad")) + " method.rhoo=0.1", {"method.rhoo"});
  expect_error(train_args(dir("bad")) + " method.name=adam", {"adam"});
  expect_error(train_args(dir("bad")) + " data.train=/nonexistent/train.rec", {"/nonexistent/train.rec"});
  expect_error(train_args(dir("bad")) + " train.batch_size=1000", {"train.batch_size"});
  expect_error(train_args(dir("bad")) + " train.device=tpu", {"train.device 'tpu'"});
  if (!ff::cuda_available()) expect_error(train_args(dir("bad")) + " train.device=cuda", {"train.device = cuda"});
  expect_error("flatface-eval -m /nonexistent.safetensors -b " + data() + "/open_set.bin", {"nonexistent"});
  expect_error(train_args(dir("bad")) + " optim.schedule=multistep optim.milestones=100,x",
               {"optim.milestones", "'x'"});
  expect_error(train_args(dir("bad")) + " optim.milestones=100abc", {"optim.milestones", "100abc"});
  expect_error(train_args(dir("bad")) + " --steps -5", {"--steps -5"});
  expect_error(train_args(dir("bad")) + " train.threads=-3", {"train.threads = -3"});
  expect_error(train_args(dir("bad")) + " method.rho=-0.1", {"method.rho"});
  expect_error(train_args(dir("bad")) + " optim.momentum=1.5", {"optim.momentum"});
  EXPECT_FALSE(fs::exists(dir("bad") + "/checkpoints"));
}

// Each bad input of the data formats, through the tools: one clear line naming the file and the
// fault, and a non-zero exit.
TEST_F(ToolsE2E, BadDataFilesGetOneClearErrorFromTheTools) {
  std::string out = dir("baddata");
  fs::create_directories(out);
  ASSERT_EQ(run(train_args(out + "/m") + " optim.warmup_steps=0 --steps 1 --save " + out + "/m.safetensors").code, 0);
  const std::string eval = "flatface-eval -m " + out + "/m.safetensors -b ";
  expect_error(eval + data() + "/train.idx", {"train.idx", "pickle"});
  expect_error(eval + fixture("bins/forbidden_global.bin"), {"forbidden_global.bin", "GLOBAL"});
  expect_error(eval + fixture("bins/odd.bin"), {"odd.bin", "odd number of images"});
  expect_error(eval + fixture("bins/mismatch.bin"), {"mismatch.bin", "pair count mismatch"});

  // RecordIO: truncated data file, bad magic, an index pointing past the end.
  auto copy_set = [&](const std::string& name) {
    fs::copy_file(data() + "/train.rec", out + "/" + name + ".rec");
    fs::copy_file(data() + "/train.idx", out + "/" + name + ".idx");
    return out + "/" + name + ".rec";
  };
  std::string truncated = copy_set("truncated");
  fs::resize_file(truncated, fs::file_size(truncated) - 100);
  expect_error(train_args(out + "/t1") + " data.train=" + truncated, {"truncated.rec"});
  std::string magic = copy_set("magic");
  {
    std::fstream f(magic, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f.write("XXXX", 4);
  }
  expect_error(train_args(out + "/t2") + " data.train=" + magic, {"magic.rec", "magic"});
  std::string past = copy_set("past");
  std::ofstream(out + "/past.idx", std::ios::app) << "999999\t99999999\n";
  expect_error(train_args(out + "/t3") + " data.train=" + past, {"past", "past the end"});

  // An undecodable image: an error naming its key by default; data.skip_undecodable=true skips it.
  std::vector<uint8_t> good = file_bytes(fixture("images/rgb.jpg")), broken = good;
  broken.resize(broken.size() / 3);  // a JPEG cut short
  {
    ff::data::RecordWriter w(out + "/broken.rec", out + "/broken.idx");
    for (int i = 0; i < 8; ++i) w.add(i == 5 ? broken : good, i / 4);
    w.close();
  }
  const std::string small = " train.batch_size=2 data.val= data.train=" + out + "/broken.rec";
  expect_error(train_args(out + "/t4") + small + " --no-shuffle", {"broken.rec", "6"});
  ToolRun skip = run(train_args(out + "/t5") + small + " --no-shuffle data.skip_undecodable=true");
  EXPECT_EQ(skip.code, 0) << skip.output;
  auto skipped = metric_lines(out + "/t5", "data");
  ASSERT_EQ(skipped.size(), 1u) << skip.output;
  EXPECT_EQ(skipped[0]["skipped_undecodable"].size(), 1u);

  // pack: an empty identity folder, a file that is no image.
  fs::create_directories(out + "/folder/alice");
  fs::create_directories(out + "/folder/bob");
  fs::copy_file(fixture("images/rgb.jpg"), out + "/folder/alice/1.jpg");
  expect_error("flatface-pack rec " + out + "/folder -o " + out + "/p.rec", {"bob"});
  std::ofstream(out + "/folder/bob/1.jpg") << "not an image";
  expect_error("flatface-pack rec " + out + "/folder -o " + out + "/p.rec", {"bob/1.jpg", "not a JPEG or PNG"});
}

// A small trained model for the tests below, trained once (again if the suite's folder was remade).
std::string shared_model(const std::string& train_args, const std::string& out) {
  if (!fs::exists(out + "/m.safetensors")) {
    ToolRun r = run(train_args + " method.name=sgd --save " + out + "/m.safetensors");
    EXPECT_EQ(r.code, 0) << r.output;
  }
  return out + "/m.safetensors";
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// A list's relative paths are found from the list's folder whatever the working directory,
// absolute ones as they are; the rows match the same images embedded from their folder.
TEST_F(ToolsE2E, EmbedListPathsAreRelativeToTheListFolder) {
  const std::string model = shared_model(train_args(dir("shared")), dir("shared"));
  const std::string list_dir = dir("embed_list");
  fs::create_directories(list_dir + "/imgs");
  fs::create_directories(dir("elsewhere"));
  fs::copy_file(fixture("images/rgb.jpg"), list_dir + "/imgs/a.jpg");
  fs::copy_file(fixture("images/palette.png"), list_dir + "/imgs/b.png");
  fs::copy_file(fixture("images/grey.jpg"), list_dir + "/imgs/c.jpg");
  const std::string abs_c = list_dir + "/imgs/c.jpg";
  std::ofstream(list_dir + "/list.txt") << "imgs/b.png\nimgs/a.jpg\n" << abs_c << "\n";
  // Run from another folder, with the list itself given by a relative path.
  int status = -1;
  std::string said =
      ff::data::test::run_command("cd " + dir("elsewhere") + " && " + kBin + "flatface-embed -m " + model +
                                      " -i ../embed_list/list.txt -o " + list_dir + "/from_list.npy 2>&1",
                                  &status);
  ASSERT_EQ(status, 0) << said;
  ToolRun folder = run("flatface-embed -m " + model + " -i " + list_dir + "/imgs -o " + list_dir + "/folder.npy");
  ASSERT_EQ(folder.code, 0) << folder.output;
  ff::data::NpyMatrix l = ff::data::read_npy(list_dir + "/from_list.npy"),
                      f = ff::data::read_npy(list_dir + "/folder.npy");
  ASSERT_EQ(l.rows, 3);
  ASSERT_EQ(f.rows, 3);
  auto row = [](const ff::data::NpyMatrix& m, int64_t r) {
    return std::vector<float>(m.values.begin() + r * m.cols, m.values.begin() + (r + 1) * m.cols);
  };
  // Folder rows are in sorted order a, b, c; the list's are b, a, c.
  EXPECT_EQ(row(l, 0), row(f, 1));
  EXPECT_EQ(row(l, 1), row(f, 0));
  EXPECT_EQ(row(l, 2), row(f, 2));
  EXPECT_NE(row(f, 0), row(f, 1));
  EXPECT_EQ(lines_of(list_dir + "/from_list.txt"), (std::vector<std::string>{"imgs/b.png", "imgs/a.jpg", abs_c}))
      << "names are the list's lines as written";
  ToolRun help = run("flatface-embed --help");
  EXPECT_NE(help.output.find("relative to the list's folder"), std::string::npos) << help.output;
  help = run("flatface-pack bin --help");
  EXPECT_NE(help.output.find("relative to the list's folder"), std::string::npos) << help.output;
}

// Embedding in chunks gives the rows embedding all at once gives, in order.
TEST_F(ToolsE2E, EmbedInChunksGivesTheSameRows) {
  const std::string model = shared_model(train_args(dir("shared")), dir("shared"));
  const std::string out = dir("embed_chunks");
  fs::create_directories(out);
  ToolRun whole = run("flatface-embed -m " + model + " -i " + data() + "/train.rec --batch 8 -o " + out + "/whole.npy");
  ASSERT_EQ(whole.code, 0) << whole.output;
  ToolRun chunked = run("flatface-embed -m " + model + " -i " + data() + "/train.rec --batch 8 --chunk 40 -o " + out +
                        "/chunked.npy");  // 144 images: chunks of 40, 40, 40 and 24
  ASSERT_EQ(chunked.code, 0) << chunked.output;
  ff::data::NpyMatrix a = ff::data::read_npy(out + "/whole.npy"), b = ff::data::read_npy(out + "/chunked.npy");
  ASSERT_EQ(a.rows, 144);
  EXPECT_EQ(b.rows, a.rows);
  EXPECT_EQ(b.cols, a.cols);
  EXPECT_EQ(b.values, a.values);
  EXPECT_EQ(lines_of(out + "/whole.txt"), lines_of(out + "/chunked.txt"));
}

// pack bin checks each listed image as pack rec does, naming the file and the list line.
TEST_F(ToolsE2E, PackBinRefusesFilesThatAreNoImages) {
  const std::string out = dir("pack_bad");
  fs::create_directories(out + "/imgs/sub");
  fs::copy_file(fixture("images/rgb.jpg"), out + "/imgs/a.jpg");
  std::ofstream(out + "/imgs/b.bmp") << "BM" << std::string(60, '\0');
  auto refused = [&](const std::string& second, const std::vector<std::string>& needles) {
    std::ofstream(out + "/pairs.txt") << "imgs/a.jpg imgs/a.jpg 1\nimgs/a.jpg " << second << " 0\n";
    ToolRun r = run("flatface-pack bin " + out + "/pairs.txt -o " + out + "/pairs.bin");
    EXPECT_NE(r.code, 0) << r.output;
    for (const std::string& n : needles) EXPECT_NE(r.output.find(n), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out + "/pairs.bin"));
  };
  refused("imgs/b.bmp", {"pairs.txt:2", "imgs/b.bmp", "not a JPEG or PNG file"});
  refused("imgs/sub", {"pairs.txt:2", "imgs/sub", "is not a regular file"});
  refused("imgs/missing.jpg", {"pairs.txt:2", "imgs/missing.jpg", "does not exist"});
}

// A .bin of only same (or only different) pairs: accuracy, with TAR and ROC n/a (null in JSON).
TEST_F(ToolsE2E, EvalOfOneSidedPairsReportsAccuracyOnly) {
  const std::string model = shared_model(train_args(dir("shared")), dir("shared"));
  const std::string out = dir("one_sided");
  fs::create_directories(out);
  ff::data::BinPairs all = ff::data::read_bin_pairs(data() + "/open_set.bin"), pos, neg;
  for (size_t k = 0; k < all.pairs(); ++k) {
    ff::data::BinPairs& to = all.issame[k] ? pos : neg;
    to.images.push_back(all.images[2 * k]);
    to.images.push_back(all.images[2 * k + 1]);
    to.issame.push_back(all.issame[k]);
  }
  ASSERT_GE(pos.pairs(), 10u);
  ASSERT_GE(neg.pairs(), 10u);
  ff::data::write_bin_pairs(out + "/pos.bin", pos);
  ff::data::write_bin_pairs(out + "/neg.bin", neg);
  ToolRun e = run("flatface-eval -m " + model + " -b " + out + "/pos.bin -b " + out + "/neg.bin -b " + data() +
                  "/open_set.bin --json " + out + "/eval.json --roc " + out + "/roc.svg");
  ASSERT_EQ(e.code, 0) << e.output;
  EXPECT_NE(e.output.find("warning: " + out + "/pos.bin: all " + std::to_string(pos.pairs()) + " pairs are same"),
            std::string::npos)
      << e.output;
  EXPECT_NE(e.output.find("warning: " + out + "/neg.bin: all " + std::to_string(neg.pairs()) + " pairs are different"),
            std::string::npos)
      << e.output;
  EXPECT_NE(e.output.find("n/a"), std::string::npos) << e.output;
  std::ifstream in(out + "/eval.json");
  auto j = nlohmann::json::parse(in);
  ASSERT_EQ(j.size(), 3u);
  for (int i : {0, 1}) {
    SCOPED_TRACE(j[i]["set"].get<std::string>());
    EXPECT_GE(j[i]["accuracy"].get<double>(), 0.0);
    EXPECT_LE(j[i]["accuracy"].get<double>(), 1.0);
    EXPECT_EQ(j[i]["fold_accuracy"].size(), 10u);
    EXPECT_TRUE(j[i]["tar_at_far_1e-3"].is_null());
    EXPECT_TRUE(j[i]["tar_std"].is_null());
    EXPECT_TRUE(j[i]["roc"].is_null());
  }
  EXPECT_TRUE(j[2]["tar_at_far_1e-3"].is_number()) << "a set with both kinds still gets its TAR";
  EXPECT_EQ(j[2]["roc"].size(), 6u);
  EXPECT_TRUE(fs::exists(out + "/roc.svg"));
}

// Option checks say what is wanted; other files given as a model or a .bin say what they are not.
TEST_F(ToolsE2E, OptionAndFileKindErrorsAreClear) {
  const std::string bin = data() + "/open_set.bin", png = data() + "/preview.png";
  expect_error("flatface-eval -m m.safetensors -b " + bin + " --batch 0", {"--batch: must be a positive integer"});
  expect_error("flatface-eval -m m.safetensors -b " + bin + " --threads -1",
               {"--threads: must be 0 (all cores) or a positive number of threads, got '-1'"});
  expect_error("flatface-embed -m m.safetensors -i " + png + " -o e.npy --threads -2", {"--threads: must be 0"});
  expect_error("flatface-embed -m m.safetensors -i " + png + " -o e.npy --chunk 0", {"--chunk: must be a positive"});
  expect_error("flatface-sharpness -m m.safetensors -d x.rec --rho 0", {"--rho: must be a positive number"});
  expect_error("flatface-sharpness -m m.safetensors -d x.rec --batches -3", {"--batches: must be a positive integer"});
  expect_error("flatface-sharpness -m m.safetensors -d x.rec --threads -1", {"--threads: must be 0"});
  expect_error("flatface-synth -o " + dir("never") + " -n 0", {"--identities: must be a positive integer, got '0'"});
  expect_error("flatface-synth -o " + dir("never") + " --threads -4", {"--threads: must be 0"});
  EXPECT_FALSE(fs::exists(dir("never")));
  // A PNG given as the model, a PNG given as pairs.
  expect_error("flatface-eval -m " + png + " -b " + bin, {"preview.png", "not a safetensors file"});
  const std::string model = shared_model(train_args(dir("shared")), dir("shared"));
  expect_error("flatface-eval -m " + model + " -b " + png, {"preview.png", "not a pickle file"});
  // synth's default output is the git-ignored datasets/ folder, not the source tree's data/.
  EXPECT_NE(run("flatface-synth --help").output.find("datasets/synth"), std::string::npos);
}

// A new run in a folder that holds another run's checkpoints is refused: its own checkpoints would
// be pruned as the oldest and --resume would continue the other run.
TEST_F(ToolsE2E, AFreshRunNeverWritesIntoAnotherRunsCheckpoints) {
  const std::string out = dir("twice");
  ASSERT_EQ(run(train_args(out)).code, 0);
  expect_error(train_args(out) + " method.name=sgd", {"already holds", "step-00000006", "--resume"});
  EXPECT_TRUE(fs::exists(out + "/checkpoints/step-00000006/model.safetensors"));
  EXPECT_EQ(losses(out).size(), 1u) << "the first run's log is untouched";
}

// --resume continues the run that was started: settings that make that impossible are refused,
// others are named in a warning; the saved config states the method's own settings.
TEST_F(ToolsE2E, ResumeChecksTheRunsSettings) {
  const std::string out = dir("resume_cfg");
  ASSERT_EQ(run(train_args(out) + " method.name=asam --stop-at 3").code, 0);
  std::ifstream cfg(out + "/config.toml");
  const std::string saved((std::istreambuf_iterator<char>(cfg)), {});
  EXPECT_NE(saved.find("rho = 0.5"), std::string::npos) << saved;
  EXPECT_NE(saved.find("adaptive = true"), std::string::npos) << saved;
  expect_error(train_args(out) + " method.name=asam train.batch_size=4 --resume", {"train.batch_size 8 -> 4", "--resume"});
  expect_error(train_args(out) + " method.name=asam train.seed=5 --resume", {"train.seed 0 -> 5"});
  expect_error(train_args(out) + " --resume", {"method.name asam -> flatface"});
  ToolRun changed = run(train_args(out) + " method.name=asam optim.lr=0.05 --resume");
  ASSERT_EQ(changed.code, 0) << changed.output;
  EXPECT_NE(changed.output.find("warning: --resume with optim.lr 0.1 -> 0.05"), std::string::npos) << changed.output;
  EXPECT_EQ(changed.output.find("data.workers"), std::string::npos) << changed.output;
}

// A backbone saved by other code (a PyTorch iResNet state_dict as safetensors, no FlatFace metadata,
// with or without class centres) is rebuilt from its shapes and evaluates like the original.
TEST_F(ToolsE2E, EvalLoadsABackboneWithoutFlatFaceMetadata) {
  const std::string model = shared_model(train_args(dir("shared")), dir("shared"));
  const std::string out = dir("foreign");
  fs::create_directories(out);
  std::vector<std::pair<std::string, ff::Tensor>> all, backbone;
  for (auto& [name, t] : weights(model)) {
    all.push_back({name, t});
    if (name != "head.weight") backbone.push_back({name, t});
  }
  ff::save_safetensors(out + "/all.safetensors", all);
  ff::save_safetensors(out + "/backbone.safetensors", backbone);
  ToolRun e = run("flatface-eval -m " + model + " -m " + out + "/all.safetensors -m " + out +
                  "/backbone.safetensors -b " + data() + "/open_set.bin --json " + out + "/eval.json");
  ASSERT_EQ(e.code, 0) << e.output;
  std::ifstream in(out + "/eval.json");
  auto j = nlohmann::json::parse(in);
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[1]["fold_accuracy"], j[0]["fold_accuracy"]);
  EXPECT_EQ(j[2]["fold_accuracy"], j[0]["fold_accuracy"]);
  // Not an iResNet: the error says what was looked for.
  ff::save_safetensors(out + "/other.safetensors", {{"w", ff::Tensor::zeros({2, 2}, ff::DType::F32)}});
  expect_error("flatface-eval -m " + out + "/other.safetensors -b " + data() + "/open_set.bin",
               {"other.safetensors", "conv1.weight", "iResNet"});
  // A run's folder is not a checkpoint: the error points at one.
  expect_error("flatface-eval -m " + dir("shared") + " -b " + data() + "/open_set.bin",
               {"run folder", "checkpoints/step-00000006"});
}

}  // namespace
