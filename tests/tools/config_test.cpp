// Config: TOML files with comments, overrides, and clear errors for unknown keys and bad values.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/error.h"
#include "tools/common/config.h"

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

}  // namespace
}  // namespace ff
