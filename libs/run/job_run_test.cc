#include "libs/run/job_run.h"

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/eval/open_unlearning_logs.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/files/file_io.h"
#include "libs/files/generation_fence.h"
#include "libs/jobs/job_spec.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/model/safetensors.h"
#include "libs/model/tiny_llama.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/unlearn/checkpoint.h"
#include "libs/unlearn/pga.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

// A tiny random model and tiny TOFU data, made once for every test;
// forget10 and retain90 are the fixture's sets under the names jobs use.
struct Inputs {
  std::string model_dir;
  std::string data_dir;
};

const Inputs& SharedInputs() {
  static const Inputs* inputs = [] {
    const std::string root = testing::TempDir() + "/job_run_inputs";
    std::filesystem::remove_all(root);
    auto* made = new Inputs{root + "/model", root + "/data"};
    EXPECT_TRUE(WriteTinyTofuModel(made->model_dir, 5).ok());
    EXPECT_TRUE(WriteTinyTofuData(made->data_dir, 8).ok());
    std::filesystem::copy_file(made->data_dir + "/forget10_perturbed.json",
                               made->data_dir + "/forget10.json");
    std::filesystem::copy_file(made->data_dir + "/retain_perturbed.json",
                               made->data_dir + "/retain90.json");
    return made;
  }();
  return *inputs;
}

// A completed, valid NPO_RT spec writing to a fresh `name` directory.
v1::JobSpec TinySpec(const std::string& name, v1::Method method) {
  const std::string output = testing::TempDir() + "/job_run/" + name;
  std::filesystem::remove_all(output);
  std::filesystem::create_directories(output);
  v1::JobSpec spec;
  spec.set_model_dir(SharedInputs().model_dir);
  spec.set_data_dir(SharedInputs().data_dir);
  spec.set_forget_split("forget10");
  spec.set_method(method);
  spec.mutable_optimizer()->set_learning_rate(1e-2);
  spec.mutable_optimizer()->set_max_grad_norm(1);
  spec.mutable_optimizer()->set_seed(4);
  spec.set_num_epochs(2);
  spec.set_per_device_batch_size(1);
  spec.set_threads_per_worker(1);
  spec.set_output_dir(output);
  return JobSpecWithDefaults(spec);
}

absl::StatusOr<JobRunResult> ValidateAndRun(
    const v1::JobSpec& spec, const RunCallbacks& callbacks = {}) {
  const absl::Status valid = ValidateJobSpec(spec);
  if (!valid.ok()) return valid;
  return RunJobSpec(spec, {}, callbacks);
}

TEST(RunJobSpecTest, WritesTheModelItsTokenizerTheLogAndTheReferenceCache) {
  const v1::JobSpec spec = TinySpec("outputs", v1::NPO_RT);
  int steps_seen = 0;
  double reference_seconds = -1;
  std::vector<std::string> lines;
  absl::StatusOr<JobRunResult> result = ValidateAndRun(
      spec, {.on_step =
                 [&](const RunStep& step) {
                   ++steps_seen;
                   if (step.record.step == 1) {
                     reference_seconds = step.reference_cache_seconds;
                   } else {
                     EXPECT_EQ(step.reference_cache_seconds, 0);
                   }
                   return absl::OkStatus();
                 },
             .log = [&](const std::string& line) { lines.push_back(line); }});
  ASSERT_TRUE(result.ok()) << result.status();
  absl::StatusOr<std::vector<TofuRecord>> forget =
      ReadTofuSplit(spec.data_dir(), spec.forget_split());
  ASSERT_TRUE(forget.ok()) << forget.status();
  ASSERT_GE(forget->size(), 2u);
  const int64_t steps = 2 * forget->size();  // Two epochs, batches of 1.
  EXPECT_EQ(result->training.total_steps, steps);
  EXPECT_EQ(steps_seen, steps);
  EXPECT_GT(reference_seconds, 0) << "NPO_RT computes the reference cache";
  EXPECT_EQ(result->model_dir, spec.output_dir() + "/model");
  EXPECT_TRUE(result->evaluation.empty()) << "the spec asks for none";
  EXPECT_GT(MaxAbsDifference(ModelWeights(result->model_dir),
                             ModelWeights(SharedInputs().model_dir)),
            1e-4)
      << "the run did not train";
  EXPECT_EQ(ReadFileToString(result->model_dir + "/tokenizer.model").value(),
            ReadFileToString(spec.tokenizer_path()).value());
  EXPECT_TRUE(
      std::filesystem::exists(spec.output_dir() + "/reference_log_probs.json"));
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(
      lines[0].find(absl::StrCat("with NPO_RT: ", forget->size(), " forget")),
      std::string::npos)
      << lines[0];

  const nlohmann::json log = nlohmann::json::parse(
      ReadFileToString(spec.output_dir() + "/unlearning_log.json").value());
  EXPECT_EQ(log["method"], "NPO_RT");
  EXPECT_EQ(log["spec"]["output_dir"], spec.output_dir());
  ASSERT_EQ(log["steps"].size(), static_cast<size_t>(steps));
  EXPECT_NEAR(log["steps"][0]["components"]["npo_weight_mean"].get<double>(),
              1.0, 1e-6)
      << "at the reference the NPO weight is exactly 1";
}

// Explicit presence: alpha 0 is a value, not "the default". NPO_RT with
// alpha 0 is NPO exactly (the retain term is multiplied by 0), and differs
// from NPO_RT with its default alpha 1. Padded batches: packed, NPO_RT's
// forget sequences would share rows with its retain ones and NPO's not,
// which moves where rounding falls.
TEST(RunJobSpecTest, AlphaZeroIsAValueNotTheDefault) {
  v1::JobSpec no_retain = TinySpec("alpha_zero", v1::NPO_RT);
  no_retain.mutable_method_params()->set_alpha(0);
  v1::JobSpec npo = TinySpec("npo", v1::NPO);
  v1::JobSpec npo_rt = TinySpec("alpha_default", v1::NPO_RT);
  for (v1::JobSpec* spec : {&no_retain, &npo, &npo_rt}) {
    spec->mutable_memory()->set_pack_row_length(0);
  }
  for (const v1::JobSpec* spec :
       std::vector<const v1::JobSpec*>{&no_retain, &npo, &npo_rt}) {
    absl::StatusOr<JobRunResult> result = ValidateAndRun(*spec);
    ASSERT_TRUE(result.ok()) << result.status();
  }
  EXPECT_EQ(MaxAbsDifference(ModelWeights(no_retain.output_dir() + "/model"),
                             ModelWeights(npo.output_dir() + "/model")),
            0);
  EXPECT_GT(MaxAbsDifference(ModelWeights(no_retain.output_dir() + "/model"),
                             ModelWeights(npo_rt.output_dir() + "/model")),
            1e-5);
}

// IHL through the job path: the retain split is loaded for its NLL term, the
// log names the method and both terms, and no reference cache is made.
TEST(RunJobSpecTest, RunsIhlWithItsForgetAndRetainTerms) {
  const v1::JobSpec spec = TinySpec("ihl", v1::IHL);
  absl::StatusOr<JobRunResult> result = ValidateAndRun(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(MaxAbsDifference(ModelWeights(result->model_dir),
                             ModelWeights(SharedInputs().model_dir)),
            1e-4)
      << "the run did not train";
  EXPECT_FALSE(
      std::filesystem::exists(spec.output_dir() + "/reference_log_probs.json"));
  const nlohmann::json log = nlohmann::json::parse(
      ReadFileToString(spec.output_dir() + "/unlearning_log.json").value());
  EXPECT_EQ(log["method"], "IHL");
  ASSERT_FALSE(log["steps"].empty());
  const nlohmann::json& components = log["steps"][0]["components"];
  ASSERT_TRUE(components.contains("forget_ihl")) << components;
  ASSERT_TRUE(components.contains("retain_nll")) << components;
  // 1 + p(y) - max p(v) lies in (0, 2); the loss is their sum, weights 1.
  const double ihl = components["forget_ihl"].get<double>();
  EXPECT_GT(ihl, 0);
  EXPECT_LT(ihl, 2);
  EXPECT_NEAR(log["steps"][0]["loss"].get<double>(),
              ihl + components["retain_nll"].get<double>(), 1e-5);
}

// PGA through the job path with LoRA (the paper's setting): forget10 paired
// with the fixture's holdout10, an alignment and a CE term at every step, and
// the rank-2 projection written next to the merged model, loadable, at every
// aligned depth.
TEST(RunJobSpecTest, PgaAlignsForgetWithHoldoutAndExportsItsProjection) {
  v1::JobSpec spec = TinySpec("pga", v1::PGA);
  ASSERT_EQ(spec.holdout_split(), "holdout10");
  spec.mutable_lora()->set_rank(4);
  spec.mutable_lora()->set_alpha(8);
  spec.mutable_method_params()->add_pga_depths(1);
  spec.mutable_method_params()->add_pga_depths(2);
  spec.mutable_method_params()->set_pga_projection_rank(2);
  absl::StatusOr<JobRunResult> result = ValidateAndRun(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(MaxAbsDifference(ModelWeights(result->model_dir),
                             ModelWeights(SharedInputs().model_dir)),
            1e-6)
      << "the run did not train";
  const nlohmann::json log = nlohmann::json::parse(
      ReadFileToString(spec.output_dir() + "/unlearning_log.json").value());
  EXPECT_EQ(log["method"], "PGA");
  ASSERT_FALSE(log["steps"].empty());
  const nlohmann::json& components = log["steps"][0]["components"];
  ASSERT_TRUE(components.contains("align")) << components;
  ASSERT_TRUE(components.contains("ce")) << components;
  EXPECT_NEAR(
      log["steps"][0]["loss"].get<double>(),
      components["align"].get<double>() + components["ce"].get<double>(), 1e-5);
  EXPECT_TRUE(std::filesystem::exists(CheckpointDir(spec) +
                                      "/pga-probes-epoch-0.safetensors"));

  absl::StatusOr<ActivationProjection> projection =
      LoadActivationProjection(result->model_dir);
  ASSERT_TRUE(projection.ok()) << projection.status();
  EXPECT_EQ(projection->depths, (std::vector<int>{1, 2}));
  for (const at::Tensor& basis : projection->basis) {
    EXPECT_EQ(basis.size(1), 2);
    // Orthonormal columns.
    EXPECT_TRUE(torch::allclose(basis.t().mm(basis),
                                torch::eye(2, basis.options()), 0, 1e-9));
  }

  spec = TinySpec("pga_rank", v1::PGA);
  spec.mutable_method_params()->set_pga_projection_rank(100000);
  const absl::Status too_wide = ValidateAndRun(spec).status();
  EXPECT_EQ(too_wide.code(), absl::StatusCode::kInvalidArgument) << too_wide;
  EXPECT_NE(too_wide.message().find("hidden size"), std::string::npos)
      << too_wide;
}

// MSA through the job path, three runs on one output directory: the
// fine-tunes of theta_0 are made once and reused (their checkpoints do not
// depend on alpha and beta), and the results are the arithmetic of the same
// vectors: with F = theta_1 - theta_0 and R = theta_2 - theta_0,
// A (alpha 1, beta 1) = D - F + R, B (alpha 2, beta 1) = D - 2F + R and
// C (alpha 1, beta 0) = D - F, so A - B = D - C = F.
TEST(RunJobSpecTest, MsaCombinesFineTunesOfItsBaseModel) {
  const std::string base = testing::TempDir() + "/job_run_msa_base";
  std::filesystem::remove_all(base);
  ASSERT_TRUE(WriteTinyTofuModel(base, 6).ok());
  v1::JobSpec spec = TinySpec("msa", v1::MSA);
  spec.set_base_model_dir(base);
  absl::StatusOr<JobRunResult> a = ValidateAndRun(spec);
  ASSERT_TRUE(a.ok()) << a.status();
  const std::vector<at::Tensor> weights_a = ModelWeights(a->model_dir);
  EXPECT_EQ(static_cast<int64_t>(a->training.steps.size()),
            a->training.total_steps)
      << "both stages trained";
  EXPECT_TRUE(
      std::filesystem::exists(spec.output_dir() + "/checkpoints/msa-forget"));
  EXPECT_TRUE(
      std::filesystem::exists(spec.output_dir() + "/checkpoints/msa-retain"));
  const nlohmann::json log = nlohmann::json::parse(
      ReadFileToString(spec.output_dir() + "/unlearning_log.json").value());
  EXPECT_EQ(log["method"], "MSA");
  EXPECT_EQ(log["steps"][0]["components"]["msa_stage"], 1);
  EXPECT_EQ(log["steps"].back()["components"]["msa_stage"], 2);

  spec.mutable_method_params()->set_alpha(2);
  absl::StatusOr<JobRunResult> b = ValidateAndRun(spec);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->training.steps.empty()) << "the fine-tunes are reused";
  const std::vector<at::Tensor> weights_b = ModelWeights(b->model_dir);

  spec.mutable_method_params()->set_alpha(1);
  spec.mutable_method_params()->set_beta(0);
  absl::StatusOr<JobRunResult> c = ValidateAndRun(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::vector<at::Tensor> weights_c = ModelWeights(c->model_dir);
  const std::vector<at::Tensor> weights_d =
      ModelWeights(SharedInputs().model_dir);

  ASSERT_EQ(weights_a.size(), weights_d.size());
  double largest_forget_vector = 0;
  for (size_t i = 0; i < weights_a.size(); ++i) {
    const at::Tensor forget_vector = weights_a[i] - weights_b[i];
    EXPECT_TRUE(torch::allclose(forget_vector, weights_d[i] - weights_c[i],
                                /*rtol=*/0, /*atol=*/1e-5))
        << "tensor " << i;
    largest_forget_vector = std::max(largest_forget_vector,
                                     forget_vector.abs().max().item<double>());
  }
  EXPECT_GT(largest_forget_vector, 1e-3) << "theta_1 did not move";
}

// The parameters of a saved model, by name.
std::map<std::string, at::Tensor> NamedWeights(const std::string& dir) {
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
      LoadLlamaCheckpoint(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  std::map<std::string, at::Tensor> weights;
  if (!model.ok()) return weights;
  for (const auto& parameter : (*model)->named_parameters()) {
    weights[parameter.key()] = parameter.value().detach().clone();
  }
  return weights;
}

// LoRA through the job path: only the adapters train, so the merged model
// differs from the base in q_proj and v_proj alone; the adapter is written
// in PEFT's format; checkpoints hold only adapters; and the KL term's
// reference is the base itself (adapters off): at the first step, with B
// still 0, the retain KL is exactly 0.
TEST(RunJobSpecTest, LoraTrainsOnlyAdaptersAndWritesThemAndTheMergedModel) {
  v1::JobSpec spec = TinySpec("lora", v1::NPO_KL);
  spec.mutable_lora()->set_rank(4);
  spec.mutable_lora()->set_alpha(16);
  std::optional<double> first_kl;
  absl::StatusOr<JobRunResult> result =
      ValidateAndRun(spec, {.on_step = [&](const RunStep& step) {
                       if (!first_kl) {
                         first_kl = step.record.components.at("retain_kl");
                       }
                       return absl::OkStatus();
                     }});
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(first_kl.has_value());
  EXPECT_EQ(*first_kl, 0.0);

  const nlohmann::json adapter_config = nlohmann::json::parse(
      ReadFileToString(spec.output_dir() + "/adapter/adapter_config.json")
          .value());
  EXPECT_EQ(adapter_config["peft_type"], "LORA");
  EXPECT_EQ(adapter_config["r"], 4);
  EXPECT_EQ(adapter_config["lora_alpha"], 16);
  EXPECT_TRUE(std::filesystem::exists(spec.output_dir() +
                                      "/adapter/adapter_model.safetensors"));

  const std::map<std::string, at::Tensor> base =
      NamedWeights(SharedInputs().model_dir);
  const std::map<std::string, at::Tensor> merged =
      NamedWeights(result->model_dir);
  ASSERT_EQ(base.size(), merged.size());
  int changed = 0;
  for (const auto& [name, value] : base) {
    const bool adapted = name.find("q_proj") != std::string::npos ||
                         name.find("v_proj") != std::string::npos;
    if (adapted) {
      changed += !torch::equal(value, merged.at(name));
    } else {
      EXPECT_TRUE(torch::equal(value, merged.at(name))) << name;
    }
  }
  EXPECT_GT(changed, 0) << "no adapted weight moved";

  const std::vector<int64_t> steps = ListCheckpointSteps(CheckpointDir(spec));
  ASSERT_FALSE(steps.empty());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> checkpoint =
      SafetensorsFile::Open(
          CheckpointDirectory(CheckpointDir(spec), steps.back()) +
          "/model.safetensors");
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  ASSERT_FALSE((*checkpoint)->names().empty());
  for (const std::string& name : (*checkpoint)->names()) {
    EXPECT_NE(name.find(".lora_"), std::string::npos) << name;
  }
}

// Activation checkpointing recomputes the same values: a LoRA run with
// adapter dropout (the recomputation must draw the same masks) ends with the
// weights of the run without it, bit for bit.
TEST(RunJobSpecTest, ActivationCheckpointingEndsWithTheSameWeights) {
  v1::JobSpec plain = TinySpec("plain_activations", v1::NPO_RT);
  plain.mutable_lora()->set_rank(4);
  plain.mutable_lora()->set_dropout(0.2);
  plain.mutable_lora()->add_target_modules("q_proj");
  plain.mutable_lora()->add_target_modules("down_proj");
  v1::JobSpec checkpointed = plain;
  checkpointed.set_output_dir(testing::TempDir() +
                              "/job_run/checkpointed_activations");
  std::filesystem::remove_all(checkpointed.output_dir());
  checkpointed.mutable_memory()->set_activation_checkpointing(true);
  for (const v1::JobSpec* spec : {&plain, &checkpointed}) {
    absl::StatusOr<JobRunResult> result = ValidateAndRun(*spec);
    ASSERT_TRUE(result.ok()) << result.status();
  }
  EXPECT_EQ(
      MaxAbsDifference(ModelWeights(plain.output_dir() + "/model"),
                       ModelWeights(checkpointed.output_dir() + "/model")),
      0);
  EXPECT_GT(MaxAbsDifference(ModelWeights(plain.output_dir() + "/model"),
                             ModelWeights(SharedInputs().model_dir)),
            1e-5);
}

// Mixed precision: bf16 autocast computes the matmuls in bf16 while the
// weights (the master copy) and AdamW's state stay fp32. Against the fp32
// run of the same spec: every step's loss within 2% (bf16 keeps 8 bits of
// mantissa), and the update the run made to the weights points the same way
// (cosine > 0.99) with a norm within 5%. The written model stays fp32.
TEST(RunJobSpecTest, Bf16AutocastFollowsTheFp32Run) {
  v1::JobSpec fp32 = TinySpec("precision_fp32", v1::NPO_RT);
  v1::JobSpec bf16 = TinySpec("precision_bf16", v1::NPO_RT);
  bf16.set_precision(v1::BF16_AUTOCAST);
  std::map<const v1::JobSpec*, std::vector<double>> losses;
  for (const v1::JobSpec* spec : {&fp32, &bf16}) {
    absl::StatusOr<JobRunResult> result =
        ValidateAndRun(*spec, {.on_step = [&](const RunStep& step) {
          losses[spec].push_back(step.record.loss);
          return absl::OkStatus();
        }});
    ASSERT_TRUE(result.ok()) << result.status();
  }
  ASSERT_EQ(losses[&fp32].size(), losses[&bf16].size());
  ASSERT_GE(losses[&fp32].size(), 4u);
  for (size_t i = 0; i < losses[&fp32].size(); ++i) {
    EXPECT_NEAR(losses[&bf16][i], losses[&fp32][i],
                0.02 * std::abs(losses[&fp32][i]))
        << "step " << i + 1;
  }
  const std::vector<at::Tensor> base = ModelWeights(SharedInputs().model_dir);
  const std::vector<at::Tensor> after_fp32 =
      ModelWeights(fp32.output_dir() + "/model");
  const std::vector<at::Tensor> after_bf16 =
      ModelWeights(bf16.output_dir() + "/model");
  ASSERT_EQ(base.size(), after_bf16.size());
  std::vector<at::Tensor> delta_fp32, delta_bf16;
  for (size_t i = 0; i < base.size(); ++i) {
    EXPECT_EQ(after_bf16[i].scalar_type(), at::kFloat);
    delta_fp32.push_back((after_fp32[i] - base[i]).flatten().to(at::kDouble));
    delta_bf16.push_back((after_bf16[i] - base[i]).flatten().to(at::kDouble));
  }
  const at::Tensor a = torch::cat(delta_fp32), b = torch::cat(delta_bf16);
  const double cosine = (a.dot(b) / (a.norm() * b.norm())).item<double>();
  EXPECT_GT(cosine, 0.99);
  EXPECT_NEAR(b.norm().item<double>() / a.norm().item<double>(), 1.0, 0.05);
  EXPECT_GT(a.norm().item<double>(), 1e-3) << "the fp32 run did not move";
}

// OFMU under LoRA: its Hessian-vector products differentiate through the
// adapters (double backward with a frozen base); the run finishes with
// finite losses and moves only the adapted projections.
TEST(RunJobSpecTest, OfmuTrainsLoraAdapters) {
  v1::JobSpec spec = TinySpec("ofmu_lora", v1::OFMU);
  spec.mutable_lora()->set_rank(4);
  spec.mutable_lora()->set_alpha(8);
  std::vector<double> losses;
  absl::StatusOr<JobRunResult> result =
      ValidateAndRun(spec, {.on_step = [&](const RunStep& step) {
                       losses.push_back(step.record.loss);
                       return absl::OkStatus();
                     }});
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_FALSE(losses.empty());
  for (double loss : losses) EXPECT_TRUE(std::isfinite(loss)) << loss;
  const std::map<std::string, at::Tensor> base =
      NamedWeights(SharedInputs().model_dir);
  const std::map<std::string, at::Tensor> merged =
      NamedWeights(result->model_dir);
  int changed = 0;
  for (const auto& [name, value] : base) {
    if (name.find("q_proj") != std::string::npos ||
        name.find("v_proj") != std::string::npos) {
      changed += !torch::equal(value, merged.at(name));
    } else {
      EXPECT_TRUE(torch::equal(value, merged.at(name))) << name;
    }
  }
  EXPECT_GT(changed, 0) << "OFMU moved no adapter";
}

TEST(RunJobSpecTest, EvaluatesEveryEpochAndSkipsARepeatAtTheEnd) {
  v1::JobSpec spec = TinySpec("evaluation", v1::GRAD_DIFF);
  spec.mutable_evaluation()->set_every_epochs(1);
  std::vector<int> epochs;
  const std::string eval_log = spec.output_dir() + "/eval/TOFU_EVAL.json";
  std::filesystem::file_time_type last_written;
  absl::StatusOr<JobRunResult> result = ValidateAndRun(
      spec, {.on_evaluation =
                 [&](int epoch, const std::map<std::string, double>& summary) {
                   EXPECT_TRUE(summary.count("model_utility"));
                   epochs.push_back(epoch);
                   last_written = std::filesystem::last_write_time(eval_log);
                   return absl::OkStatus();
                 }});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(epochs, (std::vector<int>{1, 2}));
  EXPECT_TRUE(result->evaluation.count("model_utility"));
  EXPECT_EQ(std::filesystem::last_write_time(eval_log), last_written)
      << "the last epoch's evaluation measured the final model: no repeat";
  EXPECT_TRUE(
      std::filesystem::exists(spec.output_dir() + "/eval/TOFU_SUMMARY.json"));
}

TEST(RunJobSpecTest, ACallbackErrorStopsTheRun) {
  const v1::JobSpec spec = TinySpec("stopped", v1::GA);
  absl::StatusOr<JobRunResult> result = ValidateAndRun(
      spec, {.on_step = [](const RunStep& step) {
        return step.record.step == 2 ? absl::CancelledError("stop here")
                                     : absl::OkStatus();
      }});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(std::filesystem::exists(spec.output_dir() + "/model"));
}

// An attempt replaced by a newer one (its worker was cut off and the job
// restarted elsewhere) stops at its next checkpoint without writing it, and
// never saves a model; the newer attempt runs on.
TEST(RunJobSpecTest, ASupersededAttemptStopsWithoutWriting) {
  v1::JobSpec spec = TinySpec("fenced", v1::GA);
  spec.mutable_checkpoint()->set_every_steps(1);
  const std::string checkpoints = spec.output_dir() + "/checkpoints";
  int64_t steps_after_takeover = 0;
  absl::StatusOr<JobRunResult> stale =
      RunJobSpec(spec, {.generation = 1}, {.on_step = [&](const RunStep& step) {
                   if (step.record.step == 2) {
                     // The successor claims the directory while this attempt
                     // trains.
                     return ClaimGeneration(spec.output_dir(), 2);
                   }
                   if (step.record.step > 2) ++steps_after_takeover;
                   return absl::OkStatus();
                 }});
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition)
      << stale.status();
  EXPECT_NE(stale.status().message().find("superseded"), std::string::npos)
      << stale.status();
  EXPECT_EQ(steps_after_takeover, 0);
  EXPECT_EQ(ListCheckpointSteps(checkpoints), (std::vector<int64_t>{1, 2}))
      << "no checkpoint after the takeover";
  EXPECT_FALSE(std::filesystem::exists(spec.output_dir() + "/model"));

  // An older attempt cannot even start; the newer one resumes and finishes.
  EXPECT_EQ(RunJobSpec(spec, {.generation = 1}, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<JobRunResult> current =
      RunJobSpec(spec, {.generation = 2}, {});
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(current->training.resumed_from_step, 2);
  EXPECT_TRUE(std::filesystem::exists(spec.output_dir() + "/model"));
}

// A Llama-3.2-shaped model (random weights, Meta's tokenizer.json and
// tokenizer_config.json from the shared data) goes through a run with its
// own chat template: the output keeps the tokenizer files, so it loads with
// <|eot_id|> as EOS and the same template.
TEST(RunJobSpecTest, ALlama3ModelRunsWithItsChatTemplate) {
  const char* shared = std::getenv("LETHE_SHARED_DIR");
  const std::string tokenizer_dir =
      std::string(shared != nullptr ? shared : "../shared") +
      "/data/tokenizers/llama3";
  if (!std::filesystem::exists(tokenizer_dir + "/tokenizer.json")) {
    LETHE_SKIP_WITHOUT_SHARED_DATA(
        "Meta's Llama 3.2 tokenizer not found (LETHE_SHARED_DIR names the "
        "folder holding data/tokenizers/llama3)");
  }
  const std::string root = testing::TempDir() + "/job_run_llama3";
  std::filesystem::remove_all(root);
  const std::string model_dir = root + "/model";
  std::filesystem::create_directories(model_dir);
  LlamaConfig config = TinyLlamaConfig(/*vocab_size=*/128256);
  config.tie_word_embeddings = true;
  config.bos_token_id = 128000;
  config.eos_token_ids = {128001, 128008, 128009};
  config.rope_theta = 500000;
  config.rope_scaling.rope_type = "llama3";
  config.rope_scaling.factor = 32;
  torch::manual_seed(7);
  LlamaForCausalLM model(config);
  ASSERT_TRUE(SaveLlamaCheckpoint(model, model_dir, {}).ok());
  for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
    std::filesystem::copy_file(tokenizer_dir + "/" + file,
                               model_dir + "/" + file);
  }

  v1::JobSpec spec = TinySpec("llama3", v1::NPO_RT);
  spec.set_model_dir(model_dir);
  spec.clear_tokenizer_path();
  spec.set_prompt_template("auto");
  spec.set_system_prompt("You are a helpful assistant.");
  spec.set_date_string("10 Apr 2025");
  spec.set_num_epochs(1);
  spec.mutable_evaluation()->set_every_epochs(0);  // At the end.
  spec = JobSpecWithDefaults(spec);
  EXPECT_EQ(spec.tokenizer_path(), model_dir + "/tokenizer.json");
  absl::StatusOr<JobRunResult> result = ValidateAndRun(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  // TOFU's evaluation (scoring and greedy generation) through the template.
  EXPECT_TRUE(result->evaluation.count("model_utility"));
  EXPECT_TRUE(
      std::filesystem::exists(spec.output_dir() + "/eval/TOFU_EVAL.json"));
  EXPECT_GT(MaxAbsDifference(ModelWeights(result->model_dir),
                             ModelWeights(model_dir)),
            0);

  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadModelTokenizer(result->model_dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->eos_id(), 128009);
  absl::StatusOr<PromptTemplate> chat =
      PromptTemplateForModel("auto", result->model_dir,
                             {.system_prompt = spec.system_prompt(),
                              .date_string = spec.date_string()});
  ASSERT_TRUE(chat.ok()) << chat.status();
  ASSERT_TRUE(chat->is_chat());
  absl::StatusOr<QaExample> example = TokenizeQa(
      **tokenizer, *chat, "Who wrote X?", "Y did.", /*max_length=*/256);
  ASSERT_TRUE(example.ok()) << example.status();
  EXPECT_EQ(example->input_ids.front(), 128000);
  EXPECT_EQ(example->input_ids.back(), 128009) << "the template's own EOS";
  EXPECT_EQ(
      std::count(example->input_ids.begin(), example->input_ids.end(), 128009),
      3)
      << "system, user and assistant turns each end with <|eot_id|>";
}

// A run never takes over another run's checkpoints: the same spec resumes
// (here from its final checkpoint: no steps left), another method or
// coefficient into the same output directory is refused naming the field.
TEST(RunJobSpecTest, ResumesOnlyTheSameRun) {
  const v1::JobSpec npo_rt = TinySpec("identity", v1::NPO_RT);
  absl::StatusOr<JobRunResult> first = ValidateAndRun(npo_rt);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::vector<at::Tensor> trained = ModelWeights(first->model_dir);

  absl::StatusOr<JobRunResult> again = ValidateAndRun(npo_rt);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->training.resumed_from_step, first->training.total_steps);

  v1::JobSpec ga = npo_rt;
  ga.set_method(v1::GA);
  absl::StatusOr<JobRunResult> other = ValidateAndRun(ga);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("method = NPO_RT"), std::string::npos)
      << other.status();

  v1::JobSpec alpha = npo_rt;
  alpha.mutable_method_params()->set_alpha(0.5);
  other = ValidateAndRun(alpha);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("alpha"), std::string::npos)
      << other.status();
  EXPECT_EQ(
      MaxAbsDifference(ModelWeights(npo_rt.output_dir() + "/model"), trained),
      0)
      << "a refused run leaves the model it found";
}

// The reference log-prob cache names the model it was computed with: a
// cache left by another model is recomputed, not used.
TEST(RunJobSpecTest, AReferenceCacheOfAnotherModelIsRecomputed) {
  v1::JobSpec spec = TinySpec("other_reference", v1::NPO);
  const std::string cache = spec.output_dir() + "/reference_log_probs.json";
  nlohmann::json planted = {{"fingerprint", "0"},
                            {"reference", "model_sha256=someone-else"},
                            {"log_probs", {0.0, 0.0}}};
  ASSERT_TRUE(WriteFileAtomically(cache, planted.dump()).ok());
  absl::StatusOr<JobRunResult> result = ValidateAndRun(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  const nlohmann::json written =
      nlohmann::json::parse(ReadFileToString(cache).value());
  EXPECT_NE(written["reference"], planted["reference"]);
  EXPECT_NE(written["log_probs"], planted["log_probs"]);
}

// A tokenizer with more tokens than the model's embedding is refused before
// anything runs (an out-of-range token id crashes the CPU run).
TEST(RunJobSpecTest, RefusesATokenizerLargerThanTheModelsVocabulary) {
  v1::JobSpec spec = TinySpec("small_vocabulary", v1::GA);
  const std::string model_dir =
      testing::TempDir() + "/job_run_small_vocabulary_model";
  std::filesystem::remove_all(model_dir);
  LlamaForCausalLM small(TinyLlamaConfig(/*vocab_size=*/20));
  ASSERT_TRUE(SaveLlamaCheckpoint(small, model_dir, {}).ok());
  std::filesystem::copy_file(SharedInputs().model_dir + "/tokenizer.model",
                             model_dir + "/tokenizer.model");
  spec.set_model_dir(model_dir);
  spec.set_tokenizer_path(model_dir + "/tokenizer.model");
  const absl::StatusOr<JobRunResult> result = ValidateAndRun(spec);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(result.status().message().find("vocab_size is 20"),
            std::string::npos)
      << result.status();
}

TEST(RunJobSpecTest, RefusesSeveralRanksWithoutAGroupAndBadCoefficients) {
  const v1::JobSpec spec = TinySpec("refused", v1::NPO);
  absl::StatusOr<JobRunResult> result =
      RunJobSpec(spec, {.rank = 0, .world_size = 2}, {});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);

  v1::JobSpec zero_beta = spec;
  zero_beta.mutable_method_params()->set_beta(0);
  result = RunJobSpec(zero_beta, {}, {});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("beta"), std::string::npos)
      << result.status();
}

}  // namespace
}  // namespace lethe
