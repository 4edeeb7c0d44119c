// "What fits where": the memory plan (memory_plan.h) of a grid of jobs --
// models x full training or LoRA x methods -- against GPU sizes and rank
// counts, as a Markdown table for the README.
//
//   ASSIGN_OR_RETURN(std::string table,
//                    WhatFitsWhereMarkdown(ReadmeFitGrid(testdata_dir)));
//
// Lethe's data parallelism replicates the weights on every rank; with more
// than one rank the grid's ZeRO stage shards AdamW's state (fp32 moments
// and, for bf16/fp16 weights, fp32 master weights) over the ranks, so the
// per-rank columns shrink by the optimizer state only.
#ifndef LETHE_LIBS_PLAN_FIT_TABLE_H_
#define LETHE_LIBS_PLAN_FIT_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/model/llama_config.h"
#include "libs/plan/memory_plan.h"

namespace lethe {

struct FitModel {
  std::string name;  // e.g. "Llama-3.2-1B".
  LlamaConfig config;
};

struct FitDevice {
  std::string name;   // e.g. "80 GB".
  int64_t bytes = 0;  // Usable memory, as the driver reports it.
};

struct FitGrid {
  std::vector<FitModel> models;
  std::vector<UnlearningMethod> methods;
  std::vector<int> lora_ranks;  // 0: full training.
  std::vector<std::string> lora_target_modules;
  std::vector<int> world_sizes;
  // ZeRO stage (memory_plan.h) for world sizes above 1; one rank runs
  // replicated.
  int zero_stage = 0;
  std::vector<FitDevice> devices;
  // Everything else (weights dtype, batch, length, memory savers, device).
  PlanOptions base;
};

// The README's grid: Llama-3.2-1B, Llama-3.2-3B and Llama-3.1-8B (their
// config.json in `config_dir`/llama-3.2-1b etc.), full vs LoRA rank 16 on
// all 7 projections, NPO_RT vs NPO_KL, bf16 weights, batch 4 x 512 tokens,
// activation checkpointing, CUDA ranks; 1, 2 and 8 GPUs of 80 GB (H100:
// 81,559 MiB) and 141 GB (H200: 143,771 MiB), ZeRO stage 1 on 2 and 8.
absl::StatusOr<FitGrid> ReadmeFitGrid(const std::string& config_dir);

// One row per model x training x method: the per-rank categories in GiB
// (one rank), the per-rank total for each world size, and for each device
// the fewest ranks of the grid on which it fits ("1 GPU", "8 GPUs" or
// "no"), then a line on the settings.
absl::StatusOr<std::string> WhatFitsWhereMarkdown(const FitGrid& grid);

}  // namespace lethe

#endif  // LETHE_LIBS_PLAN_FIT_TABLE_H_
