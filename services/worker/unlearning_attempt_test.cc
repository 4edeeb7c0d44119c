#include "services/worker/unlearning_attempt.h"

#include <torch/cuda.h>

#include "gtest/gtest.h"

namespace lethe {
namespace {

TEST(CheckComputeDeviceTest, AcceptsTheCpuAndRejectsNamesLibTorchDoesNotKnow) {
  EXPECT_EQ(*CheckComputeDevice("cpu"), "cpu");
  for (const char* bad : {"", "gpu", "cuda:x", "cuda:-1", "tpu", "cpu cuda"}) {
    const absl::StatusOr<std::string> device = CheckComputeDevice(bad);
    EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument)
        << "\"" << bad << "\": " << device.status();
  }
}

TEST(CheckComputeDeviceTest, CudaNeedsALibTorchWithCudaAndTheGpu) {
  if (torch::cuda::is_available()) {
    EXPECT_EQ(*CheckComputeDevice("cuda"), "cuda:0");
    const int64_t missing = static_cast<int64_t>(torch::cuda::device_count());
    EXPECT_EQ(
        CheckComputeDevice("cuda:" + std::to_string(missing)).status().code(),
        absl::StatusCode::kInvalidArgument);
    return;
  }
  for (const char* device : {"cuda", "cuda:0", "cuda:3"}) {
    const absl::StatusOr<std::string> checked = CheckComputeDevice(device);
    EXPECT_EQ(checked.status().code(), absl::StatusCode::kFailedPrecondition)
        << device;
    EXPECT_NE(checked.status().message().find("has no CUDA"), std::string::npos)
        << checked.status();
  }
}

TEST(RunUnlearningAttemptTest, RefusesASpecForAnotherDeviceBeforeLoading) {
  lethe::v1::Attempt attempt;
  attempt.set_attempt_id(1);
  attempt.set_world_size(1);
  attempt.mutable_spec()->set_device(lethe::v1::CUDA);
  attempt.mutable_spec()->set_model_dir("/nonexistent/model");
  attempt.set_device("cpu");
  int reports = 0;
  const absl::Status status = RunUnlearningAttempt(
      attempt, [&](const lethe::v1::ReportProgressRequest&) {
        ++reports;
        return false;
      });
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("spec.device is CUDA but this worker "
                                  "computes on cpu"),
            std::string::npos)
      << status;
  EXPECT_EQ(reports, 0);
}

}  // namespace
}  // namespace lethe
