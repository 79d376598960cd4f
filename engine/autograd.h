// Reverse-mode autograd: the graph node every differentiable op records, and how ops record it.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace ff {

// One recorded op. `backward` receives the gradient of the op's output and returns one gradient
// per entry of `inputs` (an undefined Tensor where an input needs none). It runs with gradient
// recording off, so it may call ops freely.
struct Node {
  const char* name = "";
  std::vector<std::shared_ptr<TensorImpl>> inputs;
  std::function<std::vector<Tensor>(const Tensor& grad_output)> backward;
};

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

// Attaches a Node to `out` when recording is on and any input requires a gradient.
// Returns `out` for chaining. `fn` should capture only what backward needs.
Tensor record(const char* op, Tensor out, const std::vector<Tensor>& inputs, BackwardFn fn);

// Runs the backward pass from `root` with the given output gradient.
void run_backward(const Tensor& root, const Tensor& grad_output);

}  // namespace ff
