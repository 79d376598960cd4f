// Tensor: shape, dtype, device, reference-counted storage, and the autograd hooks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/error.h"

namespace ff {

enum class DType : uint8_t { F32, F64, BF16, F16, I64 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }

enum class DeviceType : uint8_t { CPU, CUDA };
struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device&) const = default;
  std::string str() const;
};

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// Raw memory of one device. Allocated and freed through that device's allocator.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p, size_t bytes) = 0;
  virtual size_t current_bytes() const = 0;
  virtual size_t peak_bytes() const = 0;
};
Allocator& allocator_for(Device d);
// Backends register their allocator once (the CUDA backend does this at start-up).
void register_allocator(DeviceType t, Allocator* a);

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  Storage(size_t nbytes, Device d);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Tensor;
struct Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  size_t offset = 0;  // in elements
  Shape shape;
  DType dtype = DType::F32;
  bool requires_grad = false;          // leaf parameters that collect .grad
  std::shared_ptr<TensorImpl> grad;    // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;       // the op that produced this tensor (null for leaves)
  std::string name;                    // optional, for error messages
};

// All tensors are contiguous, row-major. Views (reshape, batch slices) share storage.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device dev = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device dev = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device dev = Device::cpu());
  template <class T>
  static Tensor from(const Shape& shape, std::span<const T> values);
  static Tensor from(const Shape& shape, std::initializer_list<double> values, DType dtype = DType::F32);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim() const { return (int64_t)impl().shape.size(); }
  int64_t size(int64_t i) const;  // negative i counts from the end
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  size_t nbytes() const { return (size_t)numel() * dtype_size(dtype()); }
  std::string str() const;  // "f32[2, 3] cpu" for messages
  const std::string& name() const { return impl().name; }
  Tensor& set_name(std::string n);

  void* raw() const;
  template <class T> T* data() const;  // checks dtype
  // Element access for tests and small code, slow; on a device it copies that one element to the
  // host (and so waits for the work that writes it).
  double item(int64_t flat_index = 0) const;
  std::vector<double> to_vector() const;

  // Views (share storage; gradient flows through them).
  Tensor reshape(const Shape& shape) const;  // one dim may be -1
  Tensor flatten(int64_t start_dim = 1) const;
  Tensor slice_batch(int64_t begin, int64_t end) const;  // rows [begin, end) of dim 0

  // Copies (no gradient).
  Tensor clone() const;
  Tensor to(Device d) const;
  Tensor to(DType t) const;
  void copy_from(const Tensor& src);  // same shape; any devices and dtypes
  // Moves the data to device d in place: every handle sharing this tensor (a layer's member, a
  // module's registry) sees the new device. Drops the gradient; leaves the autograd history alone.
  void move_to_(Device d);
  void fill_(double value);

  // Autograd.
  bool requires_grad() const { return impl().requires_grad || impl().grad_fn != nullptr; }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor& set_requires_grad(bool on);  // on leaves only; off = frozen parameter
  Tensor grad() const;                 // undefined until a backward reached it
  void set_grad(const Tensor& g);
  void zero_grad();                    // drops the gradient
  Tensor detach() const;               // same storage, no history
  void backward(const Tensor& grad_output = Tensor()) const;  // scalar outputs take no argument

  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Gradient recording is on by default; NoGradGuard turns it off for its scope (this thread).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Checks used by every op; each throws ff::Error naming the op and the tensors.
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_dim(const char* op, const Tensor& t, int64_t dims, const char* what);
void check_float(const char* op, const Tensor& t);

// Calls f.template operator()<T>() with T = float or double according to dtype.
template <class F>
decltype(auto) dispatch_float(const char* op, DType t, F&& f) {
  if (t == DType::F32) return f.template operator()<float>();
  if (t == DType::F64) return f.template operator()<double>();
  throw Error(std::string(op) + ": dtype " + dtype_name(t) + " is not supported (f32 or f64 expected)");
}

}  // namespace ff
