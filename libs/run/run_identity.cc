#include "libs/run/run_identity.h"

#include <openssl/evp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "libs/jobs/job_spec.h"
#include "libs/status/status_macros.h"
#include "libs/unlearn/checkpoint.h"
#include "libs/unlearn/objective_params.h"

namespace lethe {
namespace {

std::string Exact(double value) { return absl::StrFormat("%.17g", value); }

// The split's file as ReadTofuSplit picks it: <split>.json, else .jsonl.
std::string SplitFile(const std::string& data_dir, const std::string& split) {
  const std::string json = absl::StrCat(data_dir, "/", split, ".json");
  return std::filesystem::exists(json)
             ? json
             : absl::StrCat(data_dir, "/", split, ".jsonl");
}

// The model's files that determine its weights, sorted by name.
absl::StatusOr<std::vector<std::string>> ModelFiles(const std::string& dir) {
  std::vector<std::string> files = {"config.json"};
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (absl::EndsWith(name, ".safetensors") ||
        absl::EndsWith(name, ".safetensors.index.json")) {
      files.push_back(name);
    }
  }
  if (error) {
    return absl::NotFoundError(
        absl::StrCat("reading model directory ", dir, ": ", error.message()));
  }
  std::sort(files.begin(), files.end());
  return files;
}

// SHA-256 through OpenSSL's EVP interface (Debian's libcrypto).
class Sha256Digest {
 public:
  Sha256Digest() : context_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
    ok_ = context_ != nullptr &&
          EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr) == 1;
  }
  absl::Status status() const {
    return ok_ ? absl::OkStatus()
               : absl::InternalError("OpenSSL: cannot start SHA-256");
  }
  absl::Status Update(const void* data, size_t size) {
    if (EVP_DigestUpdate(context_.get(), data, size) != 1) {
      return absl::InternalError("OpenSSL: SHA-256 update failed");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(context_.get(), digest, &length) != 1) {
      return absl::InternalError("OpenSSL: SHA-256 final failed");
    }
    std::string hex;
    for (unsigned int i = 0; i < length; ++i) {
      absl::StrAppendFormat(&hex, "%02x", digest[i]);
    }
    return hex;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context_;
  bool ok_ = false;
};

absl::StatusOr<std::string> Sha256(const std::string& bytes) {
  Sha256Digest digest;
  RETURN_IF_ERROR(digest.status());
  RETURN_IF_ERROR(digest.Update(bytes.data(), bytes.size()));
  return digest.Hex();
}

}  // namespace

absl::StatusOr<std::string> FileSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  Sha256Digest digest;
  RETURN_IF_ERROR(digest.status());
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (in.gcount() > 0) {
      RETURN_IF_ERROR(digest.Update(buffer.data(), in.gcount()));
    }
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("reading ", path));
  return digest.Hex();
}

namespace {

// One hash for a model directory: of its files' names and hashes.
absl::StatusOr<std::string> ModelContentSha256(const std::string& dir) {
  ASSIGN_OR_RETURN(const std::vector<std::string> model_files, ModelFiles(dir));
  std::string model_hashes;
  for (const std::string& name : model_files) {
    ASSIGN_OR_RETURN(const std::string hash,
                     FileSha256(absl::StrCat(dir, "/", name)));
    absl::StrAppend(&model_hashes, name, "=", hash, ";");
  }
  return Sha256(model_hashes);
}

}  // namespace

absl::StatusOr<RunIdentity> ComputeRunIdentity(const v1::JobSpec& spec) {
  ASSIGN_OR_RETURN(const UnlearningMethod method,
                   MethodFromSpec(spec.method()));
  const ObjectiveParams params =
      ObjectiveParamsFromSpec(method, spec.method_params());
  RunIdentity identity;
  std::map<std::string, std::string>& f = identity.fields;

  ASSIGN_OR_RETURN(f["model_sha256"], ModelContentSha256(spec.model_dir()));
  ASSIGN_OR_RETURN(f["tokenizer_sha256"], FileSha256(spec.tokenizer_path()));
  // The special tokens and the chat template come from the config beside
  // the tokenizer file ("none" without one).
  const std::string tokenizer_config =
      (std::filesystem::path(spec.tokenizer_path()).parent_path() /
       "tokenizer_config.json")
          .string();
  f["tokenizer_config_sha256"] = "none";
  if (std::filesystem::exists(tokenizer_config)) {
    ASSIGN_OR_RETURN(f["tokenizer_config_sha256"],
                     FileSha256(tokenizer_config));
  }
  if (method == UnlearningMethod::kMsa) {
    // MSA's theta_0 determines both fine-tunes.
    ASSIGN_OR_RETURN(f["base_model_sha256"],
                     ModelContentSha256(spec.base_model_dir()));
  }
  f["forget_split"] = spec.forget_split();
  ASSIGN_OR_RETURN(f["forget_data_sha256"],
                   FileSha256(SplitFile(spec.data_dir(), spec.forget_split())));
  const ObjectiveNeeds needs = MethodNeeds(method, params);
  if (needs.retain_batch || method == UnlearningMethod::kLlmu) {
    f["retain_split"] = spec.retain_split();
    ASSIGN_OR_RETURN(
        f["retain_data_sha256"],
        FileSha256(SplitFile(spec.data_dir(), spec.retain_split())));
  }
  if (method == UnlearningMethod::kPga) {
    f["holdout_split"] = spec.holdout_split();
    ASSIGN_OR_RETURN(
        f["holdout_data_sha256"],
        FileSha256(SplitFile(spec.data_dir(), spec.holdout_split())));
  }
  f["prompt_template"] = spec.prompt_template();
  f["system_prompt"] = spec.system_prompt();
  f["date_string"] = spec.date_string();
  f["max_length"] = absl::StrCat(spec.max_length());
  f["precision"] = v1::Precision_Name(spec.precision());
  f["weights_dtype"] =
      spec.weights_dtype().empty() ? "fp32" : spec.weights_dtype();
  f["bf16_reference"] = spec.bf16_reference() ? "true" : "false";
  if (spec.memory().pack_row_length() > 0) {
    // Packed batches change only where rounding falls, but a run resumes
    // only the computation it started (padded runs' checkpoints carry no
    // such field).
    f["pack_row_length"] = absl::StrCat(spec.memory().pack_row_length());
  }
  f["lora"] = "none";
  if (spec.lora().rank() > 0) {
    std::vector<std::string> targets(spec.lora().target_modules().begin(),
                                     spec.lora().target_modules().end());
    if (targets.empty()) targets = {"q_proj", "v_proj"};
    std::sort(targets.begin(), targets.end());
    f["lora"] = absl::StrCat(
        "rank=", spec.lora().rank(),
        ",alpha=", Exact(spec.lora().alpha() == 0 ? 8 : spec.lora().alpha()),
        ",dropout=", Exact(spec.lora().dropout()),
        ",target_modules=", absl::StrJoin(targets, "+"));
  }

  f["method"] = UnlearningMethodName(method);
  f["beta"] = Exact(params.beta);
  f["alpha"] = Exact(params.alpha);
  f["gamma"] = Exact(params.gamma);
  f["delta"] = Exact(params.delta);
  f["retain_loss"] = params.retain_loss == RetainLoss::kKl ? "kl" : "nll";
  f["random_answer_weight"] = Exact(params.random_answer_weight);
  f["ofmu_inner_steps"] = absl::StrCat(params.ofmu_inner_steps);
  f["ofmu_inner_learning_rate"] = Exact(params.ofmu_inner_learning_rate);
  f["ofmu_rho"] = Exact(params.ofmu_rho);
  f["ofmu_rho_growth"] = Exact(params.ofmu_rho_growth);
  f["ofmu_first_order"] = params.ofmu_first_order ? "true" : "false";
  if (method == UnlearningMethod::kReglu) {
    // Only REGLU's runs carry these, so other methods' checkpoints written
    // before REGLU existed still resume.
    f["reglu_forget_loss"] = RegluForgetLossName(params.reglu_forget_loss);
    f["reglu_beta_r"] = Exact(params.reglu_beta_r);
    f["reglu_rol_weight"] = Exact(params.reglu_rol_weight);
    f["reglu_retain_rank"] = absl::StrCat(params.reglu_retain_rank);
    f["reglu_samples"] = absl::StrCat(params.reglu_samples);
  }
  if (method == UnlearningMethod::kPga) {
    // The projection's rank is not here: it is fitted after training and
    // changes no weight.
    f["pga_align_weight"] = Exact(params.pga_align_weight);
    f["pga_ce_weight"] = Exact(params.pga_ce_weight);
    f["pga_refit_every_epochs"] = absl::StrCat(params.pga_refit_every_epochs);
    f["pga_depths"] = params.pga_depths.empty()
                          ? "all"
                          : absl::StrJoin(params.pga_depths, ",");
  }

  const v1::OptimizerSpec& optimizer = spec.optimizer();
  f["learning_rate"] = Exact(optimizer.learning_rate());
  f["weight_decay"] = Exact(optimizer.weight_decay());
  f["warmup_epochs"] = Exact(optimizer.warmup_epochs());
  f["max_grad_norm"] = Exact(optimizer.max_grad_norm());
  f["num_epochs"] = absl::StrCat(spec.num_epochs());
  f["max_steps"] = absl::StrCat(spec.max_steps());
  f["checkpoint_format_version"] = absl::StrCat(kCheckpointFormatVersion);

  identity.reference = absl::StrCat(
      "model_sha256=", f["model_sha256"],
      ";tokenizer_sha256=", f["tokenizer_sha256"],
      ";tokenizer_config_sha256=", f["tokenizer_config_sha256"],
      ";prompt_template=", f["prompt_template"],
      ";system_prompt=", f["system_prompt"], ";date_string=", f["date_string"],
      ";max_length=", f["max_length"], ";precision=", f["precision"],
      ";weights_dtype=", f["weights_dtype"]);
  return identity;
}

}  // namespace lethe
