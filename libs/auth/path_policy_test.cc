#include "libs/auth/path_policy.h"

#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

namespace fs = std::filesystem;

class PathPolicyTest : public testing::Test {
 protected:
  void SetUp() override {
    root_ = absl::StrCat(testing::TempDir(), "/path_policy");
    fs::remove_all(root_);
    for (const char* dir :
         {"models/m", "sets/tofu", "out", "private/weights"}) {
      fs::create_directories(absl::StrCat(root_, "/", dir));
    }
    // A link inside the model root that leads out of it.
    fs::create_directory_symlink(root_ + "/private", root_ + "/models/escape");
    absl::StatusOr<PathPolicy> policy =
        PathPolicy::Create({.model_roots = {root_ + "/models"},
                            .data_roots = {root_ + "/sets"},
                            .output_roots = {root_ + "/out/"}});
    ASSERT_TRUE(policy.ok()) << policy.status();
    policy_ = std::make_unique<PathPolicy>(*policy);
  }

  v1::JobSpec Spec() const {
    v1::JobSpec spec;
    spec.set_model_dir(root_ + "/models/m");
    spec.set_data_dir(root_ + "/sets/tofu");
    spec.set_forget_split("forget10");
    spec.set_output_dir(root_ + "/out/job1");  // Need not exist yet.
    return spec;
  }

  std::string root_;
  std::unique_ptr<PathPolicy> policy_;
};

TEST_F(PathPolicyTest, PathsUnderTheirRootsPass) {
  EXPECT_TRUE(policy_->Check(Spec()).ok()) << policy_->Check(Spec());
  v1::JobSpec spec = Spec();
  spec.set_tokenizer_path(root_ + "/models/m/tokenizer.model");
  spec.mutable_evaluation()->set_retain_logs_path(root_ + "/sets/r.json");
  EXPECT_TRUE(policy_->Check(spec).ok()) << policy_->Check(spec);
}

TEST_F(PathPolicyTest, EscapesAreDeniedWithoutSayingWhatExists) {
  v1::JobSpec existing = Spec();
  existing.set_model_dir(root_ + "/private/weights");
  v1::JobSpec missing = Spec();
  missing.set_model_dir(root_ + "/private/nothing-here");
  const absl::Status a = policy_->Check(existing);
  const absl::Status b = policy_->Check(missing);
  EXPECT_TRUE(absl::IsPermissionDenied(a)) << a;
  EXPECT_EQ(a, b) << "the answer tells an existing path from a missing one";
  EXPECT_FALSE(absl::StrContains(a.message(), "private")) << a;
  EXPECT_TRUE(absl::StrContains(a.message(), "spec.model_dir")) << a;

  for (const std::string& model :
       {root_ + "/models/escape/weights",  // Through a symbolic link.
        root_ + "/models/m/../../private/weights", root_ + "/models-other",
        std::string("models/m"), std::string("/")}) {
    v1::JobSpec spec = Spec();
    spec.set_model_dir(model);
    EXPECT_TRUE(absl::IsPermissionDenied(policy_->Check(spec))) << model;
  }
  v1::JobSpec output = Spec();
  output.set_output_dir(root_ + "/sets/tofu/copy");  // A data root.
  EXPECT_TRUE(absl::IsPermissionDenied(policy_->Check(output)));
  v1::JobSpec split = Spec();
  split.set_forget_split("../../private/x");
  EXPECT_TRUE(absl::IsPermissionDenied(policy_->Check(split)));
  v1::JobSpec logs = Spec();
  logs.mutable_evaluation()->set_retain_logs_path(root_ + "/private/r.json");
  EXPECT_TRUE(absl::IsPermissionDenied(policy_->Check(logs)));
}

TEST(PathPolicyCreateTest, NoRootsRestrictNothingAndRootsMustBeAbsolute) {
  absl::StatusOr<PathPolicy> open = PathPolicy::Create({});
  ASSERT_TRUE(open.ok());
  EXPECT_FALSE(open->restricts_anything());
  v1::JobSpec spec;
  spec.set_model_dir("/anywhere");
  EXPECT_TRUE(open->Check(spec).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(
      PathPolicy::Create({.model_roots = {"relative"}}).status()));
}

}  // namespace
}  // namespace lethe
