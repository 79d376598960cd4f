// Sums and means, over everything or one dimension, and the broadcast-gradient reduction.
#include <algorithm>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"

namespace ff {

namespace {

// Sums x viewed as [outer, n, inner] over n, accumulating in double. The split into work items
// does not depend on the thread count, so results are bitwise reproducible.
template <class T>
void reduce_middle(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale) {
#pragma omp parallel for schedule(static) if (outer * n * inner > 32768)
  for (int64_t o = 0; o < outer; ++o) {
    std::vector<double> acc((size_t)inner, 0.0);
    for (int64_t k = 0; k < n; ++k) {
      const T* row = x + (o * n + k) * inner;
      for (int64_t i = 0; i < inner; ++i) acc[i] += row[i];
    }
    for (int64_t i = 0; i < inner; ++i) out[o * inner + i] = (T)(acc[i] * scale);
  }
}

// Sum of all elements: fixed 256 chunks, each summed in double, then the partials in order.
template <class T>
double total(const T* x, int64_t n) {
  constexpr int64_t kChunks = 256;
  double part[kChunks] = {};
  int64_t per = (n + kChunks - 1) / kChunks;
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t c = 0; c < kChunks; ++c) {
    double s = 0;
    for (int64_t i = c * per, e = std::min(n, (c + 1) * per); i < e; ++i) s += x[i];
    part[c] = s;
  }
  double s = 0;
  for (double p : part) s += p;
  return s;
}

Tensor reduce_dim(const char* op, const Tensor& x, int64_t dim, bool keepdim, bool average) {
  check_float(op, x);
  require_cpu(op, x);
  int64_t nd = x.dim();
  if (dim < 0) dim += nd;
  FF_CHECK(dim >= 0 && dim < nd, op, ": dim out of range for ", x.str());
  int64_t outer = 1, inner = 1, n = x.shape()[dim];
  for (int64_t d = 0; d < dim; ++d) outer *= x.shape()[d];
  for (int64_t d = dim + 1; d < nd; ++d) inner *= x.shape()[d];
  Shape kept = x.shape();
  kept[dim] = 1;
  Tensor out = Tensor::empty(kept, x.dtype(), x.device());
  double scale = average ? 1.0 / (double)std::max<int64_t>(n, 1) : 1.0;
  dispatch_float(op, x.dtype(), [&]<class T>() { reduce_middle<T>(x.data<T>(), out.data<T>(), outer, n, inner, scale); });
  Shape in_shape = x.shape();
  out = record(op, out, {x}, [in_shape, kept, scale](const Tensor& g) {
    // Broadcasting the gradient back over the reduced dimension.
    Tensor ones = Tensor::full(in_shape, scale, g.dtype(), g.device());
    return std::vector<Tensor>{mul(ones, g.reshape(kept))};
  });
  if (keepdim) return out;
  Shape squeezed = x.shape();
  squeezed.erase(squeezed.begin() + dim);
  return out.reshape(squeezed);
}

Tensor reduce_all(const char* op, const Tensor& x, bool average) {
  check_float(op, x);
  require_cpu(op, x);
  Tensor out = Tensor::empty({}, x.dtype(), x.device());
  double scale = average ? 1.0 / (double)std::max<int64_t>(x.numel(), 1) : 1.0;
  dispatch_float(op, x.dtype(), [&]<class T>() { out.data<T>()[0] = (T)(total<T>(x.data<T>(), x.numel()) * scale); });
  Shape in_shape = x.shape();
  return record(op, out, {x}, [in_shape, scale](const Tensor& g) {
    return std::vector<Tensor>{Tensor::full(in_shape, g.item() * scale, g.dtype(), g.device())};
  });
}

}  // namespace

Tensor sum(const Tensor& x) { return reduce_all("sum", x, false); }
Tensor mean(const Tensor& x) { return reduce_all("mean", x, true); }
Tensor sum_dim(const Tensor& x, int64_t dim, bool keepdim) { return reduce_dim("sum_dim", x, dim, keepdim, false); }
Tensor mean_dim(const Tensor& x, int64_t dim, bool keepdim) { return reduce_dim("mean_dim", x, dim, keepdim, true); }

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  FF_CHECK(shape.size() <= x.shape().size(), "sum_to_shape: cannot reduce ", x.str(), " to ", shape_str(shape));
  Tensor r = x;
  // Drop leading dimensions, then sum the ones broadcast from extent 1.
  while ((size_t)r.dim() > shape.size()) r = sum_dim(r, 0, false);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1 && r.shape()[d] != 1) r = sum_dim(r, (int64_t)d, true);
  }
  FF_CHECK(r.shape() == shape, "sum_to_shape: cannot reduce ", x.str(), " to ", shape_str(shape));
  return r;
}

}  // namespace ff
