// Multi-threaded prefetching batch loader.
#include "data/loader.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "engine/error.h"
#include "engine/rng.h"

namespace ff::data {

// One batch in flight. Workers claim its slots one example at a time, so the batch the consumer
// waits for is always finished first.
struct Loader::Job {
  LoaderPosition pos;
  std::vector<int64_t> examples;
  Tensor images, labels;
  int64_t claimed = 0, done = 0;
  std::string error;  // the first failure; stops further claims
  int64_t size() const { return (int64_t)examples.size(); }
};

Loader::Loader(std::shared_ptr<const Dataset> dataset, LoaderConfig cfg, LoaderPosition start)
    : dataset_(std::move(dataset)), cfg_(std::move(cfg)) {
  FF_CHECK(dataset_, "loader: no dataset");
  FF_CHECK(cfg_.batch_size > 0, "loader: batch_size ", cfg_.batch_size, " must be positive");
  FF_CHECK(cfg_.image_height > 0 && cfg_.image_width > 0, "loader: image size ", cfg_.image_height, "x", cfg_.image_width,
           " is empty");
  FF_CHECK(cfg_.workers >= 1 && cfg_.prefetch >= 1, "loader: workers (", cfg_.workers, ") and prefetch (", cfg_.prefetch,
           ") must be at least 1");
  FF_CHECK(cfg_.world_size >= 1 && cfg_.rank >= 0 && cfg_.rank < cfg_.world_size, "loader: rank ", cfg_.rank,
           " is outside world of ", cfg_.world_size);
  per_rank_ = (int64_t)dataset_->size() / cfg_.world_size;
  batches_per_epoch_ = cfg_.drop_last ? per_rank_ / cfg_.batch_size : (per_rank_ + cfg_.batch_size - 1) / cfg_.batch_size;
  FF_CHECK(batches_per_epoch_ > 0, "loader: ", dataset_->size(), " examples over ", cfg_.world_size, " ranks give no batch of ",
           cfg_.batch_size, cfg_.drop_last ? " (drop_last)" : "");
  seek(start);
}

Loader::~Loader() { stop_workers(); }

std::vector<int64_t> Loader::epoch_order(int64_t epoch) const {
  const int64_t n = (int64_t)dataset_->size();
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  if (cfg_.shuffle) {
    Rng rng = Rng::derived(cfg_.seed, 2 * (uint64_t)epoch);
    for (int64_t i = n - 1; i > 0; --i) std::swap(all[i], all[rng.below(i + 1)]);
  }
  std::vector<int64_t> mine(per_rank_);
  for (int64_t i = 0; i < per_rank_; ++i) mine[i] = all[i * cfg_.world_size + cfg_.rank];
  return mine;
}

std::shared_ptr<const std::vector<int64_t>> Loader::order_for(int64_t epoch) {
  if (order_epoch_ != epoch) {
    order_ = std::make_shared<const std::vector<int64_t>>(epoch_order(epoch));
    order_epoch_ = epoch;
  }
  return order_;
}

void Loader::schedule() {
  while ((int)window_.size() < cfg_.prefetch) {
    auto job = std::make_shared<Job>();
    job->pos = scheduled_;
    const auto order = order_for(scheduled_.epoch);
    const int64_t begin = scheduled_.batch * cfg_.batch_size, end = std::min(begin + cfg_.batch_size, per_rank_);
    job->examples.assign(order->begin() + begin, order->begin() + end);
    job->images = Tensor::empty({end - begin, 3, cfg_.image_height, cfg_.image_width}, DType::F32);
    job->labels = Tensor::empty({end - begin}, DType::I64);
    window_.push_back(std::move(job));
    if (++scheduled_.batch == batches_per_epoch_) scheduled_ = {scheduled_.epoch + 1, 0};
  }
  work_cv_.notify_all();
}

void Loader::load_example(const Job& job, int64_t slot) const {
  const int64_t index = job.examples[slot];
  Sample s = dataset_->get((size_t)index);
  Image img = std::move(s.image);
  FF_CHECK(img.height > 0 && img.width > 0 && (img.channels == 1 || img.channels == 3) &&
               img.pixels.size() == (size_t)img.height * img.width * img.channels,
           "image is ", img.height, "x", img.width, "x", img.channels, " with ", img.pixels.size(),
           " bytes (want 1 or 3 channels)");
  if (img.channels == 1) {
    Image rgb(img.height, img.width, 3);
    for (size_t i = 0; i < img.pixels.size(); ++i) std::fill_n(&rgb.pixels[i * 3], 3, img.pixels[i]);
    img = std::move(rgb);
  }
  const int H = cfg_.image_height, W = cfg_.image_width;
  if (img.height != H || img.width != W) img = resize_bilinear(img, H, W);
  // The example's own stream: its augmentation depends on (seed, epoch, index) only.
  Rng rng = Rng::derived(Rng::derived(cfg_.seed, 2 * (uint64_t)job.pos.epoch + 1).next(), (uint64_t)index);
  augment(img, cfg_.augment, rng);
  float* out = job.images.data<float>() + slot * 3 * H * W;
  const size_t plane = (size_t)H * W;
  for (size_t p = 0; p < plane; ++p)
    for (int c = 0; c < 3; ++c) out[c * plane + p] = (img.pixels[p * 3 + c] - 127.5f) / 127.5f;
  job.labels.data<int64_t>()[slot] = s.label;
}

void Loader::worker() {
  std::unique_lock lk(mu_);
  for (;;) {
    std::shared_ptr<Job> job;
    work_cv_.wait(lk, [&] {
      if (stop_) return true;
      for (auto& j : window_)
        if (j->error.empty() && j->claimed < j->size()) {
          job = j;
          return true;
        }
      return false;
    });
    if (stop_) return;
    const int64_t slot = job->claimed++;
    lk.unlock();
    std::string error;
    try {
      load_example(*job, slot);
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown exception";
    }
    if (!error.empty()) {
      const int64_t index = job->examples[slot];
      std::string name;
      try {
        name = dataset_->describe((size_t)index);
      } catch (...) {
        name = "?";
      }
      error = msg("loader: example ", index, " (", name, ") of epoch ", job->pos.epoch, " batch ", job->pos.batch, ": ", error);
    }
    lk.lock();
    if (!error.empty() && job->error.empty()) job->error = std::move(error);
    ++job->done;
    done_cv_.notify_all();
  }
}

Batch Loader::next() {
  std::unique_lock lk(mu_);
  auto job = window_.front();
  done_cv_.wait(lk, [&] { return !job->error.empty() || job->done == job->size(); });
  // A failed batch stays at the front, so every later call reports the same failure.
  if (!job->error.empty()) throw Error(job->error);
  window_.pop_front();
  next_ = job->pos.batch + 1 == batches_per_epoch_ ? LoaderPosition{job->pos.epoch + 1, 0}
                                                   : LoaderPosition{job->pos.epoch, job->pos.batch + 1};
  schedule();
  return {std::move(job->images), std::move(job->labels), job->pos, std::move(job->examples)};
}

LoaderPosition Loader::position() const {
  std::lock_guard lk(mu_);
  return next_;
}

void Loader::seek(LoaderPosition p) {
  FF_CHECK(p.epoch >= 0 && p.batch >= 0 && p.batch < batches_per_epoch_, "loader: position epoch ", p.epoch, " batch ", p.batch,
           " is outside an epoch of ", batches_per_epoch_, " batches");
  stop_workers();
  {
    std::lock_guard lk(mu_);
    window_.clear();
    next_ = scheduled_ = p;
    stop_ = false;
    schedule();
  }
  start_workers();
}

void Loader::start_workers() {
  for (int i = 0; i < cfg_.workers; ++i) threads_.emplace_back([this] { worker(); });
}

void Loader::stop_workers() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace ff::data
