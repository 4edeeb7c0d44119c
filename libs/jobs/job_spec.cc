#include "libs/jobs/job_spec.h"

#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "libs/data/qa_example.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/yaml/yaml_json.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

constexpr char kDefaultPromptTemplate[] = "auto";
constexpr const char* kRetainLosses[] = {"", "nll", "kl"};
constexpr const char* kRegluForgetLosses[] = {"", "ihl", "gd"};
constexpr size_t kMaxDisplayNameChars = 200;
constexpr int kDefaultMaxLength = 256;
// Rows of 128 positions hold two or more TOFU-length sequences; much longer
// rows cost attention time (benchmarks/unlearning_step_throughput).
constexpr int kDefaultPackRowLength = 128;

absl::Status Invalid(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

absl::Status NotFound(absl::string_view path, absl::string_view problem) {
  return absl::NotFoundError(absl::StrCat(path, ": ", problem));
}

// --- Numbers ---------------------------------------------------------------

// A floating-point field and the rule it follows.
struct DoubleCheck {
  enum Rule { kFinite, kNonNegative, kPositive, kAtLeastOne };
  const char* path;
  double value;
  Rule rule;
};

absl::Status Check(const DoubleCheck& check) {
  const double v = check.value;
  switch (check.rule) {
    case DoubleCheck::kFinite:
      if (std::isfinite(v)) return absl::OkStatus();
      return Invalid(check.path, absl::StrCat("must be finite, got ", v));
    case DoubleCheck::kNonNegative:
      if (std::isfinite(v) && v >= 0) return absl::OkStatus();
      return Invalid(check.path,
                     absl::StrCat("must be >= 0 and finite, got ", v));
    case DoubleCheck::kPositive:
      if (std::isfinite(v) && v > 0) return absl::OkStatus();
      return Invalid(check.path,
                     absl::StrCat("must be positive and finite, got ", v));
    case DoubleCheck::kAtLeastOne:
      if (std::isfinite(v) && v >= 1) return absl::OkStatus();
      return Invalid(check.path,
                     absl::StrCat("must be >= 1 and finite, got ", v));
  }
  return absl::OkStatus();
}

// An integer field and its inclusive range.
struct IntCheck {
  const char* path;
  int64_t value;
  int64_t min;
  int64_t max;
};

absl::Status Check(const IntCheck& check) {
  if (check.value >= check.min && check.value <= check.max) {
    return absl::OkStatus();
  }
  if (check.max == std::numeric_limits<int64_t>::max()) {
    return Invalid(check.path, absl::StrCat("must be >= ", check.min, ", got ",
                                            check.value));
  }
  return Invalid(check.path, absl::StrCat("must be in [", check.min, ", ",
                                          check.max, "], got ", check.value));
}

constexpr int64_t kUnbounded = std::numeric_limits<int64_t>::max();

// --- Strings ---------------------------------------------------------------

absl::Status CheckOneOf(absl::string_view path, absl::string_view value,
                        const std::vector<std::string>& allowed) {
  for (const std::string& candidate : allowed) {
    if (value == candidate) return absl::OkStatus();
  }
  std::vector<std::string> quoted;
  for (const std::string& candidate : allowed) {
    quoted.push_back(absl::StrCat("\"", candidate, "\""));
  }
  return Invalid(path,
                 absl::StrCat("must be one of ", absl::StrJoin(quoted, ", "),
                              ", got \"", value, "\""));
}

// Number of UTF-8 code points (bytes that do not continue a sequence).
size_t Utf8Length(absl::string_view text) {
  size_t length = 0;
  for (const char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++length;
  }
  return length;
}

// --- Files -----------------------------------------------------------------

enum class PathKind { kMissing, kFile, kDirectory, kOther };

PathKind KindOf(const std::string& path) {
  std::error_code error;
  const std::filesystem::file_status status =
      std::filesystem::status(path, error);
  if (error || !std::filesystem::exists(status)) return PathKind::kMissing;
  if (std::filesystem::is_directory(status)) return PathKind::kDirectory;
  if (std::filesystem::is_regular_file(status)) return PathKind::kFile;
  return PathKind::kOther;
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  if (absl::EndsWith(dir, "/")) return absl::StrCat(dir, name);
  return absl::StrCat(dir, "/", name);
}

absl::Status CheckDirectory(absl::string_view field, const std::string& path) {
  if (path.empty()) return Invalid(field, "must not be empty");
  switch (KindOf(path)) {
    case PathKind::kDirectory:
      return absl::OkStatus();
    case PathKind::kMissing:
      return NotFound(field, absl::StrCat("directory ", path, " not found"));
    default:
      return Invalid(field, absl::StrCat(path, " is not a directory"));
  }
}

absl::Status CheckFile(absl::string_view field, const std::string& path) {
  if (path.empty()) return Invalid(field, "must not be empty");
  switch (KindOf(path)) {
    case PathKind::kFile:
      return absl::OkStatus();
    case PathKind::kMissing:
      return NotFound(field, absl::StrCat("file ", path, " not found"));
    default:
      return Invalid(field, absl::StrCat(path, " is not a regular file"));
  }
}

bool IsSplitNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         c == '-';
}

// A split names <data_dir>/<split>.json or <data_dir>/<split>.jsonl.
absl::Status CheckSplit(absl::string_view field, const std::string& data_dir,
                        const std::string& split) {
  if (split.empty()) return Invalid(field, "must not be empty");
  for (const char c : split) {
    if (!IsSplitNameChar(c)) {
      return Invalid(field, absl::StrCat("must contain only letters, digits, "
                                         "'_' and '-', got \"",
                                         split, "\""));
    }
  }
  const std::string json = JoinPath(data_dir, absl::StrCat(split, ".json"));
  const std::string jsonl = JoinPath(data_dir, absl::StrCat(split, ".jsonl"));
  if (KindOf(json) == PathKind::kFile || KindOf(jsonl) == PathKind::kFile) {
    return absl::OkStatus();
  }
  return NotFound(field,
                  absl::StrCat("neither ", json, " nor ", jsonl, " exists"));
}

absl::Status CheckOutputDir(absl::string_view field, const std::string& path) {
  if (path.empty()) return Invalid(field, "must not be empty");
  if (path.front() != '/') {
    return Invalid(
        field, absl::StrCat("must be an absolute path, got \"", path, "\""));
  }
  const PathKind kind = KindOf(path);
  if (kind != PathKind::kMissing && kind != PathKind::kDirectory) {
    return Invalid(field, absl::StrCat(path, " exists and is not a directory"));
  }
  std::filesystem::path normal = std::filesystem::path(path).lexically_normal();
  if (!normal.has_filename()) normal = normal.parent_path();  // "a/b/" -> "a/b"
  const std::string parent = normal.parent_path().string();
  if (KindOf(parent) != PathKind::kDirectory) {
    return NotFound(field, absl::StrCat("parent directory ", parent, " of ",
                                        path, " not found"));
  }
  return absl::OkStatus();
}

// Whether `inner` is `outer` or lies below it (symlinks resolved where the
// paths exist).
bool IsWithin(const std::string& inner, const std::string& outer) {
  std::error_code error;
  const std::filesystem::path a =
      std::filesystem::weakly_canonical(inner, error).lexically_normal();
  const std::filesystem::path b =
      std::filesystem::weakly_canonical(outer, error).lexically_normal();
  auto ai = a.begin();
  for (auto bi = b.begin(); bi != b.end(); ++bi, ++ai) {
    if (bi->empty()) continue;  // A trailing "/".
    if (ai == a.end() || *ai != *bi) return false;
  }
  return true;
}

// A run writes checkpoints, models and logs into output_dir: never into
// the model or the data it reads, nor around them.
absl::Status CheckOutputApart(const v1::JobSpec& spec) {
  for (const auto& [field, input] :
       {std::pair<const char*, const std::string*>{"model_dir",
                                                   &spec.model_dir()},
        {"data_dir", &spec.data_dir()},
        {"base_model_dir", &spec.base_model_dir()}}) {
    if (input->empty()) continue;
    if (IsWithin(spec.output_dir(), *input) ||
        IsWithin(*input, spec.output_dir())) {
      return Invalid("spec.output_dir",
                     absl::StrCat(spec.output_dir(), " overlaps ", field, " ",
                                  *input, "; write outputs elsewhere"));
    }
  }
  return absl::OkStatus();
}

// --- Enums -----------------------------------------------------------------

absl::Status CheckMethod(const v1::JobSpec& spec) {
  if (!v1::Method_IsValid(spec.method())) {
    return Invalid("spec.method",
                   absl::StrCat("unknown method ", spec.method()));
  }
  if (spec.method() == v1::METHOD_UNSPECIFIED) {
    return Invalid("spec.method", "must be set, e.g. NPO or GRAD_DIFF");
  }
  return absl::OkStatus();
}

absl::Status CheckBackendAndDevice(const v1::JobSpec& spec) {
  if (!v1::Device_IsValid(spec.device())) {
    return Invalid("spec.device",
                   absl::StrCat("unknown device ", spec.device()));
  }
  if (!v1::Backend_IsValid(spec.backend())) {
    return Invalid("spec.backend",
                   absl::StrCat("unknown backend ", spec.backend()));
  }
  if (spec.backend() == v1::NCCL && spec.device() != v1::CUDA) {
    return Invalid("spec.backend",
                   absl::StrCat("NCCL requires device CUDA, got ",
                                v1::Device_Name(spec.device())));
  }
  return absl::OkStatus();
}

absl::Status CheckDeadline(const v1::JobSpec& spec) {
  const google::protobuf::Duration& deadline = spec.run_policy().deadline();
  if (deadline.seconds() < 0 || deadline.nanos() < 0) {
    return Invalid(
        "spec.run_policy.deadline",
        absl::StrCat("must not be negative, got ", deadline.seconds(), "s ",
                     deadline.nanos(), "ns"));
  }
  if (deadline.nanos() > 999999999) {
    return Invalid(
        "spec.run_policy.deadline",
        absl::StrCat("nanos must be below 1e9, got ", deadline.nanos()));
  }
  return absl::OkStatus();
}

// proto3 JSON spells non-finite numbers as strings.
void QuoteNonFiniteNumbers(nlohmann::json& value) {
  if (value.is_number_float()) {
    const double number = value.get<double>();
    if (std::isnan(number)) {
      value = "NaN";
    } else if (std::isinf(number)) {
      value = number > 0 ? "Infinity" : "-Infinity";
    }
    return;
  }
  if (!value.is_structured()) return;
  for (nlohmann::json& child : value) QuoteNonFiniteNumbers(child);
}

}  // namespace

absl::StatusOr<v1::JobSpec> ParseJobSpecJson(absl::string_view json,
                                             absl::string_view source_name) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  v1::JobSpec spec;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &spec, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source_name, ": not a valid lethe.v1.JobSpec: ",
        std::string(status.message().data(), status.message().size())));
  }
  return spec;
}

absl::StatusOr<v1::JobSpec> ParseJobSpecYaml(absl::string_view yaml,
                                             absl::string_view source_name) {
  ASSIGN_OR_RETURN(nlohmann::json json, YamlToJson(yaml, source_name));
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source_name, ": a job spec is a mapping of field names to values, got ",
        json.is_null() ? "an empty document" : json.type_name()));
  }
  QuoteNonFiniteNumbers(json);
  return ParseJobSpecJson(json.dump(), source_name);
}

absl::StatusOr<v1::JobSpec> ReadJobSpecFile(const std::string& path) {
  const std::string extension =
      absl::AsciiStrToLower(std::filesystem::path(path).extension().string());
  if (extension != ".json" && extension != ".yaml" && extension != ".yml") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a spec file ends in .json, .yaml or .yml, got \"",
                     extension, "\""));
  }
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  if (extension == ".json") return ParseJobSpecJson(text, path);
  return ParseJobSpecYaml(text, path);
}

v1::JobSpec JobSpecWithDefaults(v1::JobSpec spec) {
  if (spec.tokenizer_path().empty() && !spec.model_dir().empty()) {
    // tokenizer.json when the model has one (as transformers prefers it);
    // tokenizer.model otherwise, and for a folder that has neither (the
    // validation then names the missing file).
    spec.set_tokenizer_path(JoinPath(
        spec.model_dir(),
        ModelTokenizerFileName(spec.model_dir()).value_or("tokenizer.model")));
  }
  if (spec.retain_split().empty()) {
    // TOFU pairs forgetNN with retain(100-NN).
    const std::string& forget = spec.forget_split();
    int percent = 0;
    if (forget.size() == 8 && absl::StartsWith(forget, "forget") &&
        absl::ascii_isdigit(forget[6]) && absl::ascii_isdigit(forget[7])) {
      percent = (forget[6] - '0') * 10 + (forget[7] - '0');
    }
    if (percent > 0) {
      spec.set_retain_split(absl::StrFormat("retain%02d", 100 - percent));
    }
  }
  if (spec.method() == v1::PGA && spec.holdout_split().empty()) {
    // TOFU's clean authors for forgetNN are holdoutNN.
    const std::string& forget = spec.forget_split();
    if (forget.size() == 8 && absl::StartsWith(forget, "forget") &&
        absl::ascii_isdigit(forget[6]) && absl::ascii_isdigit(forget[7])) {
      spec.set_holdout_split(absl::StrCat("holdout", forget.substr(6)));
    }
  }
  if (spec.prompt_template().empty()) {
    spec.set_prompt_template(kDefaultPromptTemplate);
  }
  if (!spec.has_optimizer()) {
    v1::OptimizerSpec* optimizer = spec.mutable_optimizer();
    optimizer->set_weight_decay(0.01);
    optimizer->set_warmup_epochs(1);
    optimizer->set_max_grad_norm(1);
  }
  if (spec.optimizer().learning_rate() == 0) {
    spec.mutable_optimizer()->set_learning_rate(1e-5);
  }
  if (spec.num_epochs() == 0 && spec.max_steps() == 0) spec.set_num_epochs(5);
  if (spec.per_device_batch_size() == 0) spec.set_per_device_batch_size(4);
  if (spec.gradient_accumulation_steps() == 0) {
    spec.set_gradient_accumulation_steps(1);
  }
  if (spec.world_size() == 0) spec.set_world_size(1);
  if (spec.device() == v1::DEVICE_UNSPECIFIED) spec.set_device(v1::CPU);
  if (spec.backend() == v1::BACKEND_UNSPECIFIED) {
    spec.set_backend(spec.device() == v1::CUDA ? v1::NCCL : v1::GLOO);
  }
  if (spec.max_length() == 0) spec.set_max_length(kDefaultMaxLength);
  if (spec.precision() == v1::PRECISION_UNSPECIFIED) {
    spec.set_precision(v1::FP32);
  }
  if (!spec.memory().has_pack_row_length()) {
    spec.mutable_memory()->set_pack_row_length(kDefaultPackRowLength);
  }
  if (spec.checkpoint().keep_last() == 0) {
    spec.mutable_checkpoint()->set_keep_last(2);
  }
  if (!spec.has_run_policy()) spec.mutable_run_policy()->set_max_restarts(2);
  return spec;
}

namespace {

// spec.memory and spec.lora: sizes in range, known PEFT module names, and no
// activation checkpointing under OFMU.
absl::Status CheckMemoryAndLora(const v1::JobSpec& spec) {
  const v1::MemorySpec& memory = spec.memory();
  if (memory.loss_chunk_tokens() < 0 ||
      memory.loss_chunk_tokens() > (1 << 20)) {
    return Invalid("spec.memory.loss_chunk_tokens",
                   absl::StrCat("must be in [0, 1048576], got ",
                                memory.loss_chunk_tokens()));
  }
  if (memory.pack_row_length() < 0 || memory.pack_row_length() > (1 << 20)) {
    return Invalid("spec.memory.pack_row_length",
                   absl::StrCat("must be in [0, 1048576], got ",
                                memory.pack_row_length()));
  }
  if (memory.zero_stage() < 0 || memory.zero_stage() > 2) {
    return Invalid(
        "spec.memory.zero_stage",
        absl::StrCat("must be 0, 1 or 2, got ", memory.zero_stage()));
  }
  if (memory.activation_checkpointing() && spec.method() == v1::OFMU) {
    return Invalid("spec.memory.activation_checkpointing",
                   "is not available with OFMU: its Hessian-vector products "
                   "differentiate twice through the recomputed layers");
  }
  const v1::LoraSpec& lora = spec.lora();
  if (lora.rank() < 0 || lora.rank() > 4096) {
    return Invalid("spec.lora.rank",
                   absl::StrCat("must be in [0, 4096], got ", lora.rank()));
  }
  if (lora.rank() == 0) {
    if (lora.alpha() != 0 || lora.dropout() != 0 ||
        lora.target_modules_size() > 0) {
      return Invalid("spec.lora.rank",
                     "is 0 (no adapters) but other spec.lora fields are set");
    }
    return absl::OkStatus();
  }
  if (!(lora.alpha() >= 0 && lora.alpha() <= 1e6)) {
    return Invalid("spec.lora.alpha",
                   absl::StrCat("must be in [0, 1e6], got ", lora.alpha()));
  }
  if (!(lora.dropout() >= 0 && lora.dropout() < 1)) {
    return Invalid("spec.lora.dropout",
                   absl::StrCat("must be in [0, 1), got ", lora.dropout()));
  }
  for (int i = 0; i < lora.target_modules_size(); ++i) {
    RETURN_IF_ERROR(
        CheckOneOf(absl::StrCat("spec.lora.target_modules[", i, "]"),
                   lora.target_modules(i),
                   {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                    "up_proj", "down_proj"}));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateJobSpec(const v1::JobSpec& spec) {
  // Inputs on disk, in field order.
  RETURN_IF_ERROR(CheckDirectory("spec.model_dir", spec.model_dir()));
  const std::string config = JoinPath(spec.model_dir(), "config.json");
  if (KindOf(config) != PathKind::kFile) {
    return NotFound("spec.model_dir",
                    absl::StrCat(config,
                                 " not found (a model directory "
                                 "holds a Hugging Face config.json)"));
  }
  RETURN_IF_ERROR(CheckFile("spec.tokenizer_path", spec.tokenizer_path()));
  RETURN_IF_ERROR(CheckDirectory("spec.data_dir", spec.data_dir()));
  RETURN_IF_ERROR(
      CheckSplit("spec.forget_split", spec.data_dir(), spec.forget_split()));
  RETURN_IF_ERROR(
      CheckSplit("spec.retain_split", spec.data_dir(), spec.retain_split()));
  if (spec.retain_split() == spec.forget_split()) {
    return Invalid("spec.retain_split",
                   absl::StrCat("must differ from forget_split, both are \"",
                                spec.forget_split(), "\""));
  }
  if (spec.prompt_template() != "auto") {
    // Names and the system prompt; "auto" is checked against the model when
    // the run loads it.
    const absl::Status known =
        PromptTemplateByName(spec.prompt_template(),
                             {.system_prompt = spec.system_prompt(),
                              .date_string = spec.date_string()})
            .status();
    if (!known.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.prompt_template: ", known.message()));
    }
  }
  RETURN_IF_ERROR(CheckMethod(spec));

  const v1::MethodParams& params = spec.method_params();
  const v1::OptimizerSpec& optimizer = spec.optimizer();
  const DoubleCheck double_checks[] = {
      {"spec.method_params.beta", params.beta(), DoubleCheck::kNonNegative},
      {"spec.method_params.alpha", params.alpha(), DoubleCheck::kNonNegative},
      {"spec.method_params.gamma", params.gamma(), DoubleCheck::kNonNegative},
      {"spec.method_params.delta", params.delta(), DoubleCheck::kFinite},
      {"spec.method_params.ofmu_rho", params.ofmu_rho(),
       DoubleCheck::kNonNegative},
      {"spec.method_params.ofmu_rho_growth",
       params.has_ofmu_rho_growth() ? params.ofmu_rho_growth() : 1.0,
       DoubleCheck::kAtLeastOne},
      {"spec.method_params.random_answer_weight", params.random_answer_weight(),
       DoubleCheck::kNonNegative},
      {"spec.method_params.ofmu_inner_learning_rate",
       params.ofmu_inner_learning_rate(), DoubleCheck::kNonNegative},
      {"spec.method_params.reglu_rol_weight", params.reglu_rol_weight(),
       DoubleCheck::kNonNegative},
      {"spec.method_params.pga_align_weight", params.pga_align_weight(),
       DoubleCheck::kNonNegative},
      {"spec.method_params.pga_ce_weight", params.pga_ce_weight(),
       DoubleCheck::kNonNegative},
      {"spec.optimizer.learning_rate", optimizer.learning_rate(),
       DoubleCheck::kPositive},
      {"spec.optimizer.weight_decay", optimizer.weight_decay(),
       DoubleCheck::kNonNegative},
      {"spec.optimizer.warmup_epochs", optimizer.warmup_epochs(),
       DoubleCheck::kNonNegative},
      {"spec.optimizer.max_grad_norm", optimizer.max_grad_norm(),
       DoubleCheck::kNonNegative},
  };
  for (const DoubleCheck& check : double_checks) RETURN_IF_ERROR(Check(check));
  RETURN_IF_ERROR(
      CheckOneOf("spec.method_params.retain_loss", params.retain_loss(),
                 {std::begin(kRetainLosses), std::end(kRetainLosses)}));
  RETURN_IF_ERROR(CheckOneOf(
      "spec.method_params.reglu_forget_loss", params.reglu_forget_loss(),
      {std::begin(kRegluForgetLosses), std::end(kRegluForgetLosses)}));
  if (params.has_reglu_beta_r() &&
      !(params.reglu_beta_r() >= 0 && params.reglu_beta_r() <= 1)) {
    return Invalid(
        "spec.method_params.reglu_beta_r",
        absl::StrCat("must be in [0, 1], got ", params.reglu_beta_r()));
  }
  for (const IntCheck& check :
       {IntCheck{
            "spec.method_params.reglu_retain_rank",
            params.has_reglu_retain_rank() ? params.reglu_retain_rank() : 1, 1,
            1 << 20},
        IntCheck{"spec.method_params.reglu_samples",
                 params.has_reglu_samples() ? params.reglu_samples() : 1, 1,
                 1 << 20},
        IntCheck{"spec.method_params.pga_refit_every_epochs",
                 params.has_pga_refit_every_epochs()
                     ? params.pga_refit_every_epochs()
                     : 1,
                 1, kUnbounded},
        IntCheck{"spec.method_params.pga_projection_rank",
                 params.pga_projection_rank(), 0, 1 << 20}}) {
    RETURN_IF_ERROR(Check(check));
  }
  for (const int depth : params.pga_depths()) {
    if (depth < 0 || depth > 1 << 16) {
      return Invalid("spec.method_params.pga_depths",
                     absl::StrCat("must be layer depths >= 0, got ", depth));
    }
  }
  ASSIGN_OR_RETURN(const UnlearningMethod method,
                   MethodFromSpec(spec.method()));
  const absl::Status objective =
      ValidateObjectiveParams(method, ObjectiveParamsFromSpec(method, params));
  if (!objective.ok()) {
    return Invalid("spec.method_params", objective.message());
  }
  if (method == UnlearningMethod::kMsa) {
    RETURN_IF_ERROR(
        CheckDirectory("spec.base_model_dir", spec.base_model_dir()));
    if (KindOf(JoinPath(spec.base_model_dir(), "config.json")) !=
        PathKind::kFile) {
      return NotFound("spec.base_model_dir",
                      absl::StrCat(spec.base_model_dir(),
                                   "/config.json not found (MSA's theta_0 is "
                                   "a model in Hugging Face layout)"));
    }
    if (spec.lora().rank() > 0) {
      return Invalid("spec.lora.rank",
                     "MSA fine-tunes and combines whole models; LoRA is not "
                     "available with it");
    }
  } else if (!spec.base_model_dir().empty()) {
    return Invalid("spec.base_model_dir",
                   "is MSA's theta_0 and only used by method MSA");
  }
  if (method == UnlearningMethod::kPga) {
    if (spec.holdout_split().empty()) {
      return Invalid("spec.holdout_split",
                     "must be set for PGA when forget_split is not forgetNN "
                     "(the clean examples paired with the forget set)");
    }
    RETURN_IF_ERROR(CheckSplit("spec.holdout_split", spec.data_dir(),
                               spec.holdout_split()));
    if (spec.holdout_split() == spec.forget_split()) {
      return Invalid("spec.holdout_split",
                     absl::StrCat("must differ from forget_split, both are \"",
                                  spec.forget_split(), "\""));
    }
  } else if (!spec.holdout_split().empty()) {
    return Invalid("spec.holdout_split",
                   "is PGA's and only used by method PGA");
  }
  if (method == UnlearningMethod::kReglu && spec.lora().rank() == 0) {
    return Invalid("spec.lora.rank",
                   "is 0, but REGLU trains LoRA adapters: set spec.lora "
                   "(the paper: rank 32, alpha 64, every projection)");
  }

  const IntCheck int_checks[] = {
      {"spec.method_params.ofmu_inner_steps", params.ofmu_inner_steps(), 0,
       kUnbounded},
      {"spec.num_epochs", spec.num_epochs(), 0, kUnbounded},
      {"spec.max_steps", spec.max_steps(), 0, kUnbounded},
      {"spec.per_device_batch_size", spec.per_device_batch_size(), 1, 4096},
      {"spec.gradient_accumulation_steps", spec.gradient_accumulation_steps(),
       1, 4096},
      {"spec.world_size", spec.world_size(), 1, 1024},
      {"spec.threads_per_worker", spec.threads_per_worker(), 0, 256},
      {"spec.max_length", spec.max_length(), 8, 1 << 20},
      {"spec.evaluation.every_epochs", spec.evaluation().every_epochs(), 0,
       kUnbounded},
      {"spec.checkpoint.every_steps", spec.checkpoint().every_steps(), 0,
       kUnbounded},
      {"spec.checkpoint.keep_last", spec.checkpoint().keep_last(), 1, 100},
      {"spec.run_policy.max_restarts", spec.run_policy().max_restarts(), 0,
       100},
      {"spec.priority", spec.priority(), -1000, 1000},
  };
  for (const IntCheck& check : int_checks) RETURN_IF_ERROR(Check(check));
  if (spec.num_epochs() == 0 && spec.max_steps() == 0) {
    return Invalid("spec.num_epochs",
                   "num_epochs and max_steps are both 0; set at least one");
  }

  RETURN_IF_ERROR(CheckBackendAndDevice(spec));
  if (!v1::Precision_IsValid(spec.precision()) ||
      spec.precision() == v1::PRECISION_UNSPECIFIED) {
    return Invalid(
        "spec.precision",
        absl::StrCat("must be FP32 or BF16_AUTOCAST, got ", spec.precision()));
  }
  RETURN_IF_ERROR(CheckOneOf("spec.weights_dtype", spec.weights_dtype(),
                             {"", "fp32", "bf16", "fp16", "auto"}));
  RETURN_IF_ERROR(CheckMemoryAndLora(spec));
  if (!spec.evaluation().retain_logs_path().empty()) {
    RETURN_IF_ERROR(CheckFile("spec.evaluation.retain_logs_path",
                              spec.evaluation().retain_logs_path()));
  }
  RETURN_IF_ERROR(CheckOutputDir("spec.output_dir", spec.output_dir()));
  RETURN_IF_ERROR(CheckOutputApart(spec));
  RETURN_IF_ERROR(CheckDeadline(spec));
  const size_t display_name_chars = Utf8Length(spec.display_name());
  if (display_name_chars > kMaxDisplayNameChars) {
    return Invalid("spec.display_name",
                   absl::StrCat("must be at most ", kMaxDisplayNameChars,
                                " characters, got ", display_name_chars));
  }
  return absl::OkStatus();
}

absl::StatusOr<UnlearningMethod> MethodFromSpec(v1::Method method) {
  switch (method) {
    case v1::GA:
      return UnlearningMethod::kGa;
    case v1::GRAD_DIFF:
      return UnlearningMethod::kGradDiff;
    case v1::NPO:
      return UnlearningMethod::kNpo;
    case v1::NPO_RT:
      return UnlearningMethod::kNpoRt;
    case v1::NPO_KL:
      return UnlearningMethod::kNpoKl;
    case v1::SIM_NPO:
      return UnlearningMethod::kSimNpo;
    case v1::IDK_DPO:
      return UnlearningMethod::kIdkDpo;
    case v1::LLMU:
      return UnlearningMethod::kLlmu;
    case v1::OFMU:
      return UnlearningMethod::kOfmu;
    case v1::IHL:
      return UnlearningMethod::kIhl;
    case v1::MSA:
      return UnlearningMethod::kMsa;
    case v1::REGLU:
      return UnlearningMethod::kReglu;
    case v1::PGA:
      return UnlearningMethod::kPga;
    default:
      return Invalid("spec.method",
                     method == v1::METHOD_UNSPECIFIED
                         ? std::string("must be set, e.g. NPO or GRAD_DIFF")
                         : absl::StrCat("unknown method ", method));
  }
}

ObjectiveParams ObjectiveParamsFromSpec(UnlearningMethod method,
                                        const v1::MethodParams& spec) {
  ObjectiveParams params = DefaultObjectiveParams(method);
  if (spec.has_beta()) params.beta = spec.beta();
  if (spec.has_alpha()) params.alpha = spec.alpha();
  if (spec.has_gamma()) params.gamma = spec.gamma();
  if (spec.has_delta()) params.delta = spec.delta();
  if (spec.retain_loss() == "kl") params.retain_loss = RetainLoss::kKl;
  if (spec.has_random_answer_weight()) {
    params.random_answer_weight = spec.random_answer_weight();
  }
  if (spec.has_ofmu_inner_steps()) {
    params.ofmu_inner_steps = spec.ofmu_inner_steps();
  }
  if (spec.has_ofmu_inner_learning_rate()) {
    params.ofmu_inner_learning_rate = spec.ofmu_inner_learning_rate();
  }
  if (spec.has_ofmu_rho()) params.ofmu_rho = spec.ofmu_rho();
  if (spec.has_ofmu_rho_growth()) {
    params.ofmu_rho_growth = spec.ofmu_rho_growth();
  }
  if (spec.has_ofmu_first_order()) {
    params.ofmu_first_order = spec.ofmu_first_order();
  }
  if (spec.reglu_forget_loss() == "gd") {
    params.reglu_forget_loss = RegluForgetLoss::kGd;
  }
  if (spec.has_reglu_beta_r()) params.reglu_beta_r = spec.reglu_beta_r();
  if (spec.has_reglu_rol_weight()) {
    params.reglu_rol_weight = spec.reglu_rol_weight();
  }
  if (spec.has_reglu_retain_rank()) {
    params.reglu_retain_rank = spec.reglu_retain_rank();
  }
  if (spec.has_reglu_samples()) params.reglu_samples = spec.reglu_samples();
  if (spec.has_pga_align_weight()) {
    params.pga_align_weight = spec.pga_align_weight();
  }
  if (spec.has_pga_ce_weight()) params.pga_ce_weight = spec.pga_ce_weight();
  if (spec.has_pga_refit_every_epochs()) {
    params.pga_refit_every_epochs = spec.pga_refit_every_epochs();
  }
  params.pga_depths.assign(spec.pga_depths().begin(), spec.pga_depths().end());
  if (spec.has_pga_projection_rank()) {
    params.pga_projection_rank = spec.pga_projection_rank();
  }
  return params;
}

}  // namespace lethe
