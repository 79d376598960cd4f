// Multi-threaded prefetching batch loader over any Dataset: seeded shuffling, rank sharding,
// augmentation, resumable position, bounded memory.
#pragma once

#include <condition_variable>
#include <cstddef>  // data/image.h uses size_t without including it
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"
#include "engine/tensor.h"

namespace ff::data {

struct LoaderConfig {
  int64_t batch_size = 128;
  int image_height = 112, image_width = 112;  // other sizes are resized (bilinear)
  int workers = 2;
  int prefetch = 4;  // batches built or being built ahead of the consumer, at most
  bool shuffle = true;
  bool drop_last = true;  // drop each epoch's final partial batch
  int rank = 0, world_size = 1;
  uint64_t seed = 0;
  AugmentConfig augment;  // horizontal flip on, stronger augmentations off
};

// Where the stream stands: the next batch next() returns.
struct LoaderPosition {
  int64_t epoch = 0, batch = 0;
  bool operator==(const LoaderPosition&) const = default;
};

struct Batch {
  Tensor images;  // f32 [B, 3, H, W], (x - 127.5) / 127.5
  Tensor labels;  // i64 [B]
  LoaderPosition position;
  std::vector<int64_t> examples;  // dataset indices
};

// An endless stream of batches, epoch after epoch. Every example's pixels depend only on
// (seed, epoch, example index), never on worker count or timing, so runs replay exactly and a
// run resumed from position() sees the batches it would have seen.
//
// Epoch e: a permutation of the dataset from Rng(seed, e) (or the identity when shuffle is off);
// rank r of w takes entries r, r + w, r + 2w, ... of its first floor(N / w) * w entries, so every
// rank gets as many examples as every other and the ranks are disjoint; then batches of batch_size.
class Loader {
 public:
  Loader(std::shared_ptr<const Dataset> dataset, LoaderConfig cfg, LoaderPosition start = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch. A failure to read or decode an example is thrown here as ff::Error naming
  // the example; the loader stays failed until seek().
  Batch next();
  LoaderPosition position() const;
  // Continues from p (drops the batches in flight).
  void seek(LoaderPosition p);

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t examples_per_epoch() const { return per_rank_; }  // this rank's, before drop-last
  // The dataset indices of this rank's examples in epoch e, in delivery order.
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  const LoaderConfig& config() const { return cfg_; }

 private:
  struct Job;
  void start_workers();
  void stop_workers();
  void worker();
  void schedule();  // tops the window up to `prefetch` jobs; needs mu_
  std::shared_ptr<const std::vector<int64_t>> order_for(int64_t epoch);  // needs mu_
  void load_example(const Job& job, int64_t slot) const;

  std::shared_ptr<const Dataset> dataset_;
  LoaderConfig cfg_;
  int64_t per_rank_ = 0, batches_per_epoch_ = 0;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<std::shared_ptr<Job>> window_;  // in delivery order
  LoaderPosition next_, scheduled_;          // next to deliver; next to schedule
  std::shared_ptr<const std::vector<int64_t>> order_;  // the epoch order last used
  int64_t order_epoch_ = -1;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ff::data
