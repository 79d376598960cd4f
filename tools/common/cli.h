// What every tool's main does: parse with CLI11, run, and turn any error into one clear line.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>

#include "engine/error.h"

namespace ff {

// Parses argv into `app`, then calls `body`. Usage errors exit 2 with CLI11's message; ff::Error
// and other exceptions print "<tool>: error: <what>" and exit 1.
inline int run_tool(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return body();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", app.get_name().c_str(), e.what());
    return 1;
  }
}

}  // namespace ff
