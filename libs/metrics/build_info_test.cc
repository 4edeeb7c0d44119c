#include "libs/metrics/build_info.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/metrics/metrics_endpoint.h"

namespace lethe {
namespace {

TEST(BuildInfoTest, ExportsComponentAndVersion) {
  prometheus::Registry registry;
  RegisterBuildInfo(registry, "worker");
  const std::string text = SerializeToText(registry);
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("lethe_build_info{component=\"worker\",version=\"",
                         kLetheVersion, "\"} 1\n")))
      << text;
}

}  // namespace
}  // namespace lethe
