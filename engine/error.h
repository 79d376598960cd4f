// The one exception type of the project, and a check macro that survives release builds.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ff {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void stream_all(std::ostringstream&) {}
template <class T, class... R>
void stream_all(std::ostringstream& os, const T& v, const R&... rest) {
  os << v;
  stream_all(os, rest...);
}
}  // namespace detail

// Builds a message from any streamable parts: ff::msg("bad shape ", s, " in ", op).
template <class... A>
std::string msg(const A&... parts) {
  std::ostringstream os;
  detail::stream_all(os, parts...);
  return os.str();
}

}  // namespace ff

// FF_CHECK(cond, parts...) throws ff::Error with the parts when cond is false, in every build type.
#define FF_CHECK(cond, ...)                                \
  do {                                                     \
    if (!(cond)) throw ::ff::Error(::ff::msg(__VA_ARGS__)); \
  } while (0)
