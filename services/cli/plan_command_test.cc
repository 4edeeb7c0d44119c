#include "services/cli/plan_command.h"

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/files/source_path_test_util.h"
#include "libs/plan/memory_plan.h"

namespace lethe {
namespace {

std::string ModelDir(const std::string& name) {
  const std::string relative = "libs/plan/testdata/" + name;
  return SourcePath(relative);
}

TEST(PlanCommandTest, PrintsSettingsCategoriesAndTotalPerRank) {
  v1::JobSpec spec;
  spec.set_model_dir(ModelDir("llama-3.1-8b"));
  spec.set_method(v1::NPO_KL);
  spec.set_weights_dtype("bf16");
  spec.set_world_size(8);
  spec.set_max_length(512);
  spec.mutable_memory()->set_activation_checkpointing(true);
  spec.mutable_lora()->set_rank(16);
  spec.mutable_lora()->add_target_modules("q_proj");
  spec.mutable_lora()->add_target_modules("v_proj");
  absl::StatusOr<std::string> text = PlanCommand(spec);
  ASSERT_TRUE(text.ok()) << text.status();
  for (const char* expected :
       {"method NPO_KL", "LoRA rank 16 on q_proj, v_proj", "weights bf16",
        "batch 4 x 512 tokens", "world size 8", "activation checkpointing",
        "parameters 8030261248", "optimizer state (AdamW)", "reference model",
        "total per rank", "Each of the 8 ranks"}) {
    EXPECT_NE(text->find(expected), std::string::npos)
        << expected << " missing from\n"
        << *text;
  }
  // The printed total is the plan's.
  absl::StatusOr<MemoryPlan> plan = PlanMemoryForJob(spec);
  ASSERT_TRUE(plan.ok());
  const size_t total = text->find("total per rank");
  ASSERT_NE(total, std::string::npos);
  const std::string line = text->substr(total, text->find('\n', total) - total);
  EXPECT_TRUE(absl::EndsWith(line, " " + Gib(plan->total_bytes()))) << line;
}

TEST(PlanCommandTest, FullTrainingDefaultsAndErrors) {
  v1::JobSpec spec;
  spec.set_model_dir(ModelDir("llama-3.2-1b"));
  spec.set_method(v1::NPO_RT);
  absl::StatusOr<std::string> text = PlanCommand(spec);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_NE(text->find("full training, weights fp32"), std::string::npos)
      << *text;
  EXPECT_NE(text->find("batch 4 x 256 tokens"), std::string::npos) << *text;
  EXPECT_NE(text->find("memory savers: none"), std::string::npos) << *text;
  EXPECT_EQ(text->find("Each of"), std::string::npos) << *text;

  spec.set_weights_dtype("int8");
  EXPECT_EQ(PlanCommand(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec.set_weights_dtype("");
  spec.set_model_dir(ModelDir("missing"));
  EXPECT_FALSE(PlanCommand(spec).ok());
  spec.set_model_dir(ModelDir("llama-3.2-1b"));
  spec.set_method(v1::METHOD_UNSPECIFIED);
  EXPECT_FALSE(PlanCommand(spec).ok());
}

}  // namespace
}  // namespace lethe
