// SVG line plots: linear axes fitted to the data, five ticks each, a colour per series.
#include "tools/common/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "engine/atomic_file.h"

namespace ff {

namespace {

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

std::string escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '<') r += "&lt;";
    else if (c == '>') r += "&gt;";
    else if (c == '&') r += "&amp;";
    else r += c;
  }
  return r;
}

}  // namespace

void write_svg_plot(const std::string& path, const std::string& title, const std::string& x_label,
                    const std::vector<PlotSeries>& series) {
  const double W = 640, H = 400, L = 70, R = 20, T = 40, B = 50;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (auto& s : series)
    for (auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 < 1e-12) x1 = x0 + 1;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
  o << "<text x='" << W / 2 << "' y='22' text-anchor='middle' font-size='15'>" << escape(title) << "</text>\n";
  o << "<text x='" << (L + W - R) / 2 << "' y='" << H - 10 << "' text-anchor='middle'>" << escape(x_label)
    << "</text>\n";
  for (int i = 0; i <= 4; ++i) {
    double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    o << "<line x1='" << px(xv) << "' y1='" << T << "' x2='" << px(xv) << "' y2='" << H - B
      << "' stroke='#eee'/>\n<text x='" << px(xv) << "' y='" << H - B + 16 << "' text-anchor='middle'>" << num(xv)
      << "</text>\n";
    o << "<line x1='" << L << "' y1='" << py(yv) << "' x2='" << W - R << "' y2='" << py(yv)
      << "' stroke='#eee'/>\n<text x='" << L - 6 << "' y='" << py(yv) + 4 << "' text-anchor='end'>" << num(yv)
      << "</text>\n";
  }
  o << "<rect x='" << L << "' y='" << T << "' width='" << W - L - R << "' height='" << H - T - B
    << "' fill='none' stroke='#333'/>\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const char* c = colours[k % 6];
    o << "<polyline fill='none' stroke='" << c << "' stroke-width='1.5' points='";
    for (auto& [x, y] : series[k].points)
      if (std::isfinite(x) && std::isfinite(y)) o << px(x) << "," << py(y) << " ";
    o << "'/>\n<text x='" << L + 10 << "' y='" << T + 16 + 16 * k << "' fill='" << c << "'>"
      << escape(series[k].name) << "</text>\n";
  }
  o << "</svg>\n";
  std::string text = o.str();
  write_file_atomically(path, [&](FileWriter& w) { w.write(text.data(), text.size()); });
}

}  // namespace ff
