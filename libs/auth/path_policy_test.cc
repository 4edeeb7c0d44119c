#include "libs/auth/path_policy.h"

#include <filesystem>
#include <map>
#include <string>
#include <vector>

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

TEST(PathPolicyCreateTest, LabelsNameWhereTheRootsComeFrom) {
  absl::StatusOr<PathPolicy> policy =
      PathPolicy::Create({.model_roots = {"/srv/models"}},
                         {.model = "the coordinator's model roots for tenant"});
  ASSERT_TRUE(policy.ok()) << policy.status();
  v1::JobSpec spec;
  spec.set_model_dir("/elsewhere");
  const absl::Status denied = policy->Check(spec);
  EXPECT_TRUE(absl::IsPermissionDenied(denied)) << denied;
  EXPECT_TRUE(absl::StrContains(denied.message(),
                                "(the coordinator's model roots for tenant)"))
      << denied;
  EXPECT_FALSE(absl::StrContains(denied.message(), "--allowed")) << denied;
  EXPECT_EQ(policy->roots().model_roots,
            std::vector<std::string>{"/srv/models"});
}

// Two tenants under the same global roots, each with a model root of its
// own: neither reaches the other's, both still reach the global data and
// output roots, and a tenant without a line gets the global roots.
class TenantPathPolicyTest : public testing::Test {
 protected:
  void SetUp() override {
    // Resolved, as the policy resolves its roots.
    root_ = fs::weakly_canonical(fs::path(testing::TempDir()) /
                                 "tenant_path_policy")
                .string();
    fs::remove_all(root_);
    for (const char* dir :
         {"models/a/m", "models/b/m", "models/shared", "sets", "out"}) {
      fs::create_directories(absl::StrCat(root_, "/", dir));
    }
    global_ = {.model_roots = {root_ + "/models"},
               .data_roots = {root_ + "/sets"},
               .output_roots = {root_ + "/out"}};
    tenants_["team-a"] = {
        .model_roots = std::vector<std::string>{root_ + "/models/a",
                                                root_ + "/models/shared"},
        .line = 5};
    tenants_["team-b"] = {
        .model_roots = std::vector<std::string>{root_ + "/models/b"},
        .output_roots = std::vector<std::string>{root_ + "/out/b"},
        .line = 6};
  }

  v1::JobSpec Spec(const std::string& model) const {
    v1::JobSpec spec;
    spec.set_model_dir(root_ + model);
    spec.set_data_dir(root_ + "/sets");
    spec.set_output_dir(root_ + "/out/b/job");
    return spec;
  }

  std::string root_;
  PathRoots global_;
  std::map<std::string, TenantRoots> tenants_;
};

TEST_F(TenantPathPolicyTest, EachTenantReachesOnlyItsOwnRoots) {
  absl::StatusOr<TenantPathPolicy> policy =
      TenantPathPolicy::Create(global_, tenants_);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE(policy->restricts_anything());
  EXPECT_TRUE(policy->Check("team-a", Spec("/models/a/m")).ok());
  EXPECT_TRUE(policy->Check("team-a", Spec("/models/shared")).ok());
  EXPECT_TRUE(policy->Check("team-b", Spec("/models/b/m")).ok());

  // A's token naming B's model: refused, the same for a path that exists
  // and one that does not, naming A's roots only.
  const absl::Status existing = policy->Check("team-a", Spec("/models/b/m"));
  const absl::Status missing = policy->Check("team-a", Spec("/models/b/nope"));
  EXPECT_TRUE(absl::IsPermissionDenied(existing)) << existing;
  EXPECT_EQ(existing, missing);
  EXPECT_TRUE(absl::StrContains(existing.message(), "spec.model_dir") &&
              absl::StrContains(existing.message(), root_ + "/models/a") &&
              absl::StrContains(existing.message(), "tenant \"team-a\""))
      << existing;
  EXPECT_FALSE(absl::StrContains(existing.message(), "/models/b")) << existing;
  EXPECT_TRUE(
      absl::IsPermissionDenied(policy->Check("team-b", Spec("/models/a/m"))));
  EXPECT_TRUE(absl::IsPermissionDenied(
      policy->Check("team-b", Spec("/models/b/../a/m"))));

  // Kinds a tenant does not name fall back to the global flags: A writes
  // anywhere under out/, B only under out/b.
  v1::JobSpec a_output = Spec("/models/a/m");
  a_output.set_output_dir(root_ + "/out/elsewhere");
  EXPECT_TRUE(policy->Check("team-a", a_output).ok());
  v1::JobSpec b_output = Spec("/models/b/m");
  b_output.set_output_dir(root_ + "/out/elsewhere");
  const absl::Status b_denied = policy->Check("team-b", b_output);
  EXPECT_TRUE(absl::IsPermissionDenied(b_denied)) << b_denied;
  EXPECT_TRUE(absl::StrContains(b_denied.message(), "output_roots of tenant"))
      << b_denied;
  v1::JobSpec data = Spec("/models/a/m");
  data.set_data_dir(root_ + "/models/a/m");
  const absl::Status data_denied = policy->Check("team-a", data);
  EXPECT_TRUE(absl::StrContains(data_denied.message(), "--allowed_data_roots"))
      << data_denied;

  // A tenant without a line (and "", no tokens) gets the global roots.
  EXPECT_TRUE(policy->Check("ops", Spec("/models/b/m")).ok());
  EXPECT_TRUE(policy->Check("", Spec("/models/a/m")).ok());
  EXPECT_EQ(policy->For("ops").roots().model_roots,
            std::vector<std::string>{root_ + "/models"});
  EXPECT_EQ(policy->For("team-b").roots().model_roots,
            std::vector<std::string>{root_ + "/models/b"});
  EXPECT_EQ(policy->For("team-b").roots().data_roots,
            std::vector<std::string>{root_ + "/sets"});
}

TEST_F(TenantPathPolicyTest, TenantRootsMustLieWithinTheGlobalOnes) {
  for (const std::string& outside :
       {root_ + "/sets/m", root_ + "/models/../out", std::string("/"),
        root_ + "/models-other"}) {
    tenants_["team-a"].model_roots = std::vector<std::string>{outside};
    const absl::Status status =
        TenantPathPolicy::Create(global_, tenants_).status();
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << outside << ": " << status;
    EXPECT_TRUE(absl::StrContains(status.message(), "line 5") &&
                absl::StrContains(status.message(), "team-a") &&
                absl::StrContains(status.message(), "--allowed_model_roots"))
        << status;
  }
  // A symbolic link inside the global root that leads out is outside too.
  fs::create_directory_symlink(root_ + "/sets", root_ + "/models/link");
  tenants_["team-a"].model_roots =
      std::vector<std::string>{root_ + "/models/link"};
  EXPECT_TRUE(absl::IsInvalidArgument(
      TenantPathPolicy::Create(global_, tenants_).status()));
  // Without global roots of a kind, a tenant's roots of it are its own.
  tenants_["team-a"].model_roots = std::vector<std::string>{"/anywhere"};
  global_.model_roots.clear();
  absl::StatusOr<TenantPathPolicy> policy =
      TenantPathPolicy::Create(global_, tenants_);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE(
      absl::IsPermissionDenied(policy->Check("team-a", Spec("/models/a/m"))));
  EXPECT_TRUE(policy->Check("ops", Spec("/models/a/m")).ok());
}

TEST(TenantPathPolicyCreateTest, NothingConfiguredRestrictsNothing) {
  absl::StatusOr<TenantPathPolicy> open = TenantPathPolicy::Create({}, {});
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_FALSE(open->restricts_anything());
  absl::StatusOr<TenantPathPolicy> one = TenantPathPolicy::Create(
      {}, {{"t", {.data_roots = std::vector<std::string>{"/d"}}}});
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_TRUE(one->restricts_anything());
  EXPECT_TRUE(absl::IsInvalidArgument(
      TenantPathPolicy::Create(
          {}, {{"t", {.data_roots = std::vector<std::string>{"rel"}}}})
          .status()));
}

}  // namespace
}  // namespace lethe
