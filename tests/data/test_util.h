// Helpers shared by the data tests: fixture paths and manifest, temp directories, error capture, python3.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>

#include "data/file_io.h"
#include "engine/error.h"

namespace ff::data::test {

inline std::string fixture(const std::string& rel) {
  return std::string(FLATFACE_SOURCE_DIR) + "/tests/data/fixtures/" + rel;
}

inline const nlohmann::json& manifest() {
  static const nlohmann::json m = [] {
    auto bytes = read_file_bytes(fixture("manifest.json"));
    return nlohmann::json::parse(bytes.begin(), bytes.end());
  }();
  return m;
}

// A fresh directory removed with everything in it at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ff-data-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw Error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// The ff::Error message thrown by f, or "<no error>".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// Expects f to throw ff::Error whose message contains every part.
inline void expect_error(const std::function<void()>& f, std::initializer_list<std::string> parts) {
  std::string m = error_of(f);
  for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "missing '" << p << "' in: " << m;
}

inline const char* kPython = "/usr/bin/python3";
inline bool have_python() { return std::filesystem::exists(kPython); }

// Runs a shell command and returns its stdout (and its exit status in *status).
inline std::string run_command(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  *status = ::pclose(p);
  return out;
}

}  // namespace ff::data::test
