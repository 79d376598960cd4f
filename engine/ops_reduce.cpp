// Sums and means, over everything or one dimension, and the broadcast-gradient reduction.
#include <algorithm>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "kernels/cpu/reduce.h"

namespace ff {

namespace {

Tensor reduce_dim(const char* op, const Tensor& x, int64_t dim, bool keepdim, bool average) {
  check_float(op, x);
  require_backend(op, x);
  const int64_t nd = x.dim(), given = dim;
  if (dim < 0) dim += nd;
  FF_CHECK(dim >= 0 && dim < nd, op, ": dim ", given, " out of range for ", x.str());
  int64_t outer = 1, inner = 1, n = x.shape()[dim];
  for (int64_t d = 0; d < dim; ++d) outer *= x.shape()[d];
  for (int64_t d = dim + 1; d < nd; ++d) inner *= x.shape()[d];
  Shape kept = x.shape();
  kept[dim] = 1;
  Tensor out = Tensor::empty(kept, x.dtype(), x.device());
  double scale = average ? 1.0 / (double)std::max<int64_t>(n, 1) : 1.0;
  dispatch_float(op, x.dtype(), [&]<class T>() {
    FF_KERNEL(x, reduce_middle<T>, x.data<T>(), out.data<T>(), outer, n, inner, scale);
  });
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
  require_backend(op, x);
  Tensor out = Tensor::empty({}, x.dtype(), x.device());
  double scale = average ? 1.0 / (double)std::max<int64_t>(x.numel(), 1) : 1.0;
  dispatch_float(op, x.dtype(),
                 [&]<class T>() { FF_KERNEL(x, sum_all<T>, x.data<T>(), x.numel(), scale, out.data<T>()); });
  Shape in_shape = x.shape();
  return record(op, out, {x}, [in_shape, scale](const Tensor& g) {
    // Broadcasting the scalar gradient; it stays on its device (no read-back of a CUDA value).
    return std::vector<Tensor>{mul(Tensor::full(in_shape, scale, g.dtype(), g.device()), g)};
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
