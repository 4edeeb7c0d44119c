#include "libs/plan/memory_plan.h"

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/files/source_path_test_util.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"

namespace lethe {
namespace {

std::string TestdataDir(const std::string& name) {
  const std::string relative = "libs/plan/testdata/" + name;
  return SourcePath(relative);
}

LlamaConfig Fixture(const std::string& name) {
  absl::StatusOr<LlamaConfig> config =
      ReadLlamaConfig(TestdataDir(name) + "/config.json");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : LlamaConfig();
}

LlamaConfig Parse(const std::string& json) {
  absl::StatusOr<LlamaConfig> config = ParseLlamaConfig(json, "test.json");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : LlamaConfig();
}

// Tiny configs of every family, with each family's quirks switched on
// (GQA, Qwen2's q/k/v biases, Llama's attention and MLP biases, Gemma's
// explicit head_dim and tied embeddings, Gemma 2's sandwich norms).
std::vector<LlamaConfig> TinyFamilyConfigs() {
  return {
      Parse(R"({"model_type": "llama", "vocab_size": 40, "hidden_size": 16,
          "intermediate_size": 24, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2,
          "tie_word_embeddings": false})"),
      Parse(R"({"model_type": "llama", "vocab_size": 40, "hidden_size": 16,
          "intermediate_size": 24, "num_hidden_layers": 3,
          "num_attention_heads": 4, "num_key_value_heads": 4,
          "attention_bias": true, "mlp_bias": true,
          "tie_word_embeddings": true})"),
      Parse(R"({"model_type": "qwen2", "vocab_size": 40, "hidden_size": 16,
          "intermediate_size": 24, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2,
          "tie_word_embeddings": true, "use_sliding_window": false})"),
      Parse(R"({"model_type": "mistral", "vocab_size": 40, "hidden_size": 16,
          "intermediate_size": 24, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 1,
          "sliding_window": 3, "tie_word_embeddings": false})"),
      Parse(R"({"model_type": "phi3", "vocab_size": 40, "hidden_size": 16,
          "intermediate_size": 24, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2,
          "original_max_position_embeddings": 64, "rope_scaling": null,
          "sliding_window": null, "tie_word_embeddings": false,
          "bos_token_id": 1, "eos_token_id": 32, "pad_token_id": 32})"),
      Parse(R"({"model_type": "gemma", "vocab_size": 40, "hidden_size": 12,
          "intermediate_size": 20, "num_hidden_layers": 2,
          "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
          "hidden_activation": "gelu_pytorch_tanh"})"),
      Parse(R"({"model_type": "gemma2", "vocab_size": 40, "hidden_size": 12,
          "intermediate_size": 20, "num_hidden_layers": 3,
          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 6,
          "hidden_activation": "gelu_pytorch_tanh",
          "query_pre_attn_scalar": 5, "sliding_window": 3,
          "attn_logit_softcapping": 2.0, "final_logit_softcapping": 3.0})"),
  };
}

TEST(CountParametersTest, EqualsTheModelsCountForEveryFamily) {
  for (const LlamaConfig& config : TinyFamilyConfigs()) {
    LlamaForCausalLM model(config, ParameterInit::kUninitialized);
    EXPECT_EQ(CountParameters(config), model.NumParameters())
        << config.model_type << " tied=" << config.tie_word_embeddings
        << " attention_bias=" << config.attention_bias;
  }
}

TEST(CountParametersTest, EqualsPublishedCountsOfRealModels) {
  // The counts Hugging Face's model pages report (safetensors metadata).
  EXPECT_EQ(CountParameters(Fixture("llama-3.2-1b")), 1235814400);
  EXPECT_EQ(CountParameters(Fixture("llama-3.2-3b")), 3212749824);
  EXPECT_EQ(CountParameters(Fixture("llama-3.1-8b")), 8030261248);
  EXPECT_EQ(CountParameters(Fixture("qwen2.5-7b")), 7615616512);
}

TEST(CountLoraParametersTest, RankTimesInPlusOutPerModulePerLayer) {
  const LlamaConfig config = Fixture("llama-3.2-1b");
  // q: 2048 -> 2048, k/v: 2048 -> 512, o: 2048 -> 2048, gate/up: 2048 ->
  // 8192, down: 8192 -> 2048; 16 layers.
  absl::StatusOr<int64_t> all =
      CountLoraParameters(config, 16,
                          {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                           "up_proj", "down_proj"});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all,
            16 * 16 * (4096 + 2560 + 2560 + 4096 + 10240 + 10240 + 10240));
  // PEFT's default for Llama: q_proj and v_proj.
  absl::StatusOr<int64_t> defaults = CountLoraParameters(config, 8, {});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(*defaults, 16 * 8 * (4096 + 2560));
  EXPECT_FALSE(CountLoraParameters(config, 8, {"qkv_proj"}).ok());
}

PlanOptions Options(UnlearningMethod method) {
  PlanOptions options;
  options.method = method;
  options.params = DefaultObjectiveParams(method);
  options.batch_size = 4;
  options.max_length = 512;
  return options;
}

TEST(PlanMemoryTest, FullTrainingFp32CountsWeightsGradientsAndAdam) {
  const LlamaConfig config = Fixture("llama-3.2-1b");
  absl::StatusOr<MemoryPlan> plan =
      PlanMemory(config, Options(UnlearningMethod::kNpoRt));
  ASSERT_TRUE(plan.ok()) << plan.status();
  const int64_t n = 1235814400;
  EXPECT_EQ(plan->weights, 4 * n);
  EXPECT_EQ(plan->gradients, 4 * n);
  EXPECT_EQ(plan->optimizer_state, 8 * n);
  // NPO_RT reads cached reference log-probs: no second model.
  EXPECT_FALSE(plan->holds_reference_model);
  EXPECT_EQ(plan->reference_model, 0);
  EXPECT_GT(plan->reference_pass_bytes, 0);
  EXPECT_GT(plan->activations, 0);
  EXPECT_GT(plan->logits, 0);
  EXPECT_EQ(plan->total_bytes(),
            std::max(plan->training_bytes(), plan->reference_pass_bytes));
}

TEST(PlanMemoryTest, KlMethodsHoldAReferenceModelInItsDtype) {
  const LlamaConfig config = Fixture("llama-3.2-1b");
  const int64_t n = 1235814400;
  for (UnlearningMethod method :
       {UnlearningMethod::kNpoKl, UnlearningMethod::kLlmu}) {
    absl::StatusOr<MemoryPlan> plan = PlanMemory(config, Options(method));
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(plan->reference_model, 4 * n) << UnlearningMethodName(method);
  }
  PlanOptions options = Options(UnlearningMethod::kNpoKl);
  options.bf16_reference = true;
  absl::StatusOr<MemoryPlan> bf16 = PlanMemory(config, options);
  ASSERT_TRUE(bf16.ok());
  EXPECT_EQ(bf16->reference_model, 2 * n);
  // GradDiff keeps one only with a KL retain term.
  options = Options(UnlearningMethod::kGradDiff);
  EXPECT_EQ(PlanMemory(config, options)->reference_model, 0);
  options.params.retain_loss = RetainLoss::kKl;
  EXPECT_EQ(PlanMemory(config, options)->reference_model, 4 * n);
  // SimNPO needs no reference at all, not even the log-prob pass.
  absl::StatusOr<MemoryPlan> simnpo =
      PlanMemory(config, Options(UnlearningMethod::kSimNpo));
  EXPECT_EQ(simnpo->reference_model, 0);
  EXPECT_EQ(simnpo->reference_pass_bytes, 0);
}

// REGLU on Llama 3.2 1B (hidden 2048, q 2048, k/v 512, MLP 8192, 16
// layers), LoRA rank 32 on all seven projections, 256 samples a set, k 128,
// counted by hand.
TEST(PlanMemoryTest, RegluHoldsRetainBasesAndPlansRilasFp64Work) {
  const LlamaConfig config = Fixture("llama-3.2-1b");
  PlanOptions options = Options(UnlearningMethod::kReglu);
  options.lora_rank = 32;
  options.lora_target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                 "gate_proj", "up_proj", "down_proj"};
  absl::StatusOr<MemoryPlan> plan = PlanMemory(config, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const int64_t outputs = 2048 + 512 + 512 + 2048 + 8192 + 8192 + 2048;
  const int64_t inputs = 2048 * 6 + 8192;
  const int64_t adapters = 32 * (inputs + outputs) * 16;
  ASSERT_EQ(plan->lora_parameters, adapters);
  // Q_R (k = 128 columns, all outputs are wider) and A0, B0, fp32.
  EXPECT_EQ(plan->method_state, 16 * 4 * outputs * 128 + 4 * adapters);
  // Input sums of 512 samples, fp64; then gate_proj's (or up_proj's) fp64
  // weight, features and five 8192 x 8192 matrices.
  const int64_t sums = 16 * 8 * 512 * inputs;
  const int64_t gate = 8 * (8192 * 2048 + 512 * 8192 + 5 * 8192LL * 8192);
  EXPECT_EQ(plan->rila_bytes,
            plan->weights + sums + gate + plan->runtime_overhead);
  EXPECT_EQ(plan->total_bytes(),
            std::max({plan->training_bytes(), plan->reference_pass_bytes,
                      plan->rila_bytes}));
  // Data-parallel ranks hold the sums twice while combining them.
  options.world_size = 2;
  absl::StatusOr<MemoryPlan> two = PlanMemory(config, options);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->rila_bytes - plan->rila_bytes, sums);
  // Other methods keep nothing of the kind.
  options = Options(UnlearningMethod::kIhl);
  options.lora_rank = 32;
  absl::StatusOr<MemoryPlan> ihl = PlanMemory(config, options);
  ASSERT_TRUE(ihl.ok());
  EXPECT_EQ(ihl->method_state, 0);
  EXPECT_EQ(ihl->rila_bytes, 0);
}

TEST(PlanMemoryTest, Bf16WeightsHalveWeightsGradientsAndMoments) {
  const LlamaConfig config = Fixture("llama-3.1-8b");
  PlanOptions options = Options(UnlearningMethod::kNpoKl);
  options.weights_dtype = "bf16";
  absl::StatusOr<MemoryPlan> plan = PlanMemory(config, options);
  ASSERT_TRUE(plan.ok());
  const int64_t n = 8030261248;
  EXPECT_EQ(plan->weights_dtype, "bf16");
  EXPECT_EQ(plan->weights, 2 * n);
  EXPECT_EQ(plan->gradients, 2 * n);
  EXPECT_EQ(plan->optimizer_state, 4 * n);
  EXPECT_EQ(plan->reference_model, 2 * n);
  // "auto" reads torch_dtype (bfloat16 in the fixture).
  options.weights_dtype = "auto";
  EXPECT_EQ(PlanMemory(config, options)->weights, 2 * n);
  options.weights_dtype = "int4";
  EXPECT_FALSE(PlanMemory(config, options).ok());
}

TEST(PlanMemoryTest, LoraTrainsAdaptersAndNeedsNoReferenceCopy) {
  const LlamaConfig config = Fixture("llama-3.1-8b");
  PlanOptions options = Options(UnlearningMethod::kNpoKl);
  options.weights_dtype = "bf16";
  options.lora_rank = 16;
  options.lora_target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                 "gate_proj", "up_proj", "down_proj"};
  absl::StatusOr<MemoryPlan> plan = PlanMemory(config, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // 16 x (in + out) over the 7 modules of 32 layers: 41,943,040.
  EXPECT_EQ(plan->lora_parameters, 41943040);
  EXPECT_EQ(plan->trainable_parameters, 41943040);
  EXPECT_EQ(plan->weights, 2 * 8030261248 + 4 * 41943040);
  EXPECT_EQ(plan->gradients, 4 * 41943040);
  EXPECT_EQ(plan->optimizer_state, 8 * 41943040);
  EXPECT_EQ(plan->reference_model, 0);
  EXPECT_FALSE(plan->holds_reference_model);
}

TEST(PlanMemoryTest, MemorySaversShrinkActivationsAndLogits) {
  const LlamaConfig config = Fixture("llama-3.2-1b");
  const PlanOptions plain = Options(UnlearningMethod::kNpoRt);
  PlanOptions saver = plain;
  saver.activation_checkpointing = true;
  saver.loss_chunk_tokens = 256;
  absl::StatusOr<MemoryPlan> a = PlanMemory(config, plain);
  absl::StatusOr<MemoryPlan> b = PlanMemory(config, saver);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_LT(b->activations * 4, a->activations);
  EXPECT_LT(b->logits * 4, a->logits);
  EXPECT_EQ(b->weights, a->weights);
  // Activations grow with the batch; the attention scores with T^2.
  PlanOptions longer = plain;
  longer.max_length = 1024;
  EXPECT_GT(PlanMemory(config, longer)->activations, 2 * a->activations);
}

TEST(PlanMemoryTest, DataParallelRanksDoNotShrink) {
  const LlamaConfig config = Fixture("llama-3.2-3b");
  PlanOptions options = Options(UnlearningMethod::kNpoRt);
  absl::StatusOr<MemoryPlan> one = PlanMemory(config, options);
  options.world_size = 8;
  absl::StatusOr<MemoryPlan> eight = PlanMemory(config, options);
  ASSERT_TRUE(one.ok() && eight.ok());
  EXPECT_GE(eight->total_bytes(), one->total_bytes());
  EXPECT_EQ(eight->weights + eight->gradients + eight->optimizer_state,
            one->weights + one->gradients + one->optimizer_state);
}

TEST(PlanMemoryTest, ZeroShardsOnlyTheOptimizerState) {
  const LlamaConfig config = Fixture("llama-3.2-3b");
  PlanOptions options = Options(UnlearningMethod::kNpoRt);
  options.world_size = 8;
  absl::StatusOr<MemoryPlan> replicated = PlanMemory(config, options);
  ASSERT_TRUE(replicated.ok()) << replicated.status();
  for (int stage : {1, 2}) {
    options.zero_stage = stage;
    absl::StatusOr<MemoryPlan> zero = PlanMemory(config, options);
    ASSERT_TRUE(zero.ok()) << zero.status();
    const int64_t shard = (zero->trainable_parameters + 7) / 8;
    EXPECT_EQ(zero->optimizer_state, shard * 8);  // fp32 moments only.
    // Stage 2 keeps its fp32 gradient shard, stage 1 every gradient.
    EXPECT_EQ(zero->gradients, stage == 2 ? shard * 4 : replicated->gradients);
    EXPECT_EQ(zero->weights, replicated->weights);
  }
  // Accumulating micro-batches hold full gradients before the last one.
  options.gradient_accumulation_steps = 2;
  absl::StatusOr<MemoryPlan> accumulating = PlanMemory(config, options);
  ASSERT_TRUE(accumulating.ok()) << accumulating.status();
  EXPECT_EQ(
      accumulating->gradients,
      replicated->gradients + (accumulating->trainable_parameters + 7) / 8 * 4);
  options.gradient_accumulation_steps = 1;
  // bf16 weights: fp32 moments and fp32 master weights per shard element.
  options.weights_dtype = "bf16";
  absl::StatusOr<MemoryPlan> bf16 = PlanMemory(config, options);
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ(bf16->optimizer_state, (bf16->trainable_parameters + 7) / 8 * 12);
  options.zero_stage = 3;
  EXPECT_EQ(PlanMemory(config, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PlanMemoryTest, RefusesNonsenseSizes) {
  PlanOptions options = Options(UnlearningMethod::kNpo);
  options.batch_size = 0;
  EXPECT_FALSE(PlanMemory(LlamaConfig(), options).ok());
}

TEST(PlanMemoryForJobTest, ReadsTheModelsConfigAndTheSpec) {
  v1::JobSpec spec;
  spec.set_model_dir(TestdataDir("llama-3.2-1b"));
  spec.set_method(v1::NPO_KL);
  spec.set_weights_dtype("bf16");
  spec.set_bf16_reference(true);
  spec.set_per_device_batch_size(2);
  spec.set_max_length(128);
  absl::StatusOr<MemoryPlan> plan = PlanMemoryForJob(spec);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->parameters, 1235814400);
  EXPECT_EQ(plan->weights, 2 * 1235814400LL);
  EXPECT_EQ(plan->reference_model, 2 * 1235814400LL);
  // The same through PlanMemory with the options the spec describes.
  PlanOptions options = Options(UnlearningMethod::kNpoKl);
  options.weights_dtype = "bf16";
  options.bf16_reference = true;
  options.batch_size = 2;
  options.max_length = 128;
  EXPECT_EQ(plan->total_bytes(),
            PlanMemory(Fixture("llama-3.2-1b"), options)->total_bytes());

  spec.set_model_dir(TestdataDir("no-such-model"));
  EXPECT_FALSE(PlanMemoryForJob(spec).ok());
  spec.clear_model_dir();
  EXPECT_FALSE(PlanMemoryForJob(spec).ok());
}

TEST(FormatMemoryPlanTest, PrintsEveryCategoryAndTheTotal) {
  absl::StatusOr<MemoryPlan> plan =
      PlanMemory(Fixture("llama-3.2-1b"), Options(UnlearningMethod::kNpoKl));
  ASSERT_TRUE(plan.ok());
  const std::string text = FormatMemoryPlan(*plan);
  for (const char* row :
       {"weights", "gradients", "optimizer state (AdamW)", "reference model",
        "activations", "logits", "runtime overhead", "total per rank"}) {
    EXPECT_NE(text.find(row), std::string::npos) << row << "\n" << text;
  }
  EXPECT_NE(text.find(Gib(plan->total_bytes())), std::string::npos) << text;
  EXPECT_EQ(Gib(3LL << 29), "1.50");
}

}  // namespace
}  // namespace lethe
