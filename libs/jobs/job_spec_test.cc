#include "libs/jobs/job_spec.h"

#include <google/protobuf/util/field_comparator.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

using ::google::protobuf::util::MessageDifferencer;

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path);
  out << contents;
  ASSERT_TRUE(out.good()) << path;
}

// A model directory, a data directory with TOFU's forget10/retain90 and a
// parent for output directories, fresh under the test's temp dir.
class JobSpecTest : public testing::Test {
 protected:
  void SetUp() override {
    root_ = absl::StrCat(testing::TempDir(), "/job_spec_test");
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ + "/model");
    std::filesystem::create_directories(root_ + "/data");
    std::filesystem::create_directories(root_ + "/runs");
    WriteFile(root_ + "/model/config.json", "{}");
    WriteFile(root_ + "/model/tokenizer.model", "tok");
    WriteFile(root_ + "/data/forget10.json", "[]");
    WriteFile(root_ + "/data/retain90.json", "[]");
    WriteFile(root_ + "/data/forget05.jsonl", "");
    WriteFile(root_ + "/retain_logs.json", "{}");
  }

  // The smallest spec a user would write; valid once defaults are filled.
  v1::JobSpec MinimalSpec() const {
    v1::JobSpec spec;
    spec.set_model_dir(root_ + "/model");
    spec.set_data_dir(root_ + "/data");
    spec.set_forget_split("forget10");
    spec.set_method(v1::NPO_RT);
    spec.set_output_dir(root_ + "/runs/job1");
    return spec;
  }

  v1::JobSpec ValidSpec() const { return JobSpecWithDefaults(MinimalSpec()); }

  std::string root_;
};

TEST_F(JobSpecTest, MinimalSpecWithDefaultsIsValid) {
  const absl::Status status = ValidateJobSpec(ValidSpec());
  EXPECT_TRUE(status.ok()) << status;
}

TEST_F(JobSpecTest, FullySpecifiedSpecIsValid) {
  v1::JobSpec spec = ValidSpec();
  spec.set_forget_split("forget05");  // Only forget05.jsonl exists.
  spec.set_prompt_template("llama2_chat");
  spec.mutable_method_params()->set_retain_loss("kl");
  spec.mutable_method_params()->set_ofmu_rho_growth(1.5);
  spec.mutable_method_params()->set_delta(-0.5);
  spec.mutable_optimizer()->set_weight_decay(0);
  spec.mutable_optimizer()->set_max_grad_norm(0);
  spec.set_num_epochs(0);
  spec.set_max_steps(100);
  spec.set_device(v1::CUDA);
  spec.set_backend(v1::GLOO);  // Gloo on CUDA is allowed.
  spec.set_world_size(1024);
  spec.set_threads_per_worker(0);
  spec.mutable_evaluation()->set_retain_logs_path(root_ + "/retain_logs.json");
  spec.set_output_dir(root_ + "/runs/job2/");
  spec.mutable_run_policy()->set_max_restarts(0);
  spec.mutable_run_policy()->mutable_deadline()->set_seconds(3600);
  spec.set_priority(-1000);
  spec.set_display_name(std::string(200, 'x'));
  spec.mutable_memory()->set_loss_chunk_tokens(1024);
  spec.mutable_memory()->set_activation_checkpointing(true);
  spec.mutable_lora()->set_rank(16);
  spec.mutable_lora()->set_alpha(32);
  spec.mutable_lora()->set_dropout(0.05);
  for (const char* module : {"q_proj", "k_proj", "v_proj", "o_proj",
                             "gate_proj", "up_proj", "down_proj"}) {
    spec.mutable_lora()->add_target_modules(module);
  }
  const absl::Status status = ValidateJobSpec(spec);
  EXPECT_TRUE(status.ok()) << status;
}

struct BadSpecCase {
  std::string name;
  std::function<void(v1::JobSpec&, const std::string& root)> mutate;
  absl::StatusCode code;
  std::string field;  // The message must start with "<field>: ".
};

TEST_F(JobSpecTest, EachBadFieldIsRejectedNamingTheField) {
  using Spec = v1::JobSpec;
  using R = const std::string&;
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  const absl::StatusCode kNotFound = absl::StatusCode::kNotFound;
  const double kNan = std::nan("");
  const double kInf = std::numeric_limits<double>::infinity();
  const std::vector<BadSpecCase> cases = {
      {"empty model_dir", [](Spec& s, R) { s.clear_model_dir(); }, kInvalid,
       "spec.model_dir"},
      {"negative loss chunk",
       [](Spec& s, R) { s.mutable_memory()->set_loss_chunk_tokens(-1); },
       kInvalid, "spec.memory.loss_chunk_tokens"},
      {"negative pack row length",
       [](Spec& s, R) { s.mutable_memory()->set_pack_row_length(-1); },
       kInvalid, "spec.memory.pack_row_length"},
      {"ZeRO stage 3",
       [](Spec& s, R) { s.mutable_memory()->set_zero_stage(3); }, kInvalid,
       "spec.memory.zero_stage"},
      {"checkpointing under OFMU",
       [](Spec& s, R) {
         s.set_method(v1::OFMU);
         s.mutable_memory()->set_activation_checkpointing(true);
       },
       kInvalid, "spec.memory.activation_checkpointing"},
      {"negative LoRA rank", [](Spec& s, R) { s.mutable_lora()->set_rank(-2); },
       kInvalid, "spec.lora.rank"},
      {"LoRA fields without a rank",
       [](Spec& s, R) { s.mutable_lora()->set_alpha(16); }, kInvalid,
       "spec.lora.rank"},
      {"LoRA dropout of 1",
       [](Spec& s, R) {
         s.mutable_lora()->set_rank(8);
         s.mutable_lora()->set_dropout(1);
       },
       kInvalid, "spec.lora.dropout"},
      {"NaN LoRA alpha",
       [](Spec& s, R) {
         s.mutable_lora()->set_rank(8);
         s.mutable_lora()->set_alpha(std::nan(""));
       },
       kInvalid, "spec.lora.alpha"},
      {"unknown LoRA module",
       [](Spec& s, R) {
         s.mutable_lora()->set_rank(8);
         s.mutable_lora()->add_target_modules("q_proj");
         s.mutable_lora()->add_target_modules("qkv_proj");
       },
       kInvalid, "spec.lora.target_modules[1]"},
      {"missing model_dir", [](Spec& s, R r) { s.set_model_dir(r + "/nope"); },
       kNotFound, "spec.model_dir"},
      {"model_dir is a file",
       [](Spec& s, R r) { s.set_model_dir(r + "/retain_logs.json"); }, kInvalid,
       "spec.model_dir"},
      {"model_dir without config.json",
       [](Spec& s, R r) { s.set_model_dir(r + "/data"); }, kNotFound,
       "spec.model_dir"},
      {"missing tokenizer",
       [](Spec& s, R r) { s.set_tokenizer_path(r + "/model/x.model"); },
       kNotFound, "spec.tokenizer_path"},
      {"empty data_dir", [](Spec& s, R) { s.clear_data_dir(); }, kInvalid,
       "spec.data_dir"},
      {"missing data_dir", [](Spec& s, R r) { s.set_data_dir(r + "/nope"); },
       kNotFound, "spec.data_dir"},
      {"empty forget_split", [](Spec& s, R) { s.clear_forget_split(); },
       kInvalid, "spec.forget_split"},
      {"forget_split with a path",
       [](Spec& s, R) { s.set_forget_split("../forget10"); }, kInvalid,
       "spec.forget_split"},
      {"forget_split without a file",
       [](Spec& s, R) { s.set_forget_split("forget01"); }, kNotFound,
       "spec.forget_split"},
      {"empty retain_split", [](Spec& s, R) { s.clear_retain_split(); },
       kInvalid, "spec.retain_split"},
      {"retain_split with a space",
       [](Spec& s, R) { s.set_retain_split("retain 90"); }, kInvalid,
       "spec.retain_split"},
      {"retain_split without a file",
       [](Spec& s, R) { s.set_retain_split("retain99"); }, kNotFound,
       "spec.retain_split"},
      {"retain_split equal to forget_split",
       [](Spec& s, R) { s.set_retain_split("forget10"); }, kInvalid,
       "spec.retain_split"},
      {"unknown prompt_template",
       [](Spec& s, R) { s.set_prompt_template("chatml2"); }, kInvalid,
       "spec.prompt_template"},
      {"system prompt with a tag template",
       [](Spec& s, R) {
         s.set_prompt_template("plain");
         s.set_system_prompt("You are a helpful assistant.");
       },
       kInvalid, "spec.prompt_template"},
      {"system prompt where the template has no system role",
       [](Spec& s, R) {
         s.set_prompt_template("gemma");
         s.set_system_prompt("You are a helpful assistant.");
       },
       kInvalid, "spec.prompt_template"},
      {"method unspecified",
       [](Spec& s, R) { s.set_method(v1::METHOD_UNSPECIFIED); }, kInvalid,
       "spec.method"},
      {"method out of range",
       [](Spec& s, R) { s.set_method(static_cast<v1::Method>(42)); }, kInvalid,
       "spec.method"},
      {"negative beta",
       [](Spec& s, R) { s.mutable_method_params()->set_beta(-0.1); }, kInvalid,
       "spec.method_params.beta"},
      {"infinite beta",
       [kInf](Spec& s, R) { s.mutable_method_params()->set_beta(kInf); },
       kInvalid, "spec.method_params.beta"},
      {"negative alpha",
       [](Spec& s, R) { s.mutable_method_params()->set_alpha(-1); }, kInvalid,
       "spec.method_params.alpha"},
      {"nan gamma",
       [kNan](Spec& s, R) { s.mutable_method_params()->set_gamma(kNan); },
       kInvalid, "spec.method_params.gamma"},
      {"infinite delta",
       [kInf](Spec& s, R) { s.mutable_method_params()->set_delta(-kInf); },
       kInvalid, "spec.method_params.delta"},
      {"unknown retain_loss",
       [](Spec& s, R) { s.mutable_method_params()->set_retain_loss("mse"); },
       kInvalid, "spec.method_params.retain_loss"},
      {"negative ofmu_inner_steps",
       [](Spec& s, R) { s.mutable_method_params()->set_ofmu_inner_steps(-1); },
       kInvalid, "spec.method_params.ofmu_inner_steps"},
      {"negative ofmu_rho",
       [](Spec& s, R) { s.mutable_method_params()->set_ofmu_rho(-1); },
       kInvalid, "spec.method_params.ofmu_rho"},
      {"max_length too short", [](Spec& s, R) { s.set_max_length(4); },
       kInvalid, "spec.max_length"},
      {"unknown precision",
       [](Spec& s, R) { s.set_precision(static_cast<v1::Precision>(7)); },
       kInvalid, "spec.precision"},
      {"output inside the model",
       [](Spec& s, R r) { s.set_output_dir(r + "/model/out"); }, kInvalid,
       "spec.output_dir"},
      {"output around the data", [](Spec& s, R r) { s.set_output_dir(r); },
       kInvalid, "spec.output_dir"},
      {"output is the data",
       [](Spec& s, R r) { s.set_output_dir(r + "/data/"); }, kInvalid,
       "spec.output_dir"},
      {"ofmu_rho_growth below 1",
       [](Spec& s, R) { s.mutable_method_params()->set_ofmu_rho_growth(0.5); },
       kInvalid, "spec.method_params.ofmu_rho_growth"},
      {"negative random_answer_weight",
       [](Spec& s, R) {
         s.mutable_method_params()->set_random_answer_weight(-1);
       },
       kInvalid, "spec.method_params.random_answer_weight"},
      {"negative ofmu_inner_learning_rate",
       [](Spec& s, R) {
         s.mutable_method_params()->set_ofmu_inner_learning_rate(-1e-5);
       },
       kInvalid, "spec.method_params.ofmu_inner_learning_rate"},
      {"negative learning_rate",
       [](Spec& s, R) { s.mutable_optimizer()->set_learning_rate(-1); },
       kInvalid, "spec.optimizer.learning_rate"},
      {"nan learning_rate",
       [kNan](Spec& s, R) { s.mutable_optimizer()->set_learning_rate(kNan); },
       kInvalid, "spec.optimizer.learning_rate"},
      {"negative weight_decay",
       [](Spec& s, R) { s.mutable_optimizer()->set_weight_decay(-0.01); },
       kInvalid, "spec.optimizer.weight_decay"},
      {"negative warmup_epochs",
       [](Spec& s, R) { s.mutable_optimizer()->set_warmup_epochs(-1); },
       kInvalid, "spec.optimizer.warmup_epochs"},
      {"negative max_grad_norm",
       [](Spec& s, R) { s.mutable_optimizer()->set_max_grad_norm(-1); },
       kInvalid, "spec.optimizer.max_grad_norm"},
      {"negative num_epochs", [](Spec& s, R) { s.set_num_epochs(-1); },
       kInvalid, "spec.num_epochs"},
      {"negative max_steps", [](Spec& s, R) { s.set_max_steps(-1); }, kInvalid,
       "spec.max_steps"},
      {"no stopping bound",
       [](Spec& s, R) {
         s.set_num_epochs(0);
         s.set_max_steps(0);
       },
       kInvalid, "spec.num_epochs"},
      {"zero batch size", [](Spec& s, R) { s.set_per_device_batch_size(0); },
       kInvalid, "spec.per_device_batch_size"},
      {"huge batch size", [](Spec& s, R) { s.set_per_device_batch_size(4097); },
       kInvalid, "spec.per_device_batch_size"},
      {"zero accumulation",
       [](Spec& s, R) { s.set_gradient_accumulation_steps(0); }, kInvalid,
       "spec.gradient_accumulation_steps"},
      {"huge accumulation",
       [](Spec& s, R) { s.set_gradient_accumulation_steps(5000); }, kInvalid,
       "spec.gradient_accumulation_steps"},
      {"zero world_size", [](Spec& s, R) { s.set_world_size(0); }, kInvalid,
       "spec.world_size"},
      {"huge world_size", [](Spec& s, R) { s.set_world_size(1025); }, kInvalid,
       "spec.world_size"},
      {"NCCL on CPU", [](Spec& s, R) { s.set_backend(v1::NCCL); }, kInvalid,
       "spec.backend"},
      {"backend out of range",
       [](Spec& s, R) { s.set_backend(static_cast<v1::Backend>(7)); }, kInvalid,
       "spec.backend"},
      {"device out of range",
       [](Spec& s, R) { s.set_device(static_cast<v1::Device>(7)); }, kInvalid,
       "spec.device"},
      {"negative threads", [](Spec& s, R) { s.set_threads_per_worker(-1); },
       kInvalid, "spec.threads_per_worker"},
      {"too many threads", [](Spec& s, R) { s.set_threads_per_worker(257); },
       kInvalid, "spec.threads_per_worker"},
      {"negative every_epochs",
       [](Spec& s, R) { s.mutable_evaluation()->set_every_epochs(-1); },
       kInvalid, "spec.evaluation.every_epochs"},
      {"missing retain logs",
       [](Spec& s, R r) {
         s.mutable_evaluation()->set_retain_logs_path(r + "/nope.json");
       },
       kNotFound, "spec.evaluation.retain_logs_path"},
      {"negative every_steps",
       [](Spec& s, R) { s.mutable_checkpoint()->set_every_steps(-5); },
       kInvalid, "spec.checkpoint.every_steps"},
      {"zero keep_last",
       [](Spec& s, R) { s.mutable_checkpoint()->set_keep_last(0); }, kInvalid,
       "spec.checkpoint.keep_last"},
      {"huge keep_last",
       [](Spec& s, R) { s.mutable_checkpoint()->set_keep_last(101); }, kInvalid,
       "spec.checkpoint.keep_last"},
      {"empty output_dir", [](Spec& s, R) { s.clear_output_dir(); }, kInvalid,
       "spec.output_dir"},
      {"relative output_dir", [](Spec& s, R) { s.set_output_dir("runs/x"); },
       kInvalid, "spec.output_dir"},
      {"output_dir is a file",
       [](Spec& s, R r) { s.set_output_dir(r + "/retain_logs.json"); },
       kInvalid, "spec.output_dir"},
      {"output_dir without parent",
       [](Spec& s, R r) { s.set_output_dir(r + "/nope/job1"); }, kNotFound,
       "spec.output_dir"},
      {"negative max_restarts",
       [](Spec& s, R) { s.mutable_run_policy()->set_max_restarts(-1); },
       kInvalid, "spec.run_policy.max_restarts"},
      {"huge max_restarts",
       [](Spec& s, R) { s.mutable_run_policy()->set_max_restarts(101); },
       kInvalid, "spec.run_policy.max_restarts"},
      {"negative deadline",
       [](Spec& s, R) {
         s.mutable_run_policy()->mutable_deadline()->set_seconds(-1);
       },
       kInvalid, "spec.run_policy.deadline"},
      {"priority too high", [](Spec& s, R) { s.set_priority(1001); }, kInvalid,
       "spec.priority"},
      {"priority too low", [](Spec& s, R) { s.set_priority(-1001); }, kInvalid,
       "spec.priority"},
      {"long display_name",
       [](Spec& s, R) { s.set_display_name(std::string(201, 'x')); }, kInvalid,
       "spec.display_name"},
  };
  for (const BadSpecCase& c : cases) {
    SCOPED_TRACE(c.name);
    v1::JobSpec spec = ValidSpec();
    c.mutate(spec, root_);
    const absl::Status status = ValidateJobSpec(spec);
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_TRUE(absl::StartsWith(status.message(), c.field + ": "))
        << status.message();
  }
}

TEST_F(JobSpecTest, MessagesSayWhatWasWrong) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_optimizer()->set_learning_rate(-1);
  EXPECT_EQ(
      ValidateJobSpec(spec).message(),
      "spec.optimizer.learning_rate: must be positive and finite, got -1");

  spec = ValidSpec();
  spec.set_forget_split("forget01");
  const std::string message(ValidateJobSpec(spec).message());
  EXPECT_TRUE(absl::StrContains(message, root_ + "/data/forget01.json "))
      << message;
  EXPECT_TRUE(absl::StrContains(message, root_ + "/data/forget01.jsonl"))
      << message;

  spec = ValidSpec();
  spec.set_model_dir(root_ + "/data");
  spec.set_tokenizer_path(root_ + "/model/tokenizer.model");
  EXPECT_TRUE(absl::StrContains(ValidateJobSpec(spec).message(),
                                root_ + "/data/config.json"));

  spec = ValidSpec();
  spec.set_world_size(0);
  EXPECT_EQ(ValidateJobSpec(spec).message(),
            "spec.world_size: must be in [1, 1024], got 0");
}

TEST_F(JobSpecTest, DisplayNameCountsCharactersNotBytes) {
  v1::JobSpec spec = ValidSpec();
  std::string name;
  for (int i = 0; i < 200; ++i) name += "\xc3\xa9";  // U+00E9, 2 bytes.
  spec.set_display_name(name);
  EXPECT_TRUE(ValidateJobSpec(spec).ok());
}

TEST(JobSpecDefaultsTest, FillsEveryDefault) {
  v1::JobSpec spec;
  spec.set_model_dir("/models/m");
  spec.set_forget_split("forget05");
  const v1::JobSpec filled = JobSpecWithDefaults(spec);
  EXPECT_EQ(filled.tokenizer_path(), "/models/m/tokenizer.model");
  EXPECT_EQ(filled.retain_split(), "retain95");
  EXPECT_EQ(filled.prompt_template(), "auto");
  EXPECT_EQ(filled.optimizer().learning_rate(), 1e-5);
  EXPECT_EQ(filled.optimizer().weight_decay(), 0.01);
  EXPECT_EQ(filled.optimizer().warmup_epochs(), 1);
  EXPECT_EQ(filled.optimizer().max_grad_norm(), 1);
  EXPECT_EQ(filled.num_epochs(), 5);
  EXPECT_EQ(filled.max_steps(), 0);
  EXPECT_EQ(filled.per_device_batch_size(), 4);
  EXPECT_EQ(filled.gradient_accumulation_steps(), 1);
  EXPECT_EQ(filled.world_size(), 1);
  EXPECT_EQ(filled.device(), v1::CPU);
  EXPECT_EQ(filled.backend(), v1::GLOO);
  EXPECT_EQ(filled.threads_per_worker(), 0);
  EXPECT_EQ(filled.checkpoint().keep_last(), 2);
  EXPECT_EQ(filled.run_policy().max_restarts(), 2);
  EXPECT_EQ(filled.max_length(), 256);
  EXPECT_EQ(filled.precision(), v1::FP32);
  EXPECT_FALSE(filled.bf16_reference());
  EXPECT_EQ(filled.memory().pack_row_length(), 128);
  EXPECT_EQ(filled.method(), v1::METHOD_UNSPECIFIED);
  EXPECT_FALSE(filled.method_params().has_beta())
      << "coefficients stay absent: the method's defaults";
  // Filling twice changes nothing.
  EXPECT_TRUE(MessageDifferencer::Equals(JobSpecWithDefaults(filled), filled));
}

// pack_row_length has explicit presence: 0 (padded batches) is kept, only
// an absent value becomes the default.
TEST(JobSpecDefaultsTest, PaddedBatchesAreAValueNotTheDefault) {
  v1::JobSpec spec;
  spec.mutable_memory()->set_pack_row_length(0);
  EXPECT_EQ(JobSpecWithDefaults(spec).memory().pack_row_length(), 0);
  EXPECT_TRUE(JobSpecWithDefaults(spec).memory().has_pack_row_length());
  spec.mutable_memory()->set_pack_row_length(64);
  EXPECT_EQ(JobSpecWithDefaults(spec).memory().pack_row_length(), 64);
}

// Coefficients have explicit presence: a value given is used, 0 included;
// one left out is the method's default (open-unlearning's).
TEST(ObjectiveParamsFromSpecTest, ZeroIsAValueAndAbsenceIsTheDefault) {
  const absl::StatusOr<v1::JobSpec> parsed =
      ParseJobSpecJson(R"({"method_params": {"alpha": 0, "gamma": 0,
                           "delta": 0, "ofmu_inner_steps": 0,
                           "ofmu_first_order": false}})",
                       "zeros.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const v1::JobSpec& zeros = *parsed;
  EXPECT_TRUE(zeros.method_params().has_alpha());
  const ObjectiveParams given =
      ObjectiveParamsFromSpec(UnlearningMethod::kLlmu, zeros.method_params());
  EXPECT_EQ(given.alpha, 0);
  EXPECT_EQ(given.gamma, 0) << "LLMU's default gamma is 0.5";
  EXPECT_EQ(given.ofmu_inner_steps, 0);
  EXPECT_EQ(given.beta, DefaultObjectiveParams(UnlearningMethod::kLlmu).beta);

  const v1::MethodParams absent;
  for (const UnlearningMethod method :
       {UnlearningMethod::kNpo, UnlearningMethod::kSimNpo,
        UnlearningMethod::kLlmu, UnlearningMethod::kOfmu,
        UnlearningMethod::kIhl}) {
    const ObjectiveParams params = ObjectiveParamsFromSpec(method, absent);
    const ObjectiveParams defaults = DefaultObjectiveParams(method);
    EXPECT_EQ(params.beta, defaults.beta) << UnlearningMethodName(method);
    EXPECT_EQ(params.alpha, defaults.alpha) << UnlearningMethodName(method);
    EXPECT_EQ(params.gamma, defaults.gamma) << UnlearningMethodName(method);
    EXPECT_EQ(params.ofmu_rho_growth, defaults.ofmu_rho_growth);
  }
  // Independent of DefaultObjectiveParams: open-unlearning's SimNPO.
  const ObjectiveParams simnpo =
      ObjectiveParamsFromSpec(UnlearningMethod::kSimNpo, absent);
  EXPECT_EQ(simnpo.beta, 4.5);
  EXPECT_EQ(simnpo.gamma, 0.125);

  v1::MethodParams set;
  set.set_beta(0.7);
  set.set_ofmu_rho_growth(1.5);
  set.set_retain_loss("kl");
  const ObjectiveParams chosen =
      ObjectiveParamsFromSpec(UnlearningMethod::kOfmu, set);
  EXPECT_EQ(chosen.beta, 0.7);
  EXPECT_EQ(chosen.ofmu_rho_growth, 1.5);
  EXPECT_EQ(chosen.retain_loss, RetainLoss::kKl);
}

TEST(MethodFromSpecTest, MapsEveryMethodAndRefusesTheRest) {
  const google::protobuf::EnumDescriptor* methods = v1::Method_descriptor();
  for (int i = 0; i < methods->value_count(); ++i) {
    const auto method = static_cast<v1::Method>(methods->value(i)->number());
    const absl::StatusOr<UnlearningMethod> mapped = MethodFromSpec(method);
    if (method == v1::METHOD_UNSPECIFIED) {
      EXPECT_EQ(mapped.status().code(), absl::StatusCode::kInvalidArgument);
      continue;
    }
    ASSERT_TRUE(mapped.ok()) << methods->value(i)->name();
    // The proto's names and the objective's differ only in case and '_'.
    std::string proto_name, objective_name;
    for (char c : methods->value(i)->name()) {
      if (c != '_') proto_name.push_back(c);
    }
    for (char c : UnlearningMethodName(*mapped)) {
      if (c != '_') objective_name.push_back(std::toupper(c));
    }
    EXPECT_EQ(proto_name, objective_name);
  }
  EXPECT_FALSE(MethodFromSpec(static_cast<v1::Method>(99)).ok());
}

TEST_F(JobSpecTest, CoefficientsAreCheckedAsTheObjectiveWillUseThem) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_method_params()->set_alpha(0);  // NPO_RT without retain term.
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  spec.set_method(v1::NPO);
  spec.mutable_method_params()->set_beta(0);  // NPO divides by beta.
  const absl::Status status = ValidateJobSpec(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(status.message(), "spec.method_params: beta"))
      << status;
  spec.set_method(v1::GRAD_DIFF);  // Beta is unused there.
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
}

TEST_F(JobSpecTest, MsaNeedsItsBaseModelAndNonNegativeWeights) {
  std::filesystem::create_directories(root_ + "/base");
  WriteFile(root_ + "/base/config.json", "{}");
  v1::JobSpec spec = ValidSpec();
  spec.set_method(v1::MSA);
  auto expect_invalid = [&](absl::StatusCode code, const std::string& field) {
    const absl::Status status = ValidateJobSpec(spec);
    EXPECT_EQ(status.code(), code) << status;
    EXPECT_TRUE(absl::StartsWith(status.message(), field + ": ")) << status;
  };
  expect_invalid(absl::StatusCode::kInvalidArgument, "spec.base_model_dir");
  spec.set_base_model_dir(root_ + "/nope");
  expect_invalid(absl::StatusCode::kNotFound, "spec.base_model_dir");
  spec.set_base_model_dir(root_ + "/data");  // No config.json there.
  expect_invalid(absl::StatusCode::kNotFound, "spec.base_model_dir");
  spec.set_base_model_dir(root_ + "/base");
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  EXPECT_EQ(*MethodFromSpec(v1::MSA), UnlearningMethod::kMsa);
  const ObjectiveParams defaults =
      ObjectiveParamsFromSpec(UnlearningMethod::kMsa, spec.method_params());
  EXPECT_EQ(defaults.alpha, 1.0);
  EXPECT_EQ(defaults.beta, 1.0);
  EXPECT_TRUE(MethodNeeds(UnlearningMethod::kMsa, defaults).retain_batch);

  spec.mutable_method_params()->set_beta(0);  // Forget vector only.
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  EXPECT_FALSE(MethodNeeds(UnlearningMethod::kMsa,
                           ObjectiveParamsFromSpec(UnlearningMethod::kMsa,
                                                   spec.method_params()))
                   .retain_batch);
  spec.mutable_method_params()->set_beta(-0.5);
  expect_invalid(absl::StatusCode::kInvalidArgument, "spec.method_params.beta");
  spec.mutable_method_params()->set_beta(1);
  spec.mutable_method_params()->set_alpha(-1);
  expect_invalid(absl::StatusCode::kInvalidArgument,
                 "spec.method_params.alpha");
  spec.mutable_method_params()->set_alpha(2);
  spec.mutable_lora()->set_rank(8);
  expect_invalid(absl::StatusCode::kInvalidArgument, "spec.lora.rank");
  spec.mutable_lora()->set_rank(0);
  spec.set_output_dir(root_ + "/base/out");
  expect_invalid(absl::StatusCode::kInvalidArgument, "spec.output_dir");

  spec = ValidSpec();  // NPO_RT.
  spec.set_base_model_dir(root_ + "/base");
  expect_invalid(absl::StatusCode::kInvalidArgument, "spec.base_model_dir");
}

TEST_F(JobSpecTest, RegluNeedsLoraAndChecksItsCoefficients) {
  v1::JobSpec spec = ValidSpec();
  spec.set_method(v1::REGLU);
  auto expect_invalid = [&](const std::string& field) {
    const absl::Status status = ValidateJobSpec(spec);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_TRUE(absl::StartsWith(status.message(), field + ": ")) << status;
  };
  expect_invalid("spec.lora.rank");  // No adapters to train.
  spec.mutable_lora()->set_rank(32);
  spec.mutable_lora()->set_alpha(64);
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  EXPECT_EQ(*MethodFromSpec(v1::REGLU), UnlearningMethod::kReglu);
  const ObjectiveParams defaults =
      ObjectiveParamsFromSpec(UnlearningMethod::kReglu, spec.method_params());
  EXPECT_EQ(defaults.reglu_forget_loss, RegluForgetLoss::kIhl);
  EXPECT_EQ(defaults.reglu_beta_r, 0.7);
  EXPECT_EQ(defaults.reglu_rol_weight, 0.5);
  EXPECT_EQ(defaults.reglu_retain_rank, 128);
  EXPECT_EQ(defaults.reglu_samples, 256);
  EXPECT_EQ(defaults.gamma, 1.0);
  EXPECT_EQ(defaults.alpha, 1.0);
  EXPECT_TRUE(MethodNeeds(UnlearningMethod::kReglu, defaults).retain_batch);

  v1::MethodParams& params = *spec.mutable_method_params();
  params.set_reglu_forget_loss("gd");
  params.set_reglu_beta_r(0.5);
  params.set_reglu_rol_weight(0);  // No ROL: a value, not the default.
  params.set_reglu_retain_rank(64);
  params.set_reglu_samples(100);
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  const ObjectiveParams chosen =
      ObjectiveParamsFromSpec(UnlearningMethod::kReglu, params);
  EXPECT_EQ(chosen.reglu_forget_loss, RegluForgetLoss::kGd);
  EXPECT_EQ(chosen.reglu_beta_r, 0.5);
  EXPECT_EQ(chosen.reglu_rol_weight, 0.0);
  EXPECT_EQ(chosen.reglu_retain_rank, 64);
  EXPECT_EQ(chosen.reglu_samples, 100);

  params.set_reglu_forget_loss("npo");
  expect_invalid("spec.method_params.reglu_forget_loss");
  params.set_reglu_forget_loss("ihl");
  params.set_reglu_beta_r(1.5);
  expect_invalid("spec.method_params.reglu_beta_r");
  params.set_reglu_beta_r(0.7);
  params.set_reglu_rol_weight(-1);
  expect_invalid("spec.method_params.reglu_rol_weight");
  params.set_reglu_rol_weight(0.5);
  params.set_reglu_retain_rank(0);
  expect_invalid("spec.method_params.reglu_retain_rank");
  params.set_reglu_retain_rank(128);
  params.set_reglu_samples(-3);
  expect_invalid("spec.method_params.reglu_samples");
}

TEST_F(JobSpecTest, PgaPairsTheForgetSplitWithAHoldoutSplit) {
  WriteFile(root_ + "/data/holdout10.json", "[]");
  v1::JobSpec minimal = MinimalSpec();
  minimal.set_method(v1::PGA);
  v1::JobSpec spec = JobSpecWithDefaults(minimal);
  EXPECT_EQ(spec.holdout_split(), "holdout10") << "TOFU's pair of forget10";
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  EXPECT_EQ(JobSpecWithDefaults(MinimalSpec()).holdout_split(), "")
      << "only PGA's specs get one";
  EXPECT_EQ(*MethodFromSpec(v1::PGA), UnlearningMethod::kPga);
  const ObjectiveParams defaults =
      ObjectiveParamsFromSpec(UnlearningMethod::kPga, spec.method_params());
  EXPECT_EQ(defaults.pga_align_weight, 1.0);
  EXPECT_EQ(defaults.pga_ce_weight, 1.0);
  EXPECT_EQ(defaults.pga_refit_every_epochs, 25);
  EXPECT_TRUE(defaults.pga_depths.empty());
  EXPECT_EQ(defaults.pga_projection_rank, 1);

  v1::MethodParams& params = *spec.mutable_method_params();
  params.set_pga_align_weight(0);  // A value, not the default.
  params.set_pga_ce_weight(2);
  params.set_pga_refit_every_epochs(5);
  params.add_pga_depths(3);
  params.add_pga_depths(1);
  params.set_pga_projection_rank(0);
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  const ObjectiveParams chosen =
      ObjectiveParamsFromSpec(UnlearningMethod::kPga, params);
  EXPECT_EQ(chosen.pga_align_weight, 0.0);
  EXPECT_EQ(chosen.pga_ce_weight, 2.0);
  EXPECT_EQ(chosen.pga_refit_every_epochs, 5);
  EXPECT_EQ(chosen.pga_depths, (std::vector<int>{3, 1}));
  EXPECT_EQ(chosen.pga_projection_rank, 0);

  auto expect_refused = [&](absl::StatusCode code, const std::string& field) {
    const absl::Status status = ValidateJobSpec(spec);
    EXPECT_EQ(status.code(), code) << status;
    EXPECT_TRUE(absl::StartsWith(status.message(), field + ": ")) << status;
  };
  params.set_pga_refit_every_epochs(0);
  expect_refused(absl::StatusCode::kInvalidArgument,
                 "spec.method_params.pga_refit_every_epochs");
  params.set_pga_refit_every_epochs(5);
  params.set_pga_ce_weight(-1);
  expect_refused(absl::StatusCode::kInvalidArgument,
                 "spec.method_params.pga_ce_weight");
  params.set_pga_ce_weight(1);
  params.add_pga_depths(-2);
  expect_refused(absl::StatusCode::kInvalidArgument,
                 "spec.method_params.pga_depths");
  params.clear_pga_depths();
  params.set_pga_projection_rank(-1);
  expect_refused(absl::StatusCode::kInvalidArgument,
                 "spec.method_params.pga_projection_rank");
  params.clear_pga_projection_rank();

  spec.set_holdout_split("holdout05");  // No such file.
  expect_refused(absl::StatusCode::kNotFound, "spec.holdout_split");
  spec.set_holdout_split("forget10");
  expect_refused(absl::StatusCode::kInvalidArgument, "spec.holdout_split");
  minimal.set_forget_split("forget05");  // Only forget05.jsonl exists.
  minimal.set_retain_split("retain90");
  spec = JobSpecWithDefaults(minimal);
  EXPECT_EQ(spec.holdout_split(), "holdout05");
  minimal.set_forget_split("my_forget");  // Not forgetNN: no default.
  WriteFile(root_ + "/data/my_forget.json", "[]");
  spec = JobSpecWithDefaults(minimal);
  EXPECT_EQ(spec.holdout_split(), "");
  expect_refused(absl::StatusCode::kInvalidArgument, "spec.holdout_split");

  spec = ValidSpec();  // NPO_RT.
  spec.set_holdout_split("holdout10");
  expect_refused(absl::StatusCode::kInvalidArgument, "spec.holdout_split");
}

TEST_F(JobSpecTest, IhlIsAMethodWithForgetAndRetainWeights) {
  v1::JobSpec spec = ValidSpec();
  spec.set_method(v1::IHL);
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  EXPECT_EQ(*MethodFromSpec(v1::IHL), UnlearningMethod::kIhl);
  const ObjectiveParams defaults =
      ObjectiveParamsFromSpec(UnlearningMethod::kIhl, spec.method_params());
  EXPECT_EQ(defaults.gamma, 1.0) << "ReGLU: forget IHL + retain NLL";
  EXPECT_EQ(defaults.alpha, 1.0);
  EXPECT_TRUE(MethodNeeds(UnlearningMethod::kIhl, defaults).retain_batch);

  spec.mutable_method_params()->set_gamma(0.5);
  spec.mutable_method_params()->set_alpha(0);  // Forget term only.
  spec.mutable_method_params()->set_beta(0);   // Unused by IHL.
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  const ObjectiveParams chosen =
      ObjectiveParamsFromSpec(UnlearningMethod::kIhl, spec.method_params());
  EXPECT_EQ(chosen.gamma, 0.5);
  EXPECT_EQ(chosen.alpha, 0.0);

  spec.mutable_method_params()->set_gamma(-1);
  absl::Status status = ValidateJobSpec(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("spec.method_params.gamma"),
            std::string::npos)
      << status;
  spec.mutable_method_params()->set_gamma(1);
  spec.mutable_method_params()->set_alpha(-0.5);
  status = ValidateJobSpec(spec);
  EXPECT_NE(status.message().find("spec.method_params.alpha"),
            std::string::npos)
      << status;
}

TEST(JobSpecDefaultsTest, RetainSplitFollowsTofuNaming) {
  for (const auto& [forget, retain] :
       std::vector<std::pair<std::string, std::string>>{
           {"forget01", "retain99"},
           {"forget05", "retain95"},
           {"forget10", "retain90"},
           {"forget_custom", ""},
           {"forget00", ""},
           {"forget1", ""}}) {
    v1::JobSpec spec;
    spec.set_forget_split(forget);
    EXPECT_EQ(JobSpecWithDefaults(spec).retain_split(), retain) << forget;
  }
}

TEST(JobSpecDefaultsTest, KeepsWhatIsSet) {
  v1::JobSpec spec;
  spec.set_model_dir("/models/m/");
  spec.set_tokenizer_path("/tok/t.model");
  spec.set_forget_split("forget10");
  spec.set_retain_split("retain_custom");
  spec.set_prompt_template("llama2_chat");
  spec.mutable_optimizer()->set_learning_rate(2e-5);  // Others stay 0.
  spec.set_max_steps(10);
  spec.set_device(v1::CUDA);
  spec.mutable_run_policy()->mutable_deadline()->set_seconds(60);
  spec.mutable_checkpoint()->set_keep_last(7);
  const v1::JobSpec filled = JobSpecWithDefaults(spec);
  EXPECT_EQ(filled.tokenizer_path(), "/tok/t.model");
  EXPECT_EQ(filled.retain_split(), "retain_custom");
  EXPECT_EQ(filled.prompt_template(), "llama2_chat");
  EXPECT_EQ(filled.optimizer().learning_rate(), 2e-5);
  EXPECT_EQ(filled.optimizer().weight_decay(), 0);
  EXPECT_EQ(filled.optimizer().warmup_epochs(), 0);
  EXPECT_EQ(filled.optimizer().max_grad_norm(), 0);
  EXPECT_EQ(filled.num_epochs(), 0);
  EXPECT_EQ(filled.max_steps(), 10);
  EXPECT_EQ(filled.backend(), v1::NCCL);
  EXPECT_EQ(filled.checkpoint().keep_last(), 7);
  EXPECT_EQ(filled.run_policy().max_restarts(), 0);

  // An optimizer message with only a zero learning rate still gets 1e-5.
  v1::JobSpec zero_rate;
  zero_rate.mutable_optimizer()->set_weight_decay(0.1);
  EXPECT_EQ(JobSpecWithDefaults(zero_rate).optimizer().learning_rate(), 1e-5);
  EXPECT_EQ(JobSpecWithDefaults(zero_rate).optimizer().weight_decay(), 0.1);

  v1::JobSpec trailing_slash;
  trailing_slash.set_model_dir("/models/m/");
  EXPECT_EQ(JobSpecWithDefaults(trailing_slash).tokenizer_path(),
            "/models/m/tokenizer.model");
}

TEST(ParseJobSpecJsonTest, ReadsBothFieldNameStylesAndEnumNames) {
  const absl::StatusOr<v1::JobSpec> spec = ParseJobSpecJson(
      R"({
        "modelDir": "/models/m",
        "data_dir": "/data/tofu",
        "forgetSplit": "forget10",
        "method": "NPO_RT",
        "methodParams": {"beta": 0.1, "retain_loss": "kl"},
        "optimizer": {"learningRate": 2e-5, "max_grad_norm": 0.5},
        "maxSteps": "100",
        "backend": "GLOO",
        "device": "CPU",
        "runPolicy": {"maxRestarts": 3, "deadline": "3600s"},
        "priority": -5
      })",
      "spec.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model_dir(), "/models/m");
  EXPECT_EQ(spec->data_dir(), "/data/tofu");
  EXPECT_EQ(spec->forget_split(), "forget10");
  EXPECT_EQ(spec->method(), v1::NPO_RT);
  EXPECT_EQ(spec->method_params().beta(), 0.1);
  EXPECT_EQ(spec->method_params().retain_loss(), "kl");
  EXPECT_EQ(spec->optimizer().learning_rate(), 2e-5);
  EXPECT_EQ(spec->optimizer().max_grad_norm(), 0.5);
  EXPECT_EQ(spec->max_steps(), 100);
  EXPECT_EQ(spec->backend(), v1::GLOO);
  EXPECT_EQ(spec->device(), v1::CPU);
  EXPECT_EQ(spec->run_policy().max_restarts(), 3);
  EXPECT_EQ(spec->run_policy().deadline().seconds(), 3600);
  EXPECT_EQ(spec->priority(), -5);
}

TEST(ParseJobSpecJsonTest, RoundTripsThroughJson) {
  v1::JobSpec spec;
  spec.set_model_dir("/models/m");
  spec.set_method(v1::SIM_NPO);
  spec.mutable_method_params()->set_delta(-1.5);
  spec.set_world_size(8);
  spec.set_backend(v1::NCCL);
  spec.set_device(v1::CUDA);
  spec.set_display_name("forget author \"X\"");
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(spec, &json).ok());
  const absl::StatusOr<v1::JobSpec> parsed = ParseJobSpecJson(json, "x");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*parsed, spec)) << json;
}

TEST(ParseJobSpecJsonTest, RejectsUnknownFieldsAndBadValuesNamingTheSource) {
  for (const std::string json :
       {R"({"modelDir": "/m", "learningRate": 1e-5})",
        R"({"method": "NPO_PLUS"})", R"({"worldSize": "many"})",
        R"({"modelDir": )", ""}) {
    const absl::StatusOr<v1::JobSpec> spec =
        ParseJobSpecJson(json, "specs/bad.json");
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << json;
    EXPECT_TRUE(absl::StartsWith(spec.status().message(), "specs/bad.json: "))
        << spec.status();
  }
  const absl::StatusOr<v1::JobSpec> unknown =
      ParseJobSpecJson(R"({"learningRate": 1e-5})", "request");
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "learningRate"))
      << unknown.status();
}

// The README's example spec, as JSON and as YAML.
constexpr char kReadmeSpecJson[] = R"({
  "model_dir": "/abs/path/.lethe/benchmark/target",
  "data_dir": "/abs/path/.lethe/benchmark/data",
  "forget_split": "forget10",
  "method": "NPO_RT",
  "method_params": {"beta": 1},
  "optimizer": {"learning_rate": 1e-3, "weight_decay": 0.01,
                "warmup_epochs": 1, "max_grad_norm": 1, "seed": 1},
  "num_epochs": 5,
  "per_device_batch_size": 4,
  "world_size": 2,
  "evaluation": {"every_epochs": 2,
                 "retain_logs_path": "/abs/path/.lethe/benchmark/retain/TOFU_EVAL.json"},
  "checkpoint": {"every_steps": 10},
  "run_policy": {"max_restarts": 2, "deadline": "3600s"},
  "output_dir": "/abs/path/out/npo_rt"
})";

constexpr char kReadmeSpecYaml[] =
    R"(# NPO+RT on forget10, data-parallel over two workers.
model_dir: /abs/path/.lethe/benchmark/target
data_dir: /abs/path/.lethe/benchmark/data
forget_split: forget10
method: NPO_RT
method_params: {beta: 1}
optimizer:
  learning_rate: 1e-3
  weight_decay: 0.01
  warmup_epochs: 1
  max_grad_norm: 1
  seed: 1
num_epochs: 5
per_device_batch_size: 4
world_size: 2
evaluation:
  every_epochs: 2
  retain_logs_path: /abs/path/.lethe/benchmark/retain/TOFU_EVAL.json
checkpoint: {every_steps: 10}
run_policy: {max_restarts: 2, deadline: 3600s}
output_dir: /abs/path/out/npo_rt
)";

TEST(ParseJobSpecYamlTest, GivesTheSameSpecAsJson) {
  const absl::StatusOr<v1::JobSpec> from_json =
      ParseJobSpecJson(kReadmeSpecJson, "spec.json");
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  const absl::StatusOr<v1::JobSpec> from_yaml =
      ParseJobSpecYaml(kReadmeSpecYaml, "spec.yaml");
  ASSERT_TRUE(from_yaml.ok()) << from_yaml.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*from_yaml, *from_json))
      << from_yaml->DebugString() << "\nvs\n"
      << from_json->DebugString();
  EXPECT_EQ(from_yaml->optimizer().learning_rate(), 1e-3);
  EXPECT_EQ(from_yaml->run_policy().deadline().seconds(), 3600);
  EXPECT_EQ(from_yaml->method(), v1::NPO_RT);
}

TEST(ParseJobSpecYamlTest, ReadsEveryFieldThatJsonWrites) {
  // Every field set; protobuf's JSON output is also a YAML flow mapping.
  v1::JobSpec spec;
  spec.set_model_dir("/models/m");
  spec.set_tokenizer_path("/models/m/tokenizer.model");
  spec.set_data_dir("/data");
  spec.set_forget_split("forget05");
  spec.set_retain_split("retain95");
  spec.set_prompt_template("llama2_chat");
  spec.set_method(v1::OFMU);
  v1::MethodParams& params = *spec.mutable_method_params();
  params.set_beta(0.5);
  params.set_alpha(2);
  params.set_gamma(1.25);
  params.set_delta(-1.5);
  params.set_retain_loss("kl");
  params.set_random_answer_weight(0.3);
  params.set_ofmu_inner_steps(3);
  params.set_ofmu_inner_learning_rate(1e-4);
  params.set_ofmu_rho(0.7);
  params.set_ofmu_rho_growth(1.5);
  params.set_ofmu_first_order(true);
  spec.mutable_optimizer()->set_learning_rate(3e-5);
  spec.mutable_optimizer()->set_seed(42);
  spec.set_max_steps(1234567890123);
  spec.set_per_device_batch_size(8);
  spec.set_gradient_accumulation_steps(2);
  spec.set_world_size(4);
  spec.set_threads_per_worker(3);
  spec.set_device(v1::CUDA);
  spec.set_backend(v1::NCCL);
  spec.mutable_evaluation()->set_every_epochs(1);
  spec.mutable_checkpoint()->set_every_steps(5);
  spec.mutable_checkpoint()->set_keep_last(3);
  spec.mutable_run_policy()->set_max_restarts(0);
  spec.mutable_run_policy()->mutable_deadline()->set_seconds(90);
  spec.set_output_dir("/runs/1");
  spec.set_display_name("forget \"X\": 10%, #1");
  spec.set_priority(-7);
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(spec, &json).ok());
  const absl::StatusOr<v1::JobSpec> parsed = ParseJobSpecYaml(json, "x.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << json;
  EXPECT_TRUE(MessageDifferencer::Equals(*parsed, spec)) << json;
}

TEST_F(JobSpecTest, YamlSpecsFailValidationLikeJsonOnes) {
  const std::string paths = absl::StrCat(
      "model_dir: ", root_, "/model\ndata_dir: ", root_,
      "/data\nforget_split: forget10\nmethod: NPO_RT\noutput_dir: ", root_,
      "/runs/job1\n");
  const struct {
    std::string yaml;
    std::string json;
    std::string message;
  } cases[] = {
      {"", "{}", ""},
      {"method_params: {delta: -.inf}",
       R"({"method_params": {"delta": "-Infinity"}})",
       "spec.method_params.delta: must be finite, got -inf"},
      {"method_params: {beta: .nan}", R"({"method_params": {"beta": "NaN"}})",
       "spec.method_params.beta: must be >= 0 and finite, got nan"},
      {"optimizer: {learning_rate: -1}",
       R"({"optimizer": {"learning_rate": -1}})",
       "spec.optimizer.learning_rate: must be positive and finite, got -1"},
      {"world_size: 0x800", R"({"world_size": 2048})",
       "spec.world_size: must be in [1, 1024], got 2048"},
  };
  const std::string json_paths = absl::StrCat(
      R"({"model_dir": ")", root_, R"(/model", "data_dir": ")", root_,
      R"(/data", "forget_split": "forget10", )",
      R"("method": "NPO_RT", "output_dir": ")", root_, R"(/runs/job1"})");
  for (const auto& c : cases) {
    const absl::StatusOr<v1::JobSpec> from_yaml =
        ParseJobSpecYaml(paths + c.yaml, "spec.yaml");
    ASSERT_TRUE(from_yaml.ok()) << from_yaml.status() << "\n" << c.yaml;
    absl::StatusOr<v1::JobSpec> from_json =
        ParseJobSpecJson(json_paths, "spec.json");
    ASSERT_TRUE(from_json.ok()) << from_json.status();
    const absl::StatusOr<v1::JobSpec> overrides =
        ParseJobSpecJson(c.json, "spec.json");
    ASSERT_TRUE(overrides.ok()) << overrides.status() << "\n" << c.json;
    from_json->MergeFrom(*overrides);
    google::protobuf::util::DefaultFieldComparator nan_equal;
    nan_equal.set_treat_nan_as_equal(true);
    MessageDifferencer differencer;
    differencer.set_field_comparator(&nan_equal);
    EXPECT_TRUE(differencer.Compare(*from_yaml, *from_json)) << c.yaml;
    const absl::Status yaml_status =
        ValidateJobSpec(JobSpecWithDefaults(*from_yaml));
    const absl::Status json_status =
        ValidateJobSpec(JobSpecWithDefaults(*from_json));
    EXPECT_EQ(std::string(yaml_status.message()), c.message) << c.yaml;
    EXPECT_EQ(yaml_status, json_status) << c.yaml;
  }
}

TEST(ParseJobSpecYamlTest, ErrorsNameTheSourceAndWhereTheProblemIs) {
  const struct {
    std::string yaml;
    std::string message;
  } cases[] = {
      {"model_dir: /m\nmethod: NPO\n  beta: 1\n",
       "specs/bad.yaml:3:7: mapping values are not allowed in this context"},
      {"method: NPO\nmethod: GA\n",
       "specs/bad.yaml:2:1: duplicate key \"method\" (first at line 1)"},
      {"- model_dir: /m\n",
       "specs/bad.yaml: a job spec is a mapping of field names to values, got "
       "array"},
      {"# nothing yet\n",
       "specs/bad.yaml: a job spec is a mapping of field names to values, got "
       "an empty document"},
      {"model_dir: !!binary aGVsbG8=\n",
       "specs/bad.yaml:1:12: unsupported tag !!binary (only !!null, !!bool, "
       "!!int, !!float, !!str, !!seq and !!map)"},
  };
  for (const auto& c : cases) {
    const absl::StatusOr<v1::JobSpec> spec =
        ParseJobSpecYaml(c.yaml, "specs/bad.yaml");
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument)
        << c.yaml;
    EXPECT_EQ(std::string(spec.status().message()), c.message) << c.yaml;
  }
  // Field errors are protobuf's, as for JSON.
  for (const auto& [yaml, json] :
       {std::pair<std::string, std::string>{"learningRate: 1e-5",
                                            R"({"learningRate": 1e-5})"},
        {"method: NPO_PLUS", R"({"method": "NPO_PLUS"})"},
        {"world_size: many", R"({"world_size": "many"})"},
        {"method_params: [1]", R"({"method_params": [1]})"}}) {
    const absl::StatusOr<v1::JobSpec> from_yaml =
        ParseJobSpecYaml(yaml, "specs/bad");
    const absl::StatusOr<v1::JobSpec> from_json =
        ParseJobSpecJson(json, "specs/bad");
    EXPECT_EQ(from_yaml.status().code(), absl::StatusCode::kInvalidArgument)
        << yaml;
    EXPECT_EQ(from_yaml.status(), from_json.status()) << yaml;
  }
}

TEST_F(JobSpecTest, ReadJobSpecFileDispatchesOnTheExtension) {
  const std::string json_path = root_ + "/spec.json";
  WriteFile(json_path, kReadmeSpecJson);
  const absl::StatusOr<v1::JobSpec> expected = ReadJobSpecFile(json_path);
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_EQ(expected->forget_split(), "forget10");
  for (const std::string name : {"spec.yaml", "spec.yml", "SPEC.YML"}) {
    const std::string path = absl::StrCat(root_, "/", name);
    WriteFile(path, kReadmeSpecYaml);
    const absl::StatusOr<v1::JobSpec> spec = ReadJobSpecFile(path);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_TRUE(MessageDifferencer::Equals(*spec, *expected)) << name;
  }

  // YAML is not read as JSON, nor JSON-only syntax errors as YAML's.
  const std::string yaml_as_json = root_ + "/yaml.json";
  WriteFile(yaml_as_json, kReadmeSpecYaml);
  EXPECT_TRUE(absl::StartsWith(ReadJobSpecFile(yaml_as_json).status().message(),
                               absl::StrCat(yaml_as_json, ": not a valid")))
      << ReadJobSpecFile(yaml_as_json).status();
  const std::string bad_yaml = root_ + "/bad.yaml";
  WriteFile(bad_yaml, "model_dir: /m\n  method: GA\n");
  EXPECT_EQ(std::string(ReadJobSpecFile(bad_yaml).status().message()),
            absl::StrCat(bad_yaml,
                         ":2:9: mapping values are not allowed in this "
                         "context"));

  const absl::Status text = ReadJobSpecFile(root_ + "/spec.txt").status();
  EXPECT_EQ(text.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(text.message()),
            absl::StrCat(root_,
                         "/spec.txt: a spec file ends in .json, .yaml or "
                         ".yml, got \".txt\""));
  EXPECT_EQ(ReadJobSpecFile(root_ + "/spec").status().code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status missing =
      ReadJobSpecFile(root_ + "/missing.yaml").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound) << missing;
  EXPECT_TRUE(absl::StrContains(missing.message(), "missing.yaml")) << missing;
}

}  // namespace
}  // namespace lethe
