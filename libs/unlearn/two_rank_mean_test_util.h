// Tests only: the mean over two data-parallel ranks run as two threads of one
// process, a stand-in for c10d's all-reduce where a test needs no second
// process (the real Gloo path is tested in libs/dist and the services).
//
//   TwoRankMean mean;  // Shared by both threads.
//   hooks.averager = [&mean, rank](std::vector<at::Tensor>& tensors) {
//     return mean.Average(rank, tensors);
//   };
//
// Average blocks until both ranks have called it, then writes the mean into
// each rank's tensors in place (as an all-reduce does, so gradient hooks see
// it). Both ranks must pass equally many tensors of equal shapes.
#ifndef LETHE_LIBS_UNLEARN_TWO_RANK_MEAN_TEST_UTIL_H_
#define LETHE_LIBS_UNLEARN_TWO_RANK_MEAN_TEST_UTIL_H_

#include <torch/types.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/status/status.h"

namespace lethe {

class TwoRankMean {
 public:
  absl::Status Average(int rank, std::vector<at::Tensor>& tensors) {
    std::unique_lock<std::mutex> lock(mutex_);
    const int64_t round = round_;
    inputs_[rank].clear();
    for (const at::Tensor& tensor : tensors) {
      inputs_[rank].push_back(tensor.detach().clone());
    }
    if (++arrived_ == 2) {
      result_.clear();
      for (size_t i = 0; i < tensors.size(); ++i) {
        result_.push_back((inputs_[0][i] + inputs_[1][i]) / 2);
      }
      arrived_ = 0;
      ++round_;
      changed_.notify_all();
    } else {
      changed_.wait(lock, [&] { return round_ != round; });
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      tensors[i].detach().copy_(result_[i]);
    }
    return absl::OkStatus();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  int64_t round_ = 0;
  std::vector<at::Tensor> inputs_[2];
  std::vector<at::Tensor> result_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_TWO_RANK_MEAN_TEST_UTIL_H_
