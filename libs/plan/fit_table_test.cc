#include "libs/plan/fit_table.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "libs/files/source_path_test_util.h"

namespace lethe {
namespace {

std::string TestdataDir() {
  const std::string relative = "libs/plan/testdata";
  return SourcePath(relative);
}

// The table's row for model / training / method, split into cells.
std::vector<std::string> Row(const std::string& table, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(table, '\n')) {
    if (absl::StartsWith(line, key)) {
      std::vector<std::string> cells = absl::StrSplit(line, " | ");
      return cells;
    }
  }
  ADD_FAILURE() << "no row " << key << " in\n" << table;
  return {};
}

TEST(WhatFitsWhereTest, ReadmeGridHasEveryRowAndHonestVerdicts) {
  absl::StatusOr<FitGrid> grid = ReadmeFitGrid(TestdataDir());
  ASSERT_TRUE(grid.ok()) << grid.status();
  absl::StatusOr<std::string> table = WhatFitsWhereMarkdown(*grid);
  ASSERT_TRUE(table.ok()) << table.status();
  // 3 models x {full, LoRA} x {NPO_RT, NPO_KL}, a header and a rule.
  int rows = 0;
  for (absl::string_view line : absl::StrSplit(*table, '\n')) {
    if (absl::StartsWith(line, "| Llama-")) ++rows;
  }
  EXPECT_EQ(rows, 12) << *table;
  // Full bf16 training of 8B with a bf16 reference copy: 16 GB weights, 16
  // gradients, 32 AdamW, 16 reference = 80 GB before any activation: no
  // single 80 GB GPU holds it; 141 GB does. ZeRO-1 over 2 ranks keeps fp32
  // moments and master weights, 12 bytes a parameter over 2 (48 GB), more
  // than one rank's bf16 moments; over 8 ranks 12 GB, and 80 GB GPUs hold it.
  const std::vector<std::string> full_kl =
      Row(*table, "| Llama-3.1-8B | full | NPO_KL");
  ASSERT_EQ(full_kl.size(), 13u);
  EXPECT_EQ(full_kl[11], "8 GPUs");
  EXPECT_EQ(full_kl[12], "1 GPU |");
  EXPECT_GT(std::stod(full_kl[9]), std::stod(full_kl[8]));
  EXPECT_LT(std::stod(full_kl[10]), std::stod(full_kl[8]) - 15);
  // LoRA of the same model fits one 80 GB GPU.
  EXPECT_EQ(Row(*table, "| Llama-3.1-8B | LoRA r16 | NPO_KL")[11], "1 GPU");
  EXPECT_EQ(Row(*table, "| Llama-3.2-1B | full | NPO_RT")[11], "1 GPU");
  EXPECT_NE(table->find("ZeRO stage 1"), std::string::npos);
}

TEST(WhatFitsWhereTest, MissingConfigIsAnError) {
  EXPECT_FALSE(ReadmeFitGrid("/nonexistent").ok());
}

}  // namespace
}  // namespace lethe
