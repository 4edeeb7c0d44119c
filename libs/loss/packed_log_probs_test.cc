#include "libs/loss/packed_log_probs.h"

#include <torch/csrc/autograd/autograd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/packed_batch.h"
#include "libs/data/qa_batch.h"
#include "libs/data/qa_example.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/llama_model.h"
#include "libs/model/lora.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

constexpr int64_t kVocab = 29;

QaExample Example(int length, int answer) {
  return RandomQaExample(length, answer, kVocab);
}

QaBatch Collate(const std::vector<QaExample>& examples) {
  std::vector<const QaExample*> pointers;
  for (const QaExample& example : examples) pointers.push_back(&example);
  return CollateQaBatch(pointers, /*pad_id=*/0);
}

// Forget: varied lengths, one with an empty answer, one (13 tokens) longer
// than the rows of 12; retain: others.
struct Batches {
  QaBatch forget;
  QaBatch retain;
};

Batches MakeBatches() {
  torch::manual_seed(11);
  return {.forget = Collate({Example(6, 3), Example(13, 7), Example(4, 0),
                             Example(9, 4), Example(1, 0)}),
          .retain = Collate({Example(5, 2), Example(8, 8), Example(3, 1)})};
}

struct PackSetup {
  bool checkpointing = false;
  bool lora = false;
  int64_t chunk_tokens = 0;
  at::ScalarType dtype = at::kDouble;
  // "llama": no window; "qwen2": layer 0 attends fully, layer 1 within a
  // sliding window of 3; "mistral": every layer within the window;
  // "gemma2": layer 0 within the window, scores soft-capped at 1.
  std::string family = "llama";
  std::string Name() const {
    return "checkpointing " + std::to_string(checkpointing) + " lora " +
           std::to_string(lora) + " chunk " + std::to_string(chunk_tokens) +
           " " + c10::toString(dtype) + " " + family;
  }
};

std::shared_ptr<LlamaForCausalLM> MakeModel(const PackSetup& setup) {
  torch::manual_seed(5);
  LlamaConfig config = TinyLlamaConfig(kVocab);
  if (setup.family != "llama") {
    config.model_type = setup.family;
    config.sliding_window = 3;
    config.max_window_layers = 1;
  }
  if (setup.family == "gemma2") config.attn_logit_softcapping = 1.0;
  auto model = std::make_shared<LlamaForCausalLM>(config);
  RedrawWeights(*model, 0.3);
  if (setup.lora) {
    EXPECT_TRUE(AttachLora(*model, {.rank = 2,
                                    .alpha = 4,
                                    .target_modules = {"q_proj", "v_proj",
                                                       "down_proj"}})
                    .ok());
    // B starts at 0; give the adapters an effect.
    torch::NoGradGuard no_grad;
    for (auto& [name, parameter] : LoraParameters(*model)) {
      parameter.normal_(0.0, 0.3);
    }
  }
  model->to(setup.dtype);
  model->SetActivationCheckpointing(setup.checkpointing);
  return model;
}

// A scalar mixing every per-sequence sum and the retain mean, so that its
// gradient checks them all.
at::Tensor Mix(const at::Tensor& forget_summed, const at::Tensor& retain_nll) {
  const at::Tensor weights =
      torch::tensor({0.7, -1.3, 2.1, 0.4, -0.9}, forget_summed.options());
  return (forget_summed * weights).sum() + 1.7 * retain_nll;
}

std::vector<at::Tensor> Gradients(LlamaForCausalLM& model,
                                  const at::Tensor& loss) {
  std::vector<at::Tensor> parameters;
  for (const at::Tensor& p : model.parameters()) {
    if (p.requires_grad()) parameters.push_back(p);
  }
  return torch::autograd::grad({loss}, parameters);
}

void ExpectClose(const at::Tensor& actual, const at::Tensor& expected,
                 double tolerance, const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double scale = expected.abs().max().item<double>();
  const double difference = (actual - expected).abs().max().item<double>();
  EXPECT_LE(difference, tolerance * std::max(scale, 1e-3))
      << what << ": max difference " << difference << " at scale " << scale;
}

class PackedLogProbsTest : public testing::TestWithParam<PackSetup> {};

TEST_P(PackedLogProbsTest, EqualsThePaddedComputation) {
  const PackSetup setup = GetParam();
  const double tolerance = setup.dtype == at::kDouble ? 1e-11 : 1e-5;
  const Batches batches = MakeBatches();
  std::shared_ptr<LlamaForCausalLM> model = MakeModel(setup);

  // Padded: two passes, full logits.
  const AnswerLogProbs padded_forget = SequenceAnswerLogProbs(
      model->Forward(batches.forget.input_ids, batches.forget.attention_mask),
      batches.forget.labels);
  const at::Tensor padded_retain = TokenMeanNll(
      model->Forward(batches.retain.input_ids, batches.retain.attention_mask),
      batches.retain.labels);
  const std::vector<at::Tensor> padded_grads =
      Gradients(*model, Mix(padded_forget.summed, padded_retain));

  // Packed: one pass, rows of 12 positions.
  absl::StatusOr<PackedBatch> packed =
      PackQaBatches({&batches.forget, &batches.retain}, 12);
  ASSERT_TRUE(packed.ok()) << packed.status();
  ASSERT_GT(packed->input_ids.size(0), 1);
  const at::Tensor token_log_probs =
      PackedTokenLogProbs(*model, *packed, setup.chunk_tokens);
  const AnswerLogProbs forget = PackedPartLogProbs(*packed, token_log_probs, 0);
  const at::Tensor retain = PackedPartTokenMeanNll(*packed, token_log_probs, 1);
  const std::vector<at::Tensor> grads =
      Gradients(*model, Mix(forget.summed, retain));

  EXPECT_TRUE(torch::equal(forget.token_counts, padded_forget.token_counts));
  ExpectClose(forget.summed, padded_forget.summed, tolerance, "forget sums");
  // The empty answers sum to exactly 0.
  EXPECT_EQ(forget.summed[2].item<double>(), 0.0);
  EXPECT_EQ(forget.summed[4].item<double>(), 0.0);
  ExpectClose(retain, padded_retain, tolerance, "retain NLL");
  ASSERT_EQ(grads.size(), padded_grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    ExpectClose(grads[i], padded_grads[i], tolerance,
                "gradient " + std::to_string(i));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Setups, PackedLogProbsTest,
    testing::Values(PackSetup{}, PackSetup{.dtype = at::kFloat},
                    PackSetup{.chunk_tokens = 3},
                    PackSetup{.checkpointing = true, .lora = true},
                    PackSetup{.checkpointing = true,
                              .lora = true,
                              .chunk_tokens = 4,
                              .dtype = at::kFloat},
                    PackSetup{.family = "qwen2"},
                    PackSetup{.dtype = at::kFloat, .family = "mistral"},
                    PackSetup{.family = "gemma2"}),
    [](const testing::TestParamInfo<PackSetup>& info) {
      return "Setup" + std::to_string(info.index);
    });

// Without the block-diagonal mask a sequence would see its row neighbours:
// the hidden states of a packed row differ from the padded ones, which is
// what the mask exists for (a check that the test above can fail).
TEST(PackedForwardTest, SegmentsKeepSequencesApart) {
  const Batches batches = MakeBatches();
  std::shared_ptr<LlamaForCausalLM> model = MakeModel({});
  torch::NoGradGuard no_grad;
  absl::StatusOr<PackedBatch> packed = PackQaBatches({&batches.forget}, 12);
  ASSERT_TRUE(packed.ok());
  const at::Tensor packed_hidden = model->ForwardHiddenPacked(
      packed->input_ids, packed->position_ids, packed->segment_ids);
  const at::Tensor unmasked =
      model->ForwardHiddenPacked(packed->input_ids, packed->position_ids,
                                 packed->segment_ids.ne(0).to(at::kLong));
  EXPECT_GT((packed_hidden - unmasked).abs().max().item<double>(), 1e-3);
}

}  // namespace
}  // namespace lethe
