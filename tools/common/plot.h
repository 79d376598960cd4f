// Small SVG line plots for training curves (loss, learning rate, validation accuracy).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace ff {

struct PlotSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y)
};

// Writes an SVG with one line per series, axes with tick labels, and a legend (atomic write).
void write_svg_plot(const std::string& path, const std::string& title, const std::string& x_label,
                    const std::vector<PlotSeries>& series);

}  // namespace ff
