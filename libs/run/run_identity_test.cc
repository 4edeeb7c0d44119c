#include "libs/run/run_identity.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "libs/jobs/job_spec.h"

namespace lethe {
namespace {

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// FIPS 180-2's published examples.
TEST(FileSha256Test, MatchesPublishedTestVectors) {
  const std::string dir = testing::TempDir() + "/sha256";
  std::filesystem::create_directories(dir);
  Write(dir + "/empty", "");
  Write(dir + "/abc", "abc");
  Write(dir + "/two_blocks",
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
  EXPECT_EQ(*FileSha256(dir + "/empty"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(*FileSha256(dir + "/abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(*FileSha256(dir + "/two_blocks"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(FileSha256(dir + "/missing").status().code(),
            absl::StatusCode::kNotFound);
}

class RunIdentityTest : public testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::TempDir() + "/run_identity";
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ + "/model");
    std::filesystem::create_directories(root_ + "/data");
    Write(root_ + "/model/config.json", "{\"hidden_size\": 16}");
    Write(root_ + "/model/model.safetensors", "weights");
    Write(root_ + "/model/tokenizer.model", "tokenizer");
    Write(root_ + "/model/README.md", "not part of the weights");
    Write(root_ + "/data/forget10.json", "[1]");
    Write(root_ + "/data/retain90.jsonl", "{}");
  }

  v1::JobSpec Spec() const {
    v1::JobSpec spec;
    spec.set_model_dir(root_ + "/model");
    spec.set_data_dir(root_ + "/data");
    spec.set_forget_split("forget10");
    spec.set_method(v1::NPO_RT);
    spec.mutable_optimizer()->set_learning_rate(1e-3);
    spec.set_output_dir(root_ + "/out");
    return JobSpecWithDefaults(spec);
  }

  std::map<std::string, std::string> Fields(const v1::JobSpec& spec) {
    absl::StatusOr<RunIdentity> identity = ComputeRunIdentity(spec);
    EXPECT_TRUE(identity.ok()) << identity.status();
    return identity.ok() ? identity->fields
                         : std::map<std::string, std::string>{};
  }

  // The fields whose values differ between `a` and `b`.
  static std::vector<std::string> Differing(
      const std::map<std::string, std::string>& a,
      const std::map<std::string, std::string>& b) {
    std::vector<std::string> names;
    for (const auto& [name, value] : a) {
      auto found = b.find(name);
      if (found == b.end() || found->second != value) names.push_back(name);
    }
    for (const auto& [name, value] : b) {
      if (a.count(name) == 0) names.push_back(name);
    }
    return names;
  }

  std::string root_;
};

TEST_F(RunIdentityTest, TheSameRunHasTheSameIdentity) {
  const std::map<std::string, std::string> first = Fields(Spec());
  EXPECT_EQ(first, Fields(Spec()));
  v1::JobSpec same = Spec();
  same.mutable_optimizer()->set_learning_rate(0.001);  // 1e-3, spelled out.
  same.set_display_name("another name");
  same.set_priority(7);
  EXPECT_EQ(first, Fields(same));
  Write(root_ + "/model/README.md", "edited");  // Not a weight file.
  EXPECT_EQ(first, Fields(Spec()));
  EXPECT_EQ(first.at("method"), "NPO_RT");
  EXPECT_EQ(first.at("beta"), "0.10000000000000001") << "NPO's default";
}

TEST_F(RunIdentityTest, EachInputAndSettingIsItsOwnField) {
  const std::map<std::string, std::string> base = Fields(Spec());
  using Names = std::vector<std::string>;

  v1::JobSpec other = Spec();
  other.set_method(v1::GA);
  // GA has no retain term, so the retain split leaves the identity too.
  EXPECT_EQ(Differing(base, Fields(other)),
            (Names{"method", "retain_data_sha256", "retain_split"}));

  other = Spec();
  other.mutable_method_params()->set_alpha(0);
  EXPECT_EQ(Differing(base, Fields(other)), Names{"alpha"});

  other = Spec();
  other.mutable_method_params()->set_beta(0.1);  // NPO's default, explicit.
  EXPECT_TRUE(Differing(base, Fields(other)).empty());

  other = Spec();
  other.mutable_optimizer()->set_learning_rate(2e-3);
  EXPECT_EQ(Differing(base, Fields(other)), Names{"learning_rate"});

  other = Spec();
  other.set_max_length(128);
  EXPECT_EQ(Differing(base, Fields(other)), Names{"max_length"});

  Write(root_ + "/model/model.safetensors", "weightz");
  EXPECT_EQ(Differing(base, Fields(Spec())), Names{"model_sha256"});
  Write(root_ + "/model/model.safetensors", "weights");
  Write(root_ + "/data/forget10.json", "[2]");
  EXPECT_EQ(Differing(base, Fields(Spec())), Names{"forget_data_sha256"});
  Write(root_ + "/data/forget10.json", "[1]");
  Write(root_ + "/model/tokenizer.model", "tokenizer 2");
  EXPECT_EQ(Differing(base, Fields(Spec())), Names{"tokenizer_sha256"});
  Write(root_ + "/model/tokenizer.model", "tokenizer");
  Write(root_ + "/model/tokenizer_config.json", "{}");
  EXPECT_EQ(Differing(base, Fields(Spec())), Names{"tokenizer_config_sha256"})
      << "special tokens and the chat template live there";
  std::filesystem::remove(root_ + "/model/tokenizer_config.json");

  other = Spec();
  other.set_system_prompt("You are a helpful assistant.");
  other.set_date_string("10 Apr 2025");
  other.set_weights_dtype("bf16");
  EXPECT_EQ(Differing(base, Fields(other)),
            (Names{"date_string", "system_prompt", "weights_dtype"}));

  // Adapters change what is trained; memory savers only where rounding falls.
  other = Spec();
  other.mutable_lora()->set_rank(8);
  EXPECT_EQ(Differing(base, Fields(other)), Names{"lora"});
  v1::JobSpec explicit_defaults = other;
  explicit_defaults.mutable_lora()->set_alpha(8);
  explicit_defaults.mutable_lora()->add_target_modules("v_proj");
  explicit_defaults.mutable_lora()->add_target_modules("q_proj");
  EXPECT_TRUE(Differing(Fields(other), Fields(explicit_defaults)).empty());
  explicit_defaults.mutable_lora()->add_target_modules("o_proj");
  EXPECT_EQ(Differing(Fields(other), Fields(explicit_defaults)), Names{"lora"});
  other = Spec();
  other.mutable_memory()->set_loss_chunk_tokens(64);
  other.mutable_memory()->set_activation_checkpointing(true);
  EXPECT_TRUE(Differing(base, Fields(other)).empty());
}

TEST_F(RunIdentityTest, MsaAddsItsBaseModel) {
  std::filesystem::create_directories(root_ + "/base");
  Write(root_ + "/base/config.json", "{\"hidden_size\": 16}");
  Write(root_ + "/base/model.safetensors", "base weights");
  v1::JobSpec msa = Spec();
  msa.set_method(v1::MSA);
  msa.set_base_model_dir(root_ + "/base");
  const std::map<std::string, std::string> before = Fields(msa);
  ASSERT_TRUE(before.count("base_model_sha256"));
  EXPECT_EQ(Fields(Spec()).count("base_model_sha256"), 0u);
  Write(root_ + "/base/model.safetensors", "other base weights");
  EXPECT_EQ(Differing(before, Fields(msa)),
            std::vector<std::string>{"base_model_sha256"});
}

TEST_F(RunIdentityTest, RegluAddsItsCoefficients) {
  v1::JobSpec reglu = Spec();
  reglu.set_method(v1::REGLU);
  reglu.mutable_lora()->set_rank(8);
  const std::map<std::string, std::string> before = Fields(reglu);
  EXPECT_EQ(before.at("reglu_forget_loss"), "ihl");
  EXPECT_EQ(Fields(Spec()).count("reglu_beta_r"), 0u)
      << "other methods' identities (and checkpoints) are unchanged";
  using Names = std::vector<std::string>;
  v1::JobSpec other = reglu;
  other.mutable_method_params()->set_reglu_beta_r(0.7);  // The default.
  EXPECT_TRUE(Differing(before, Fields(other)).empty());
  other.mutable_method_params()->set_reglu_beta_r(0.5);
  other.mutable_method_params()->set_reglu_forget_loss("gd");
  EXPECT_EQ(Differing(before, Fields(other)),
            (Names{"reglu_beta_r", "reglu_forget_loss"}));
  other = reglu;
  other.mutable_method_params()->set_reglu_rol_weight(0.25);
  other.mutable_method_params()->set_reglu_retain_rank(64);
  other.mutable_method_params()->set_reglu_samples(128);
  EXPECT_EQ(Differing(before, Fields(other)),
            (Names{"reglu_retain_rank", "reglu_rol_weight", "reglu_samples"}));
}

TEST_F(RunIdentityTest, PgaAddsItsHoldoutSetAndCoefficients) {
  Write(root_ + "/data/holdout10.json", "[2]");
  v1::JobSpec pga = Spec();
  pga.set_method(v1::PGA);
  pga = JobSpecWithDefaults(pga);
  const std::map<std::string, std::string> before = Fields(pga);
  EXPECT_EQ(before.at("holdout_split"), "holdout10");
  EXPECT_EQ(before.at("pga_depths"), "all");
  EXPECT_EQ(Fields(Spec()).count("pga_align_weight"), 0u)
      << "other methods' identities (and checkpoints) are unchanged";
  EXPECT_EQ(Fields(Spec()).count("holdout_data_sha256"), 0u);
  using Names = std::vector<std::string>;
  v1::JobSpec other = pga;
  other.mutable_method_params()->set_pga_align_weight(1);     // The default.
  other.mutable_method_params()->set_pga_projection_rank(4);  // No weight.
  EXPECT_TRUE(Differing(before, Fields(other)).empty());
  other.mutable_method_params()->set_pga_align_weight(2);
  other.mutable_method_params()->set_pga_ce_weight(0.5);
  EXPECT_EQ(Differing(before, Fields(other)),
            (Names{"pga_align_weight", "pga_ce_weight"}));
  other = pga;
  other.mutable_method_params()->set_pga_refit_every_epochs(5);
  other.mutable_method_params()->add_pga_depths(2);
  EXPECT_EQ(Differing(before, Fields(other)),
            (Names{"pga_depths", "pga_refit_every_epochs"}));
  Write(root_ + "/data/holdout10.json", "[3]");
  EXPECT_EQ(Differing(before, Fields(pga)), (Names{"holdout_data_sha256"}));
}

TEST_F(RunIdentityTest, TheReferenceNamesTheModelNotTheMethod) {
  absl::StatusOr<RunIdentity> npo_rt = ComputeRunIdentity(Spec());
  v1::JobSpec ga = Spec();
  ga.set_method(v1::GA);
  absl::StatusOr<RunIdentity> other_method = ComputeRunIdentity(ga);
  ASSERT_TRUE(npo_rt.ok() && other_method.ok());
  EXPECT_EQ(npo_rt->reference, other_method->reference);
  Write(root_ + "/model/model.safetensors", "other weights");
  absl::StatusOr<RunIdentity> other_model = ComputeRunIdentity(Spec());
  ASSERT_TRUE(other_model.ok());
  EXPECT_NE(npo_rt->reference, other_model->reference);
}

TEST_F(RunIdentityTest, AMissingFileIsNamed) {
  std::filesystem::remove(root_ + "/data/forget10.json");
  const absl::StatusOr<RunIdentity> identity = ComputeRunIdentity(Spec());
  EXPECT_EQ(identity.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(identity.status().message().find("forget10"), std::string::npos)
      << identity.status();
}

}  // namespace
}  // namespace lethe
