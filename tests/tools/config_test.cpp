// Config: TOML files with comments, overrides, and clear errors for unknown keys and bad values.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/error.h"
#include "tools/common/config.h"
#include "tools/common/trainer.h"

namespace ff {
namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() / ("flatface_config_test_" + name);
  std::ofstream(path) << text;
  return path.string();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, TomlWithCommentsAndOverrides) {
  Config c;
  c.load_toml(write_temp("ok.toml", "# a comment\n[method]\nname = \"sam\"  # trailing\nrho = 0.1\n"
                                    "[data]\nval = [\"a.bin\", \"b.bin\"]\n[train]\nsteps = 7\n"));
  EXPECT_EQ(c.get_string("method.name"), "sam");
  EXPECT_DOUBLE_EQ(c.get_double("method.rho"), 0.1);
  EXPECT_EQ(c.get_list("data.val"), (std::vector<std::string>{"a.bin", "b.bin"}));
  EXPECT_EQ(c.get_int("train.steps"), 7);
  c.set("method.rho=0.2");
  c.set("data.flip=false");
  c.set("data.val=x.bin,y.bin,z.bin");
  EXPECT_DOUBLE_EQ(c.get_double("method.rho"), 0.2);
  EXPECT_FALSE(c.get_bool("data.flip"));
  EXPECT_EQ(c.get_list("data.val").size(), 3u);
  EXPECT_TRUE(c.is_set("method.rho"));
  EXPECT_FALSE(c.is_set("optim.lr"));
}

TEST(Config, ResolvedConfigLoadsBackToTheSameValues) {
  Config c;
  c.set("head.margin=cosface");
  c.set("optim.lr=0.025");
  c.set("data.val=a.bin");
  Config d;
  d.load_toml(write_temp("round.toml", c.to_toml()));
  ASSERT_EQ(c.keys().size(), d.keys().size());
  for (size_t i = 0; i < c.keys().size(); ++i) EXPECT_EQ(c.keys()[i].value, d.keys()[i].value) << c.keys()[i].key;
}

TEST(Config, UnknownKeysAndBadValuesAreNamed) {
  Config c;
  EXPECT_NE(error_of([&] { c.set("method.rhoo=1"); }).find("method.rhoo"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("optim.lr=fast"); }).find("optim.lr"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("train.steps=1.5"); }).find("train.steps"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("noequals"); }).find("key=value"), std::string::npos);
  std::string e = error_of([&] { c.load_toml(write_temp("bad.toml", "[model]\nbackbon = \"r18\"\n")); });
  EXPECT_NE(e.find("model.backbon"), std::string::npos) << e;
  e = error_of([&] { c.load_toml(write_temp("type.toml", "[train]\nsteps = \"many\"\n")); });
  EXPECT_NE(e.find("train.steps"), std::string::npos) << e;
  e = error_of([&] { c.load_toml(write_temp("syntax.toml", "[train\nsteps = 1\n")); });
  EXPECT_NE(e.find("syntax.toml"), std::string::npos) << e;
}

// The saved config must describe the run: the method- and margin-dependent defaults are written
// out, and loading the file again gives the same method and margin (before, an asam run's file said
// adaptive = false and head = true, which reloaded as FlatFace).
TEST(Config, RunConfigWritesEachMethodsOwnSettingsAndReloadsToThem) {
  for (const char* method : {"sgd", "sam", "asam", "aace", "flatface"}) {
    for (const char* margin : {"arcface", "cosface", "combined"}) {
      Config c;
      c.set(std::string("method.name=") + method);
      c.set(std::string("head.margin=") + margin);
      const PerturbConfig p = perturb_config_from(c);
      const MarginConfig m = margin_config_from(c);
      Config reloaded;
      reloaded.load_toml_text(resolved_config(c, p, m).to_toml(), "saved");
      const PerturbConfig p2 = perturb_config_from(reloaded);
      const MarginConfig m2 = margin_config_from(reloaded);
      const std::string at = std::string(method) + "/" + margin;
      EXPECT_EQ(p2.method, p.method) << at;
      EXPECT_EQ(p2.rho, p.rho) << at;
      EXPECT_EQ(p2.adaptive, p.adaptive) << at;
      EXPECT_EQ(p2.normalize, p.normalize) << at;
      EXPECT_EQ(p2.loss, p.loss) << at;
      EXPECT_EQ(p2.head, p.head) << at;
      EXPECT_EQ(m2.type, m.type) << at;
      EXPECT_EQ(m2.m1, m.m1) << at;
      EXPECT_EQ(m2.m2, m.m2) << at;
      EXPECT_EQ(m2.m3, m.m3) << at;
    }
  }
  // FLATFACE.md's defaults, as the saved file states them.
  Config asam;
  asam.set("method.name=asam");
  const std::string text = resolved_config(asam, perturb_config_from(asam), margin_config_from(asam)).to_toml();
  EXPECT_NE(text.find("rho = 0.5"), std::string::npos) << text;
  EXPECT_NE(text.find("adaptive = true"), std::string::npos) << text;
  EXPECT_NE(text.find("head = false"), std::string::npos) << text;
}

TEST(Config, ExplicitRhoIsCheckedNotReplacedByTheDefault) {
  for (const char* bad : {"-0.1", "nan"}) {
    Config c;
    c.set(std::string("method.rho=") + bad);
    std::string e = error_of([&] { perturb_config_from(c); });
    EXPECT_NE(e.find("method.rho"), std::string::npos) << bad << ": " << e;
  }
  Config c;
  c.set("method.name=asam");
  c.set("method.rho=0.1");
  EXPECT_EQ(perturb_config_from(c).rho, 0.1);
}

TEST(Config, DifferingKeysInSchemaOrder) {
  Config a, b;
  b.set("optim.lr=0.5");
  b.set("data.val=x.bin");
  EXPECT_EQ(a.differing_keys(b), (std::vector<std::string>{"data.val", "optim.lr"}));
  EXPECT_TRUE(a.differing_keys(a).empty());
  EXPECT_EQ(b.value_text("optim.lr"), "0.5");
}

}  // namespace
}  // namespace ff
