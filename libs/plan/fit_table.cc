#include "libs/plan/fit_table.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "libs/status/status_macros.h"

namespace lethe {

absl::StatusOr<FitGrid> ReadmeFitGrid(const std::string& config_dir) {
  FitGrid grid;
  for (const auto& [name, dir] :
       std::vector<std::pair<std::string, std::string>>{
           {"Llama-3.2-1B", "llama-3.2-1b"},
           {"Llama-3.2-3B", "llama-3.2-3b"},
           {"Llama-3.1-8B", "llama-3.1-8b"}}) {
    ASSIGN_OR_RETURN(LlamaConfig config,
                     ReadLlamaConfig(config_dir + "/" + dir + "/config.json"));
    grid.models.push_back({name, std::move(config)});
  }
  grid.methods = {UnlearningMethod::kNpoRt, UnlearningMethod::kNpoKl};
  grid.lora_ranks = {0, 16};
  grid.lora_target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                              "gate_proj", "up_proj", "down_proj"};
  grid.world_sizes = {1, 2, 8};
  grid.zero_stage = 1;
  grid.devices = {{"80 GB", 81559LL << 20}, {"141 GB", 143771LL << 20}};
  grid.base.weights_dtype = "bf16";
  grid.base.batch_size = 4;
  grid.base.max_length = 512;
  grid.base.activation_checkpointing = true;
  grid.base.device = PlanDevice::kCuda;
  return grid;
}

absl::StatusOr<std::string> WhatFitsWhereMarkdown(const FitGrid& grid) {
  std::vector<std::string> header = {"Model",
                                     "Training",
                                     "Method",
                                     "Weights",
                                     "Grads + AdamW",
                                     "Reference",
                                     "Activations + logits",
                                     "Ref. log-prob pass"};
  for (int world_size : grid.world_sizes) {
    header.push_back(absl::StrCat("Per rank, ", world_size,
                                  world_size == 1 ? " GPU" : " GPUs"));
  }
  for (const FitDevice& device : grid.devices) {
    header.push_back(absl::StrCat("Fits ", device.name));
  }
  std::string out = absl::StrCat("| ", absl::StrJoin(header, " | "), " |\n|");
  for (size_t i = 0; i < header.size(); ++i) {
    absl::StrAppend(&out, i < 3 ? "---|" : "---:|");
  }
  absl::StrAppend(&out, "\n");
  for (const FitModel& model : grid.models) {
    for (int rank : grid.lora_ranks) {
      for (UnlearningMethod method : grid.methods) {
        PlanOptions options = grid.base;
        options.method = method;
        options.params = DefaultObjectiveParams(method);
        options.lora_rank = rank;
        options.lora_target_modules =
            rank > 0 ? grid.lora_target_modules : std::vector<std::string>{};
        std::vector<std::string> cells = {
            model.name,
            rank > 0 ? absl::StrCat("LoRA r", rank) : std::string("full"),
            UnlearningMethodName(method)};
        std::vector<int64_t> totals;
        for (size_t w = 0; w < grid.world_sizes.size(); ++w) {
          options.world_size = grid.world_sizes[w];
          options.zero_stage = options.world_size > 1 ? grid.zero_stage : 0;
          ASSIGN_OR_RETURN(const MemoryPlan plan,
                           PlanMemory(model.config, options));
          if (w == 0) {
            cells.push_back(Gib(plan.weights, 1));
            cells.push_back(Gib(plan.gradients + plan.optimizer_state, 1));
            cells.push_back(Gib(plan.reference_model, 1));
            cells.push_back(Gib(plan.activations + plan.logits, 1));
            cells.push_back(plan.reference_pass_bytes > 0
                                ? Gib(plan.reference_pass_bytes, 1)
                                : std::string("-"));
          }
          totals.push_back(plan.total_bytes());
          cells.push_back(Gib(plan.total_bytes(), 1));
        }
        for (const FitDevice& device : grid.devices) {
          // The fewest GPUs of the grid whose per-rank plan fits.
          std::string verdict = "no";
          for (size_t w = 0; w < totals.size(); ++w) {
            if (totals[w] <= device.bytes) {
              verdict =
                  absl::StrCat(grid.world_sizes[w],
                               grid.world_sizes[w] == 1 ? " GPU" : " GPUs");
              break;
            }
          }
          cells.push_back(verdict);
        }
        absl::StrAppend(&out, "| ", absl::StrJoin(cells, " | "), " |\n");
      }
    }
  }
  const PlanOptions& base = grid.base;
  absl::StrAppendFormat(
      &out,
      "\nGiB per rank (2^30 bytes). %s weights, batch %d x %d tokens, "
      "activation checkpointing %s, loss chunking %s, AdamW. The per-rank "
      "total is the larger of the training step and the reference log-prob "
      "pass that NPO-family methods run once before training (no gradients, "
      "batches of %d, so its logits can outweigh training's). "
      "%s\n",
      base.weights_dtype, base.batch_size, base.max_length,
      base.activation_checkpointing ? "on" : "off",
      base.loss_chunk_tokens > 0
          ? absl::StrCat(base.loss_chunk_tokens, " tokens")
          : std::string("off"),
      base.reference_batch_size,
      grid.zero_stage > 0
          ? absl::StrCat(
                "Data parallelism replicates the weights on every rank; on "
                "more than one rank ZeRO stage ",
                grid.zero_stage,
                " shards AdamW's state (fp32 moments, and fp32 master "
                "weights for bf16 weights: 12 bytes per parameter over the "
                "ranks, against 4 for one rank's bf16 moments), so per-rank "
                "memory shrinks by the optimizer state only.")
          : std::string(
                "Data parallelism replicates the model on every rank (no "
                "ZeRO), so per-rank memory does not shrink with more GPUs "
                "(it grows by the all-reduce buckets)."));
  return out;
}

}  // namespace lethe
