// What every tool's main does: parse with CLI11, run, and turn any error into one clear line.
#pragma once

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "engine/error.h"

namespace ff {

// CLI11's PositiveNumber says "Value 0 not in range 0.000000 to 1797693..."; these say what is wanted.
// CLI11 prefixes the option's name: "--batch: must be a positive integer, got '0'".
template <class T, class Ok>
CLI::Validator number_check(Ok ok, const std::string& want, const std::string& desc) {
  return CLI::Validator(
      [=](std::string& s) {
        T v{};
        return CLI::detail::lexical_cast(s, v) && ok(v) ? std::string() : "must be " + want + ", got '" + s + "'";
      },
      desc);
}
inline CLI::Validator positive_int() {
  return number_check<int64_t>([](int64_t v) { return v > 0; }, "a positive integer", "POSITIVE");
}
inline CLI::Validator positive_number() {
  return number_check<double>([](double v) { return v > 0; }, "a positive number", "POSITIVE");
}
// --threads: 0 means every core; a negative count means nothing.
inline CLI::Validator thread_count() {
  return number_check<int64_t>([](int64_t v) { return v >= 0; }, "0 (all cores) or a positive number of threads",
                               "NON-NEGATIVE");
}

// Parses argv into `app`, then calls `body`. Usage errors exit 2 with CLI11's message; ff::Error
// and other exceptions print "<tool>: error: <what>" and exit 1. --help shows every option's
// default: the value its variable holds before parsing.
inline int run_tool(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  // OpenMP threads that spin while waiting steal the cores of the data-loader threads (and of
  // anything else running), which made training ten times slower on a busy 2-core machine.
  // libgomp reads the policy when it loads, so set it and start again once.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure; then run as we are
  }
  const std::function<void(CLI::App*)> capture = [&](CLI::App* a) {
    for (CLI::Option* o : a->get_options())
      if (o->get_expected_min() > 0 && !o->get_required() && o->get_default_str().empty()) o->capture_default_str();
    for (CLI::App* sub : a->get_subcommands(std::function<bool(CLI::App*)>())) capture(sub);
  };
  capture(&app);
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
