// lethe: the command-line client and model tool.
//
//   lethe version
//   lethe health            [--coordinator=HOST:PORT]
//   lethe prepare-benchmark [--cache_dir=DIR] [--authors=N] [--seed=N]
//                           [--base_epochs=N] [--finetune_epochs=N]
//   lethe finetune --model=DIR --data=DIR --split=NAME --output=DIR [...]
//   lethe generate --model=DIR --prompt=QUESTION [--max_new_tokens=N]
//   lethe unlearn --model=DIR --data=DIR --method=NPO --output=DIR
//                 [--forget_split=forget10] [--retain_split=retain90] [...]
//   lethe eval --model=DIR --data=DIR --output=DIR [--forget_split=forget10]
//              [--retain_logs=RETAIN_EVAL_JSON] [--reference_model=DIR]
//   lethe tofu-summary --eval=EVAL_JSON [--retain=RETAIN_EVAL_JSON]
//
// --coordinator defaults to $LETHE_COORDINATOR, then 127.0.0.1:7070.
// Exit status: 0 on success, 1 when the command failed, 2 for bad usage.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "libs/metrics/build_info.h"
#include "libs/status/status_macros.h"
#include "libs/unlearn/objective.h"
#include "services/cli/eval_commands.h"
#include "services/cli/model_commands.h"
#include "services/cli/prepare_benchmark.h"

ABSL_FLAG(std::string, coordinator, "",
          "coordinator address HOST:PORT (default: $LETHE_COORDINATOR, then "
          "127.0.0.1:7070)");
ABSL_FLAG(double, timeout_seconds, 5,
          "deadline for each call to the coordinator");
ABSL_FLAG(std::string, model, "", "model directory (Hugging Face layout)");
ABSL_FLAG(std::string, data, "", "directory of TOFU-format split files");
ABSL_FLAG(std::string, split, "", "split name, e.g. full or retain90");
ABSL_FLAG(std::string, template, "plain",
          "prompt template: plain, llama2_chat");
ABSL_FLAG(std::string, output, "",
          "output directory: the model (finetune), TOFU_EVAL.json and "
          "TOFU_SUMMARY.json (eval)");
ABSL_FLAG(int, epochs, 5, "training epochs");
ABSL_FLAG(double, learning_rate, 1e-5, "peak learning rate (AdamW)");
ABSL_FLAG(double, weight_decay, 0.01, "AdamW weight decay (not on norms)");
ABSL_FLAG(double, warmup_epochs, 1.0, "linear warm-up length in epochs");
ABSL_FLAG(double, max_grad_norm, 1.0, "gradient clipping norm (0: off)");
ABSL_FLAG(int, batch_size, 0,
          "examples per batch (0: the command's default, 4 for finetune, 32 "
          "for eval)");
ABSL_FLAG(int, grad_accum, 1, "micro-batches per optimizer step");
ABSL_FLAG(int, max_length, 256, "tokens per example (longer ones truncated)");
ABSL_FLAG(int, threads, 2, "CPU threads for LibTorch");
ABSL_FLAG(uint64_t, seed, 1, "seed for data order and initialisation");
ABSL_FLAG(bool, bf16, false, "bf16 autocast (fast on CPUs with AMX)");
ABSL_FLAG(bool, bf16_reference, false,
          "unlearn: keep the frozen reference of KL terms (NPO_KL, GradDiff "
          "with --retain_loss=kl, LLMU) in bfloat16");
ABSL_FLAG(std::string, prompt, "", "question to answer (generate)");
ABSL_FLAG(int, max_new_tokens, 200, "generation limit");
ABSL_FLAG(std::string, cache_dir, ".lethe/benchmark",
          "where prepare-benchmark keeps its data and models");
ABSL_FLAG(int, authors, 100, "fictitious authors in the embedded benchmark");
ABSL_FLAG(int, base_epochs, 30,
          "prepare-benchmark: epochs of the base model over general facts");
ABSL_FLAG(int, finetune_epochs, 12,
          "prepare-benchmark: epochs of the target and retain models");
ABSL_FLAG(std::string, forget_split, "forget10",
          "eval: the forget split (forgetNN; its holdoutNN holds the MIA "
          "non-members)");
ABSL_FLAG(std::string, retain_logs, "",
          "eval: the retain model's TOFU_EVAL.json, for forget_quality and "
          "privleak");
ABSL_FLAG(std::string, reference_model, "",
          "eval: model directory for mia_reference (e.g. the retain model)");
ABSL_FLAG(std::string, eval, "",
          "tofu-summary: the TOFU_EVAL.json to summarise");
ABSL_FLAG(std::string, retain, "",
          "tofu-summary: the retain model's TOFU_EVAL.json");
ABSL_FLAG(std::string, retain_split, "retain90",
          "unlearn: the split whose knowledge must survive");
ABSL_FLAG(std::string, method, "NPO",
          "unlearn: GA, GradDiff, NPO, NPO_RT, NPO_KL, SimNPO, IdkDPO, LLMU or "
          "OFMU");
// Method coefficients: NaN (the default) keeps the method's own default.
ABSL_FLAG(double, beta, NAN,
          "unlearn: NPO/DPO inverse temperature (0.1), SimNPO beta (4.5), "
          "OFMU cosine weight (0.1)");
ABSL_FLAG(double, alpha, NAN, "unlearn: weight of the retain term (1)");
ABSL_FLAG(double, gamma, NAN,
          "unlearn: weight of the forget term (1; SimNPO 0.125, LLMU 0.5)");
ABSL_FLAG(double, delta, NAN, "unlearn: SimNPO margin (0)");
ABSL_FLAG(std::string, retain_loss, "nll",
          "unlearn: GradDiff's retain term, nll or kl");
ABSL_FLAG(double, random_answer_weight, NAN,
          "unlearn: LLMU's weight for fitting random answers (1)");
ABSL_FLAG(int, ofmu_inner_steps, 1, "unlearn: OFMU inner ascent steps T");
ABSL_FLAG(double, ofmu_inner_learning_rate, 0,
          "unlearn: OFMU inner step size (0: the scheduled learning rate)");
ABSL_FLAG(double, ofmu_rho, 0.1, "unlearn: OFMU initial penalty rho");
ABSL_FLAG(double, ofmu_rho_growth, 1.01,
          "unlearn: OFMU penalty growth per step (rho_{k+1} = growth * rho_k)");
ABSL_FLAG(bool, ofmu_first_order, false,
          "unlearn: OFMU Hessian-vector products by finite differences "
          "(approximate, first-order memory)");
ABSL_FLAG(std::string, tokenizer_trainer, "",
          "lethe-train-tokenizer program (default: next to lethe)");

namespace lethe {
namespace {

constexpr char kUsage[] =
    "Lethe's command-line client and model tool.\n"
    "Usage: lethe COMMAND [flags]\n"
    "Commands:\n"
    "  version            print Lethe's version\n"
    "  health             check that the coordinator is serving\n"
    "  prepare-benchmark  build the embedded mini-TOFU benchmark (cached)\n"
    "  finetune           fine-tune a model on a TOFU split\n"
    "  generate           answer a question greedily\n"
    "  unlearn            make a model forget a TOFU split\n"
    "  eval               TOFU evaluation (open-unlearning's metrics)\n"
    "  tofu-summary       recompute TOFU_SUMMARY.json from a TOFU_EVAL.json\n"
    "Run `lethe --helpfull` for every flag.";

std::string CoordinatorAddress() {
  std::string address = absl::GetFlag(FLAGS_coordinator);
  if (address.empty()) {
    const char* from_environment = std::getenv("LETHE_COORDINATOR");
    address = from_environment != nullptr ? from_environment : "127.0.0.1:7070";
  }
  return address;
}

absl::Status CheckHealth() {
  using ::grpc::health::v1::Health;
  using ::grpc::health::v1::HealthCheckRequest;
  using ::grpc::health::v1::HealthCheckResponse;
  const std::string address = CoordinatorAddress();
  auto stub = Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(
                           absl::GetFlag(FLAGS_timeout_seconds) * 1000)));
  context.set_wait_for_ready(true);
  HealthCheckResponse reply;
  const grpc::Status status =
      stub->Check(&context, HealthCheckRequest(), &reply);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot reach the coordinator at ", address, ": ",
        status.error_message(),
        " (start one with lethe-coordinator, or set --coordinator)"));
  }
  const std::string state =
      HealthCheckResponse::ServingStatus_Name(reply.status());
  std::cout << "coordinator at " << address << ": " << state << std::endl;
  if (reply.status() != HealthCheckResponse::SERVING) {
    return absl::UnavailableError(
        absl::StrCat("coordinator at ", address, " is ", state));
  }
  return absl::OkStatus();
}

// --batch_size, or `command_default` when it is 0.
int BatchSizeOr(int command_default) {
  const int batch_size = absl::GetFlag(FLAGS_batch_size);
  return batch_size != 0 ? batch_size : command_default;
}

TrainingOptions TrainingFromFlags() {
  return {.learning_rate = absl::GetFlag(FLAGS_learning_rate),
          .weight_decay = absl::GetFlag(FLAGS_weight_decay),
          .warmup_epochs = absl::GetFlag(FLAGS_warmup_epochs),
          .max_grad_norm = absl::GetFlag(FLAGS_max_grad_norm),
          .num_epochs = absl::GetFlag(FLAGS_epochs),
          .per_device_batch_size = BatchSizeOr(4),
          .gradient_accumulation_steps = absl::GetFlag(FLAGS_grad_accum),
          .seed = absl::GetFlag(FLAGS_seed),
          .threads = absl::GetFlag(FLAGS_threads),
          .bf16_autocast = absl::GetFlag(FLAGS_bf16)};
}

void OverrideIfSet(double flag, double& value) {
  if (!std::isnan(flag)) value = flag;
}

absl::StatusOr<UnlearnCommand> UnlearnFromFlags() {
  ASSIGN_OR_RETURN(UnlearningMethod method,
                   ParseUnlearningMethod(absl::GetFlag(FLAGS_method)));
  ObjectiveParams params = DefaultObjectiveParams(method);
  OverrideIfSet(absl::GetFlag(FLAGS_beta), params.beta);
  OverrideIfSet(absl::GetFlag(FLAGS_alpha), params.alpha);
  OverrideIfSet(absl::GetFlag(FLAGS_gamma), params.gamma);
  OverrideIfSet(absl::GetFlag(FLAGS_delta), params.delta);
  OverrideIfSet(absl::GetFlag(FLAGS_random_answer_weight),
                params.random_answer_weight);
  const std::string retain_loss = absl::GetFlag(FLAGS_retain_loss);
  if (retain_loss != "nll" && retain_loss != "kl") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--retain_loss must be nll or kl, got '", retain_loss, "'"));
  }
  params.retain_loss = retain_loss == "kl" ? RetainLoss::kKl : RetainLoss::kNll;
  params.ofmu_inner_steps = absl::GetFlag(FLAGS_ofmu_inner_steps);
  params.ofmu_inner_learning_rate =
      absl::GetFlag(FLAGS_ofmu_inner_learning_rate);
  params.ofmu_rho = absl::GetFlag(FLAGS_ofmu_rho);
  params.ofmu_rho_growth = absl::GetFlag(FLAGS_ofmu_rho_growth);
  params.ofmu_first_order = absl::GetFlag(FLAGS_ofmu_first_order);
  RETURN_IF_ERROR(ValidateObjectiveParams(method, params));
  return UnlearnCommand{.model_dir = absl::GetFlag(FLAGS_model),
                        .data_dir = absl::GetFlag(FLAGS_data),
                        .forget_split = absl::GetFlag(FLAGS_forget_split),
                        .retain_split = absl::GetFlag(FLAGS_retain_split),
                        .prompt_template = absl::GetFlag(FLAGS_template),
                        .output_dir = absl::GetFlag(FLAGS_output),
                        .max_length = absl::GetFlag(FLAGS_max_length),
                        .method = method,
                        .params = params,
                        .training = TrainingFromFlags(),
                        .bf16_reference = absl::GetFlag(FLAGS_bf16_reference)};
}

// lethe-train-tokenizer sits next to lethe in every build and install.
std::string DefaultTokenizerTrainer() {
  std::error_code error;
  const std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", error);
  return (self.parent_path() / "lethe-train-tokenizer").string();
}

absl::Status PrepareBenchmarkCommand() {
  BenchmarkOptions options;
  options.cache_dir = absl::GetFlag(FLAGS_cache_dir);
  options.num_authors = absl::GetFlag(FLAGS_authors);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.base_epochs = absl::GetFlag(FLAGS_base_epochs);
  options.finetune_epochs = absl::GetFlag(FLAGS_finetune_epochs);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.tokenizer_trainer = absl::GetFlag(FLAGS_tokenizer_trainer);
  if (options.tokenizer_trainer.empty()) {
    options.tokenizer_trainer = DefaultTokenizerTrainer();
  }
  absl::StatusOr<PreparedBenchmark> prepared = PrepareBenchmark(
      options, [](const std::string& line) { std::cout << line << std::endl; });
  if (!prepared.ok()) return prepared.status();
  std::cout << "benchmark ready in " << options.cache_dir << ":\n"
            << "  data:   " << prepared->data_dir << "\n"
            << "  target: " << prepared->target_dir << "\n"
            << "  retain: " << prepared->retain_dir << "\n";
  for (const auto& [name, probability] : prepared->probabilities) {
    std::cout << absl::StrFormat("  mean answer probability %-34s %.3f\n", name,
                                 probability);
  }
  for (const auto& [name, value] : prepared->tofu_summary) {
    std::cout << absl::StrFormat("  TOFU summary %-45s %.4g\n", name, value);
  }
  if (!prepared->reused) {
    std::cout << absl::StrFormat("prepared in %.0fs\n", prepared->seconds);
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() != 2) {
    std::cerr << kUsage << std::endl;
    return 2;
  }
  const std::string command = positional[1];
  absl::Status status;
  if (command == "version") {
    std::cout << "lethe " << kLetheVersion << std::endl;
  } else if (command == "health") {
    status = CheckHealth();
  } else if (command == "prepare-benchmark") {
    status = PrepareBenchmarkCommand();
  } else if (command == "finetune") {
    status = RunFinetune({.model_dir = absl::GetFlag(FLAGS_model),
                          .data_dir = absl::GetFlag(FLAGS_data),
                          .split = absl::GetFlag(FLAGS_split),
                          .prompt_template = absl::GetFlag(FLAGS_template),
                          .output_dir = absl::GetFlag(FLAGS_output),
                          .max_length = absl::GetFlag(FLAGS_max_length),
                          .training = TrainingFromFlags()});
  } else if (command == "generate") {
    status = RunGenerate({.model_dir = absl::GetFlag(FLAGS_model),
                          .question = absl::GetFlag(FLAGS_prompt),
                          .prompt_template = absl::GetFlag(FLAGS_template),
                          .max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens),
                          .threads = absl::GetFlag(FLAGS_threads)});
  } else if (command == "unlearn") {
    absl::StatusOr<UnlearnCommand> unlearn = UnlearnFromFlags();
    status = unlearn.ok() ? RunUnlearn(*unlearn) : unlearn.status();
  } else if (command == "eval") {
    status =
        RunEval({.model_dir = absl::GetFlag(FLAGS_model),
                 .data_dir = absl::GetFlag(FLAGS_data),
                 .forget_split = absl::GetFlag(FLAGS_forget_split),
                 .prompt_template = absl::GetFlag(FLAGS_template),
                 .retain_logs = absl::GetFlag(FLAGS_retain_logs),
                 .reference_model_dir = absl::GetFlag(FLAGS_reference_model),
                 .output_dir = absl::GetFlag(FLAGS_output),
                 .batch_size = BatchSizeOr(32),
                 .max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens),
                 .threads = absl::GetFlag(FLAGS_threads)},
                std::cout);
  } else if (command == "tofu-summary") {
    if (absl::GetFlag(FLAGS_eval).empty()) {
      status = absl::InvalidArgumentError("--eval is required");
    } else {
      status = RunTofuSummary(absl::GetFlag(FLAGS_eval),
                              absl::GetFlag(FLAGS_retain), std::cout);
    }
  } else {
    std::cerr << "lethe: unknown command '" << command << "'\n"
              << kUsage << std::endl;
    return 2;
  }
  if (!status.ok()) {
    std::cerr << "lethe " << command << ": " << status.message() << std::endl;
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) { return lethe::Main(argc, argv); }
