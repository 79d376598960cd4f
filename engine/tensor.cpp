// Tensor storage, views, copies and the CPU allocator.
#include "engine/tensor.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "engine/autograd.h"
#include "engine/device_hooks.h"

namespace ff {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I64: return "i64";
  }
  return "?";
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    // A product past 2^62 elements is no real tensor: it comes from a corrupt file or a bad config
    // and would otherwise wrap around into a small, wrong allocation.
    FF_CHECK(d >= 0 && (d == 0 || n <= (int64_t{1} << 62) / d), "shape ", shape_str(s),
             " has a negative dimension or too many elements");
    n *= d;
  }
  return n;
}

namespace {

// 64-byte aligned host memory; counts bytes so tools can report their footprint.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded ? rounded : 64);
    FF_CHECK(p, "out of host memory allocating ", bytes, " bytes");
    size_t now = current_ += bytes;
    size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return p;
  }
  void deallocate(void* p, size_t bytes) override {
    std::free(p);
    current_ -= bytes;
  }
  size_t current_bytes() const override { return current_; }
  size_t peak_bytes() const override { return peak_; }

 private:
  std::atomic<size_t> current_{0}, peak_{0};
};

CpuAllocator g_cpu_allocator;
Allocator* g_cuda_allocator = nullptr;
thread_local bool g_grad_enabled = true;

}  // namespace

void register_allocator(DeviceType t, Allocator* a) {
  FF_CHECK(t == DeviceType::CUDA, "only the CUDA allocator can be registered");
  g_cuda_allocator = a;
}

Allocator& allocator_for(Device d) {
  if (d.is_cpu()) return g_cpu_allocator;
  FF_CHECK(g_cuda_allocator, "no CUDA backend in this build (or it was not initialised) for ", d.str());
  return *g_cuda_allocator;
}

Storage::Storage(size_t nbytes, Device d) : bytes(nbytes), device(d) { data = allocator_for(d).allocate(nbytes); }
Storage::~Storage() { allocator_for(device).deallocate(data, bytes); }

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

TensorImpl& Tensor::impl() const {
  FF_CHECK(impl_, "use of an undefined tensor");
  return *impl_;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device dev) {
  for (int64_t d : shape) FF_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  const int64_t numel = shape_numel(shape);
  FF_CHECK((uint64_t)numel <= (uint64_t{1} << 62) / dtype_size(dtype), "shape ", shape_str(shape), " of ",
           dtype_name(dtype), " is too large to allocate");
  impl->storage = std::make_shared<Storage>((size_t)numel * dtype_size(dtype), dev);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device dev) { return full(shape, 0.0, dtype, dev); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device dev) {
  Tensor t = empty(shape, dtype, dev);
  t.fill_(value);
  return t;
}

template <class T>
Tensor Tensor::from(const Shape& shape, std::span<const T> values) {
  FF_CHECK((int64_t)values.size() == shape_numel(shape), "Tensor::from: ", values.size(),
           " values for shape ", shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>());
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(T));
  return t;
}
template Tensor Tensor::from<float>(const Shape&, std::span<const float>);
template Tensor Tensor::from<double>(const Shape&, std::span<const double>);
template Tensor Tensor::from<int64_t>(const Shape&, std::span<const int64_t>);

Tensor Tensor::from(const Shape& shape, std::initializer_list<double> values, DType dtype) {
  std::vector<double> v(values);
  return from<double>(shape, v).to(dtype);
}

int64_t Tensor::size(int64_t i) const {
  int64_t n = dim();
  if (i < 0) i += n;
  FF_CHECK(i >= 0 && i < n, "dimension ", i, " out of range for ", str());
  return shape()[i];
}

std::string Tensor::str() const {
  if (!impl_) return "undefined";
  std::string s = std::string(dtype_name(dtype())) + shape_str(shape()) + " " + device().str();
  return impl_->name.empty() ? s : "'" + impl_->name + "' " + s;
}

Tensor& Tensor::set_name(std::string n) {
  impl().name = std::move(n);
  return *this;
}

void* Tensor::raw() const {
  return static_cast<char*>(impl().storage->data) + impl().offset * dtype_size(impl().dtype);
}

template <class T>
T* Tensor::data() const {
  FF_CHECK(dtype() == dtype_of<T>(), "tensor ", str(), " accessed as ", dtype_name(dtype_of<T>()));
  return static_cast<T*>(raw());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int64_t* Tensor::data<int64_t>() const;

double Tensor::item(int64_t i) const {
  FF_CHECK(i >= 0 && i < numel(), "item(", i, ") out of range for ", str());
  if (!device().is_cpu()) {
    Tensor host = empty({}, dtype());
    device_copy(host.raw(), Device::cpu(), static_cast<const char*>(raw()) + (size_t)i * dtype_size(dtype()), device(),
                dtype_size(dtype()));
    return host.item();
  }
  switch (dtype()) {
    case DType::F32: return static_cast<const float*>(raw())[i];
    case DType::F64: return static_cast<const double*>(raw())[i];
    case DType::I64: return (double)static_cast<const int64_t*>(raw())[i];
    default: throw Error(msg("item() of ", str(), " is not supported"));
  }
}

std::vector<double> Tensor::to_vector() const {
  Tensor c = device().is_cpu() ? *this : to(Device::cpu());
  std::vector<double> v((size_t)numel());
  for (int64_t i = 0; i < numel(); ++i) v[i] = c.item(i);
  return v;
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  Shape s = new_shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      FF_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(new_shape));
      infer = (int64_t)i;
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    FF_CHECK(known > 0 && numel() % known == 0, "reshape: cannot reshape ", str(), " to ", shape_str(new_shape));
    s[infer] = numel() / known;
  }
  FF_CHECK(shape_numel(s) == numel(), "reshape: cannot reshape ", str(), " to ", shape_str(new_shape));
  auto v = std::make_shared<TensorImpl>();
  v->storage = impl().storage;
  v->offset = impl().offset;
  v->shape = s;
  v->dtype = dtype();
  Shape old = shape();
  return record("reshape", Tensor(std::move(v)), {*this},
                [old](const Tensor& g) { return std::vector<Tensor>{g.reshape(old)}; });
}

Tensor Tensor::flatten(int64_t start_dim) const {
  FF_CHECK(start_dim >= 0 && start_dim < std::max<int64_t>(dim(), 1), "flatten: start_dim ", start_dim,
           " out of range for ", str());
  Shape s(shape().begin(), shape().begin() + start_dim);
  s.push_back(-1);
  return reshape(s);
}

Tensor Tensor::slice_batch(int64_t begin, int64_t end) const {
  FF_CHECK(dim() >= 1 && begin >= 0 && begin <= end && end <= size(0), "slice_batch: rows [", begin, ", ", end,
           ") out of range for ", str());
  auto v = std::make_shared<TensorImpl>();
  v->storage = impl().storage;
  int64_t row = numel() / std::max<int64_t>(size(0), 1);
  v->offset = impl().offset + (size_t)(begin * row);
  v->shape = shape();
  v->shape[0] = end - begin;
  v->dtype = dtype();
  Shape full_shape = shape();
  return record("slice_batch", Tensor(std::move(v)), {*this}, [full_shape, begin, end](const Tensor& g) {
    Tensor r = Tensor::zeros(full_shape, g.dtype(), g.device());
    r.slice_batch(begin, end).copy_from(g);
    return std::vector<Tensor>{r};
  });
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype(), device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor t = empty(shape(), dtype(), d);
  t.copy_from(*this);
  return t;
}

void Tensor::move_to_(Device d) {
  if (d == device()) return;
  Tensor moved = to(d);
  impl().storage = moved.impl().storage;
  impl().offset = moved.impl().offset;
  impl().grad.reset();
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor r = empty(shape(), t, device());
  r.copy_from(*this);
  return r;
}

namespace {
template <class D, class S>
void convert(D* dst, const S* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<D>(src[i]);
}
}  // namespace

void Tensor::copy_from(const Tensor& src) {
  FF_CHECK(src.numel() == numel(), "copy_from: ", src.str(), " into ", str());
  if (src.dtype() == dtype()) {
    if (device().is_cpu() && src.device().is_cpu()) {
      if (nbytes()) std::memmove(raw(), src.raw(), nbytes());
    } else {
      device_copy(raw(), device(), src.raw(), src.device(), nbytes());
    }
    return;
  }
  if (!device().is_cpu()) {  // move to this device first, then convert there
    Tensor s = src.device() == device() ? src : src.to(device());
    device_convert(raw(), dtype(), s.raw(), s.dtype(), numel());
    return;
  }
  Tensor s = src.device().is_cpu() ? src : src.to(Device::cpu());
  int64_t n = numel();
  auto D = dtype(), S = s.dtype();
  if (D == DType::F32 && S == DType::F64) return convert(data<float>(), s.data<double>(), n);
  if (D == DType::F64 && S == DType::F32) return convert(data<double>(), s.data<float>(), n);
  if (D == DType::F64 && S == DType::I64) return convert(data<double>(), s.data<int64_t>(), n);
  if (D == DType::F32 && S == DType::I64) return convert(data<float>(), s.data<int64_t>(), n);
  if (D == DType::I64 && S == DType::F64) return convert(data<int64_t>(), s.data<double>(), n);
  if (D == DType::I64 && S == DType::F32) return convert(data<int64_t>(), s.data<float>(), n);
  throw Error(msg("copy_from: no conversion from ", dtype_name(S), " to ", dtype_name(D)));
}

void Tensor::fill_(double value) {
  if (!device().is_cpu()) {
    Tensor host = full(shape(), value, dtype());
    copy_from(host);
    return;
  }
  int64_t n = numel();
  switch (dtype()) {
    case DType::F32: std::fill_n(data<float>(), n, (float)value); break;
    case DType::F64: std::fill_n(data<double>(), n, value); break;
    case DType::I64: std::fill_n(data<int64_t>(), n, (int64_t)value); break;
    default: throw Error(msg("fill_: dtype of ", str(), " is not supported"));
  }
}

Tensor& Tensor::set_requires_grad(bool on) {
  FF_CHECK(is_leaf(), "set_requires_grad on ", str(), ", which is not a leaf");
  impl().requires_grad = on;
  if (!on) impl().grad.reset();
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined()) {
    FF_CHECK(g.shape() == shape(), "set_grad: gradient ", g.str(), " for ", str());
  }
  impl().grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::zero_grad() { impl().grad.reset(); }

Tensor Tensor::detach() const {
  auto v = std::make_shared<TensorImpl>();
  v->storage = impl().storage;
  v->offset = impl().offset;
  v->shape = shape();
  v->dtype = dtype();
  v->name = impl().name;
  return Tensor(std::move(v));
}

void Tensor::backward(const Tensor& grad_output) const {
  FF_CHECK(requires_grad(), "backward on ", str(), ", which does not require a gradient");
  Tensor g = grad_output;
  if (!g.defined()) {
    FF_CHECK(numel() == 1, "backward without a gradient needs a scalar, got ", str());
    g = full(shape(), 1.0, dtype(), device());
  }
  FF_CHECK(g.shape() == shape(), "backward: gradient ", g.str(), " for output ", str());
  run_backward(*this, g);
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  FF_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch between ", a.str(), " and ", b.str());
}
void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  FF_CHECK(a.device() == b.device(), op, ": device mismatch between ", a.str(), " and ", b.str());
}
void check_dim(const char* op, const Tensor& t, int64_t dims, const char* what) {
  FF_CHECK(t.dim() == dims, op, ": ", what, " must be ", dims, "-D, got ", t.str());
}
void check_float(const char* op, const Tensor& t) {
  FF_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, op, ": ", t.str(), " must be f32 or f64");
}

}  // namespace ff
