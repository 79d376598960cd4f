// Recording ops on the tape and running the backward pass in reverse topological order.
#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace ff {

Tensor record(const char* op, Tensor out, const std::vector<Tensor>& inputs, BackwardFn fn) {
  if (!grad_enabled()) return out;
  bool any = false;
  for (const Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!any) return out;
  auto node = std::make_shared<Node>();
  node->name = op;
  for (const Tensor& t : inputs) node->inputs.push_back(t.defined() && t.requires_grad() ? t.impl_ptr() : nullptr);
  node->backward = std::move(fn);
  out.impl().grad_fn = std::move(node);
  return out;
}

namespace {

// Leaf gradients are tensors of their own (never views of an op's output), so an optimizer may
// update them in place and a second backward adds into them.
void accumulate_leaf(std::shared_ptr<TensorImpl>& slot, const Tensor& g) {
  if (!slot) {
    slot = g.clone().impl_ptr();
    return;
  }
  Tensor s(slot);
  add_(s, g);
}

// Intermediate gradients may alias what an op returned, so summing them is out of place.
void accumulate_intermediate(std::shared_ptr<TensorImpl>& slot, const Tensor& g) {
  slot = slot ? add(Tensor(slot), g).impl_ptr() : g.impl_ptr();
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& grad_output) {
  NoGradGuard no_grad;
  // Topological order by iterative depth-first search over grad_fn edges.
  std::vector<TensorImpl*> order;
  std::unordered_set<TensorImpl*> seen;
  std::vector<std::pair<TensorImpl*, size_t>> stack{{&root.impl(), 0}};
  seen.insert(&root.impl());
  while (!stack.empty()) {
    auto& [t, next] = stack.back();
    Node* n = t->grad_fn.get();
    if (n && next < n->inputs.size()) {
      TensorImpl* in = n->inputs[next++].get();
      if (in && seen.insert(in).second) stack.push_back({in, 0});
      continue;
    }
    order.push_back(t);
    stack.pop_back();
  }
  // `order` is post-order (inputs before users); walk it backwards.
  std::unordered_map<TensorImpl*, std::shared_ptr<TensorImpl>> grads;
  grads[&root.impl()] = grad_output.impl_ptr();
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    TensorImpl* t = *it;
    auto found = grads.find(t);
    if (found == grads.end() || !found->second) continue;
    Tensor g(found->second);
    if (!t->grad_fn) {
      if (t->requires_grad) accumulate_leaf(t->grad, g);
      grads.erase(found);
      continue;
    }
    Node& n = *t->grad_fn;
    std::vector<Tensor> in_grads = n.backward(g);
    grads.erase(found);  // free the gradient of an intermediate as soon as it is used
    FF_CHECK(in_grads.size() == n.inputs.size(), "autograd: op ", n.name, " returned ", in_grads.size(),
             " gradients for ", n.inputs.size(), " inputs");
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      TensorImpl* in = n.inputs[i].get();
      if (!in || !in_grads[i].defined()) continue;
      FF_CHECK(in_grads[i].shape() == in->shape, "autograd: op ", n.name, " gave gradient ", in_grads[i].str(),
               " for input ", i, " of shape ", shape_str(in->shape));
      accumulate_intermediate(grads[in], in_grads[i]);
    }
  }
}

}  // namespace ff
