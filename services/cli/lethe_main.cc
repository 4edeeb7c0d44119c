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
//                 (the flags of `submit`; one rank, run here)
//   lethe eval --model=DIR --data=DIR --output=DIR [--forget_split=forget10]
//              [--retain_logs=RETAIN_EVAL_JSON] [--reference_model=DIR]
//   lethe tofu-summary --eval=EVAL_JSON [--retain=RETAIN_EVAL_JSON]
//   lethe submit [SPEC.json|SPEC.yaml|SPEC.yml] [--model=DIR --data=DIR
//                --method=NPO_RT --output=DIR ...] [--request_id=ID] [--watch]
//   lethe get|cancel|delete|watch|logs JOB   (JOB: jobs/7 or 7)
//   lethe list [--state=RUNNING]
// Job commands print tables; --format=json prints the API's JSON.
//
// --coordinator defaults to $LETHE_COORDINATOR, then 127.0.0.1:7070.
// --token defaults to $LETHE_TOKEN (sent as a bearer token); --tls_ca_file
// makes the connection TLS, trusting that CA for the coordinator.
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
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "libs/jobs/job_spec.h"
#include "libs/logging/logging.h"
#include "libs/metrics/build_info.h"
#include "libs/rpc/tls_credentials.h"
#include "libs/status/status_macros.h"
#include "services/cli/eval_commands.h"
#include "services/cli/job_commands.h"
#include "services/cli/model_commands.h"
#include "services/cli/plan_command.h"
#include "services/cli/prepare_benchmark.h"
#include "services/cli/text_commands.h"

ABSL_FLAG(std::string, coordinator, "",
          "coordinator address HOST:PORT (default: $LETHE_COORDINATOR, then "
          "127.0.0.1:7070)");
ABSL_FLAG(std::string, token, "",
          "bearer token for the coordinator's Jobs API (default: "
          "$LETHE_TOKEN)");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA bundle: talk to the coordinator over TLS, trusting this CA "
          "(default: $LETHE_TLS_CA_FILE; unset: plaintext)");
ABSL_FLAG(double, timeout_seconds, 5,
          "deadline for each call to the coordinator");
ABSL_FLAG(std::string, model, "", "model directory (Hugging Face layout)");
ABSL_FLAG(std::string, base_model, "",
          "unlearn/submit with --method=MSA: theta_0, a model of the same "
          "architecture that never saw the forget data (e.g. the base "
          "before fine-tuning)");
ABSL_FLAG(std::string, data, "", "directory of TOFU-format split files");
ABSL_FLAG(std::string, split, "", "split name, e.g. full or retain90");
ABSL_FLAG(std::string, template, "auto",
          "prompt template: auto (the model's own chat template, or plain "
          "when it has none), plain, llama2_chat, or a chat template: llama3, "
          "llama2, qwen2.5, chatml, mistral, zephyr, phi3, gemma, gemma3");
ABSL_FLAG(std::string, weights_dtype, "fp32",
          "dtype the model's weights are loaded in: fp32, bf16, fp16, or auto "
          "(as stored: a bf16 checkpoint stays bf16, memory-mapped, never "
          "copied; bf16/fp16 train without fp32 master weights)");
ABSL_FLAG(int, loss_chunk_tokens, 0,
          "unlearn/submit: compute answer-token log-probabilities this many "
          "tokens at a time from hidden states, never the whole batch's "
          "logits (0: all at once)");
ABSL_FLAG(bool, activation_checkpointing, false,
          "unlearn/submit: recompute each decoder layer in the backward pass "
          "instead of keeping its activations (not with OFMU)");
ABSL_FLAG(int, pack_row_length, -1,
          "unlearn/submit: padding-free batches, sequences packed whole into "
          "rows of at most this many positions (0: padded batches; -1: the "
          "spec's default, 128)");
ABSL_FLAG(int, zero_stage, 0,
          "unlearn/submit: shard AdamW's state over the data-parallel ranks "
          "(ZeRO 1; 2 also shards the reduced gradients); 0: replicated");
ABSL_FLAG(int, lora_rank, 0,
          "unlearn/submit: train LoRA adapters of this rank instead of the "
          "whole model (0: full training)");
ABSL_FLAG(double, lora_alpha, 0, "LoRA scale numerator (0: PEFT's 8)");
ABSL_FLAG(double, lora_dropout, 0, "dropout on the LoRA adapters' input");
ABSL_FLAG(std::vector<std::string>, lora_target_modules, {},
          "comma-separated PEFT module names to adapt (q_proj, k_proj, "
          "v_proj, o_proj, gate_proj, up_proj, down_proj; empty: q_proj,"
          "v_proj)");
ABSL_FLAG(std::string, system_prompt, "",
          "a chat template's system message (open-unlearning uses \"You are "
          "a helpful assistant.\" for Llama 3, Qwen2.5, Phi-3.5, zephyr)");
ABSL_FLAG(std::string, date_string, "",
          "Llama 3's \"Today Date\" (open-unlearning: \"10 Apr 2025\"); "
          "empty: the template's default, 26 Jul 2024");
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
ABSL_FLAG(int, threads, 0,
          "CPU threads for LibTorch (0: 2 here; submit: each rank's, 0 "
          "leaving each worker's own)");
ABSL_FLAG(uint64_t, seed, 1, "seed for data order and initialisation");
ABSL_FLAG(bool, bf16, false, "bf16 autocast (fast on CPUs with AMX)");
ABSL_FLAG(bool, bf16_reference, false,
          "unlearn: keep the frozen reference of KL terms (NPO_KL, GradDiff "
          "with --retain_loss=kl, LLMU) in bfloat16");
ABSL_FLAG(std::string, prompt, "", "question to answer (generate)");
ABSL_FLAG(std::string, text, "", "text to tokenize (tokenize)");
ABSL_FLAG(bool, add_bos, true,
          "tokenize: begin with the model's BOS, as transformers' "
          "tokenizer(text) does");
ABSL_FLAG(std::string, question, "", "question to put in the prompt (prompt)");
ABSL_FLAG(std::string, answer, "",
          "prompt: an answer, to print the full training example");
ABSL_FLAG(int, max_new_tokens, 200, "generation limit");
ABSL_FLAG(std::string, cache_dir, ".lethe/benchmark",
          "where prepare-benchmark keeps its data and models");
ABSL_FLAG(int, authors, 100, "fictitious authors in the embedded benchmark");
ABSL_FLAG(int, base_epochs, 22,
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
ABSL_FLAG(bool, memorization_probe, false,
          "eval: also PGA's memorisation signature (probe accuracy per depth, "
          "forget split vs its holdout split) in MEMORIZATION_PROBE.json");
ABSL_FLAG(bool, only_memorization_probe, false,
          "eval: the memorisation signature alone, without the TOFU "
          "evaluation");
ABSL_FLAG(std::string, eval, "",
          "tofu-summary: the TOFU_EVAL.json to summarise");
ABSL_FLAG(std::string, retain, "",
          "tofu-summary: the retain model's TOFU_EVAL.json");
ABSL_FLAG(std::string, retain_split, "retain90",
          "unlearn: the split whose knowledge must survive");
ABSL_FLAG(std::string, method, "NPO",
          "unlearn: GA, GradDiff, NPO, NPO_RT, NPO_KL, SimNPO, IdkDPO, LLMU, "
          "OFMU, IHL, MSA, REGLU or PGA (REGLU needs --lora_rank; PGA pairs "
          "the forget split with --holdout_split)");
// Method coefficients: NaN (the default) leaves the spec's field absent, so
// the method's own default applies; any value given, 0 included, is used.
ABSL_FLAG(double, beta, NAN,
          "unlearn: NPO/DPO inverse temperature (0.1), SimNPO beta (4.5), "
          "OFMU cosine weight (0.1), MSA weight of the retain vector (1)");
ABSL_FLAG(double, alpha, NAN,
          "unlearn: weight of the retain term (1; MSA: of the forget vector, "
          "1)");
ABSL_FLAG(double, gamma, NAN,
          "unlearn: weight of the forget term (1; SimNPO 0.125, LLMU 0.5; "
          "IHL: of the inverted hinge loss, 1; REGLU: of its forget term, 1)");
ABSL_FLAG(double, delta, NAN, "unlearn: SimNPO margin (0)");
ABSL_FLAG(std::string, retain_loss, "nll",
          "unlearn: GradDiff's retain term, nll or kl");
ABSL_FLAG(double, random_answer_weight, NAN,
          "unlearn: LLMU's weight for fitting random answers (1)");
ABSL_FLAG(int, ofmu_inner_steps, -1,
          "unlearn: OFMU inner ascent steps T (-1: the default, 1)");
ABSL_FLAG(double, ofmu_inner_learning_rate, NAN,
          "unlearn: OFMU inner step size (0, the default: the scheduled "
          "learning rate)");
ABSL_FLAG(double, ofmu_rho, NAN, "unlearn: OFMU initial penalty rho (0.1)");
ABSL_FLAG(double, ofmu_rho_growth, NAN,
          "unlearn: OFMU penalty growth per step, rho_{k+1} = growth * rho_k "
          "(1.01)");
ABSL_FLAG(std::string, reglu_forget_loss, "",
          "unlearn: REGLU's forget term, ihl (the default) or gd (-NLL)");
ABSL_FLAG(double, reglu_beta_r, NAN,
          "unlearn: REGLU's beta_R in RILA's (1 - beta_R) C_F - beta_R C_R, "
          "in [0, 1] (0.7; the paper uses 0.5 on WMDP)");
ABSL_FLAG(double, reglu_rol_weight, NAN,
          "unlearn: REGLU's lambda, the weight of the ROL term (0.5)");
ABSL_FLAG(int, reglu_retain_rank, -1,
          "unlearn: REGLU's k, the retain subspace's dimension in ROL (-1: "
          "the default, 128)");
ABSL_FLAG(int, reglu_samples, -1,
          "unlearn: forget and retain examples (each) REGLU's RILA measures "
          "(-1: the default, 256)");
ABSL_FLAG(std::string, holdout_split, "",
          "unlearn: PGA's clean examples, paired one to one with the forget "
          "split (empty: holdoutNN for forgetNN)");
ABSL_FLAG(double, pga_align_weight, NAN,
          "unlearn: PGA's lambda_align, the weight of the probe-direction "
          "alignment (1)");
ABSL_FLAG(double, pga_ce_weight, NAN,
          "unlearn: PGA's lambda_CE, the weight of the holdout NLL (1)");
ABSL_FLAG(int, pga_refit_every_epochs, -1,
          "unlearn: PGA refits its probes every this many epochs (-1: the "
          "default, 25)");
ABSL_FLAG(std::string, pga_depths, "",
          "unlearn: PGA's aligned depths, comma-separated (0 = embeddings, L "
          "= final norm; empty: 1..L)");
ABSL_FLAG(int, pga_projection_rank, -1,
          "unlearn: directions of the activation projection PGA writes next "
          "to the model (0: none; -1: the default, 1)");
ABSL_FLAG(bool, pga_projection, true,
          "eval, generate: apply the PGA activation projection saved next to "
          "the model (pga_projection.json), when there is one");
ABSL_FLAG(bool, ofmu_first_order, false,
          "unlearn: OFMU Hessian-vector products by finite differences "
          "(approximate, first-order memory)");
ABSL_FLAG(std::string, format, "table",
          "job commands: table (for people) or json (the API's messages)");
ABSL_FLAG(std::string, request_id, "",
          "submit: makes the request idempotent; a retry with the same id "
          "returns the job the first one created");
ABSL_FLAG(bool, watch, false, "submit: follow the job until it ends");
ABSL_FLAG(int, world_size, 1,
          "submit: workers (data-parallel ranks); unlearn runs one");
ABSL_FLAG(bool, evaluate, false,
          "unlearn, submit: evaluate the unlearned model (TOFU metrics) at "
          "the end");
ABSL_FLAG(int, eval_every_epochs, 0,
          "unlearn, submit: also evaluate every N epochs (0: only at the end)");
ABSL_FLAG(int, checkpoint_every, 0,
          "unlearn, submit: checkpoint every N steps (0: only at the end)");
ABSL_FLAG(int, max_restarts, 2,
          "submit: restarts from the last checkpoint after a failure");
ABSL_FLAG(int, priority, 0, "submit: higher runs first");
ABSL_FLAG(std::string, state, "",
          "list: only jobs in this state (QUEUED, RUNNING, SUCCEEDED, ...)");
ABSL_FLAG(bool, follow, true, "logs: keep printing until the job ends");
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
    "  tokenize           print a text's token ids and pieces\n"
    "  prompt             print the exact prompt a question becomes\n"
    "  unlearn            make a model forget a TOFU split\n"
    "  plan               memory per rank of a run, by category (GiB)\n"
    "  eval               TOFU evaluation (open-unlearning's metrics)\n"
    "  tofu-summary       recompute TOFU_SUMMARY.json from a TOFU_EVAL.json\n"
    "  submit             send a forget request (job) to the coordinator\n"
    "  get, list          show one job, or all jobs\n"
    "  watch, logs        follow a job's progress, or its log\n"
    "  cancel, delete     stop a job; remove a finished one\n"
    "Run `lethe --helpfull` for every flag.";

std::string CoordinatorAddress() {
  std::string address = absl::GetFlag(FLAGS_coordinator);
  if (address.empty()) {
    const char* from_environment = std::getenv("LETHE_COORDINATOR");
    address = from_environment != nullptr ? from_environment : "127.0.0.1:7070";
  }
  return address;
}

std::string FlagOrEnvironment(const std::string& flag, const char* variable) {
  if (!flag.empty()) return flag;
  const char* from_environment = std::getenv(variable);
  return from_environment != nullptr ? from_environment : "";
}

// Plaintext, or TLS with --tls_ca_file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
CoordinatorCredentials() {
  return ChannelCredentials(
      {.ca_file = FlagOrEnvironment(absl::GetFlag(FLAGS_tls_ca_file),
                                    "LETHE_TLS_CA_FILE")});
}

absl::Status CheckHealth() {
  using ::grpc::health::v1::Health;
  using ::grpc::health::v1::HealthCheckRequest;
  using ::grpc::health::v1::HealthCheckResponse;
  const std::string address = CoordinatorAddress();
  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::ChannelCredentials> credentials,
                   CoordinatorCredentials());
  auto stub = Health::NewStub(grpc::CreateChannel(address, credentials));
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

// Threads of a command that computes in this process: --threads, else 2.
// (A negative --threads is kept, for the command to refuse.)
int LocalThreads() {
  const int threads = absl::GetFlag(FLAGS_threads);
  return threads != 0 ? threads : 2;
}

// --batch_size, or `command_default` when it is 0.
int BatchSizeOr(int command_default) {
  const int batch_size = absl::GetFlag(FLAGS_batch_size);
  return batch_size != 0 ? batch_size : command_default;
}

ChatTemplateArgs ChatArgsFromFlags() {
  return {.system_prompt = absl::GetFlag(FLAGS_system_prompt),
          .date_string = absl::GetFlag(FLAGS_date_string)};
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
          .threads = LocalThreads(),
          .bf16_autocast = absl::GetFlag(FLAGS_bf16),
          .loss_chunk_tokens = absl::GetFlag(FLAGS_loss_chunk_tokens)};
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
  options.threads = LocalThreads();
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

std::string AbsolutePath(const std::string& path) {
  if (path.empty()) return path;
  std::error_code error;
  const std::filesystem::path absolute = std::filesystem::absolute(path, error);
  return error ? path : absolute.lexically_normal().string();
}

// The proto enum value whose name matches `name` ignoring case and
// underscores: "NPO_RT", "npo_rt", "GradDiff" -> GRAD_DIFF.
absl::StatusOr<v1::Method> MethodByName(const std::string& name) {
  auto normalize = [](absl::string_view text) {
    std::string out;
    for (char c : text) {
      if (c != '_') out.push_back(static_cast<char>(std::toupper(c)));
    }
    return out;
  };
  const google::protobuf::EnumDescriptor* methods = v1::Method_descriptor();
  for (int i = 0; i < methods->value_count(); ++i) {
    if (methods->value(i)->number() != 0 &&
        normalize(methods->value(i)->name()) == normalize(name)) {
      return static_cast<v1::Method>(methods->value(i)->number());
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--method: unknown method '", name,
      "' (GA, GradDiff, NPO, NPO_RT, NPO_KL, SimNPO, IdkDPO, LLMU, OFMU, "
      "IHL, MSA, REGLU, PGA)"));
}

// A method coefficient flag goes into the spec only when it was given
// (NaN, its default, leaves the field absent: the method's default).
void SetIfGiven(double flag, void (v1::MethodParams::*set)(double),
                v1::MethodParams& params) {
  if (!std::isnan(flag)) (params.*set)(flag);
}

// The one mapping from the run flags to a job spec, shared by `unlearn`
// (one rank, here) and `submit` (a job on the coordinator's workers). Paths
// become absolute: a job's workers may run elsewhere.
absl::StatusOr<v1::JobSpec> JobSpecFromFlags() {
  if (absl::GetFlag(FLAGS_output).empty()) {
    return absl::InvalidArgumentError(
        "--output (the run's output directory) is required");
  }
  v1::JobSpec spec;
  spec.set_model_dir(AbsolutePath(absl::GetFlag(FLAGS_model)));
  if (!absl::GetFlag(FLAGS_base_model).empty()) {
    spec.set_base_model_dir(AbsolutePath(absl::GetFlag(FLAGS_base_model)));
  }
  spec.set_data_dir(AbsolutePath(absl::GetFlag(FLAGS_data)));
  spec.set_forget_split(absl::GetFlag(FLAGS_forget_split));
  spec.set_retain_split(absl::GetFlag(FLAGS_retain_split));
  spec.set_prompt_template(absl::GetFlag(FLAGS_template));
  spec.set_system_prompt(absl::GetFlag(FLAGS_system_prompt));
  spec.set_date_string(absl::GetFlag(FLAGS_date_string));
  ASSIGN_OR_RETURN(const v1::Method method,
                   MethodByName(absl::GetFlag(FLAGS_method)));
  spec.set_method(method);
  v1::MethodParams& params = *spec.mutable_method_params();
  SetIfGiven(absl::GetFlag(FLAGS_beta), &v1::MethodParams::set_beta, params);
  SetIfGiven(absl::GetFlag(FLAGS_alpha), &v1::MethodParams::set_alpha, params);
  SetIfGiven(absl::GetFlag(FLAGS_gamma), &v1::MethodParams::set_gamma, params);
  SetIfGiven(absl::GetFlag(FLAGS_delta), &v1::MethodParams::set_delta, params);
  SetIfGiven(absl::GetFlag(FLAGS_random_answer_weight),
             &v1::MethodParams::set_random_answer_weight, params);
  SetIfGiven(absl::GetFlag(FLAGS_ofmu_inner_learning_rate),
             &v1::MethodParams::set_ofmu_inner_learning_rate, params);
  SetIfGiven(absl::GetFlag(FLAGS_ofmu_rho), &v1::MethodParams::set_ofmu_rho,
             params);
  SetIfGiven(absl::GetFlag(FLAGS_ofmu_rho_growth),
             &v1::MethodParams::set_ofmu_rho_growth, params);
  if (absl::GetFlag(FLAGS_ofmu_inner_steps) != -1) {
    params.set_ofmu_inner_steps(absl::GetFlag(FLAGS_ofmu_inner_steps));
  }
  if (absl::GetFlag(FLAGS_ofmu_first_order)) params.set_ofmu_first_order(true);
  params.set_reglu_forget_loss(absl::GetFlag(FLAGS_reglu_forget_loss));
  SetIfGiven(absl::GetFlag(FLAGS_reglu_beta_r),
             &v1::MethodParams::set_reglu_beta_r, params);
  SetIfGiven(absl::GetFlag(FLAGS_reglu_rol_weight),
             &v1::MethodParams::set_reglu_rol_weight, params);
  if (absl::GetFlag(FLAGS_reglu_retain_rank) != -1) {
    params.set_reglu_retain_rank(absl::GetFlag(FLAGS_reglu_retain_rank));
  }
  if (absl::GetFlag(FLAGS_reglu_samples) != -1) {
    params.set_reglu_samples(absl::GetFlag(FLAGS_reglu_samples));
  }
  if (!absl::GetFlag(FLAGS_holdout_split).empty()) {
    spec.set_holdout_split(absl::GetFlag(FLAGS_holdout_split));
  }
  SetIfGiven(absl::GetFlag(FLAGS_pga_align_weight),
             &v1::MethodParams::set_pga_align_weight, params);
  SetIfGiven(absl::GetFlag(FLAGS_pga_ce_weight),
             &v1::MethodParams::set_pga_ce_weight, params);
  if (absl::GetFlag(FLAGS_pga_refit_every_epochs) != -1) {
    params.set_pga_refit_every_epochs(
        absl::GetFlag(FLAGS_pga_refit_every_epochs));
  }
  for (absl::string_view depth : absl::StrSplit(absl::GetFlag(FLAGS_pga_depths),
                                                ',', absl::SkipEmpty())) {
    int value = 0;
    if (!absl::SimpleAtoi(depth, &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--pga_depths: '", depth, "' is not an integer depth"));
    }
    params.add_pga_depths(value);
  }
  if (absl::GetFlag(FLAGS_pga_projection_rank) != -1) {
    params.set_pga_projection_rank(absl::GetFlag(FLAGS_pga_projection_rank));
  }
  params.set_retain_loss(absl::GetFlag(FLAGS_retain_loss));
  v1::OptimizerSpec& optimizer = *spec.mutable_optimizer();
  optimizer.set_learning_rate(absl::GetFlag(FLAGS_learning_rate));
  optimizer.set_weight_decay(absl::GetFlag(FLAGS_weight_decay));
  optimizer.set_warmup_epochs(absl::GetFlag(FLAGS_warmup_epochs));
  optimizer.set_max_grad_norm(absl::GetFlag(FLAGS_max_grad_norm));
  optimizer.set_seed(absl::GetFlag(FLAGS_seed));
  spec.set_num_epochs(absl::GetFlag(FLAGS_epochs));
  spec.set_per_device_batch_size(BatchSizeOr(4));
  spec.set_gradient_accumulation_steps(absl::GetFlag(FLAGS_grad_accum));
  spec.set_world_size(absl::GetFlag(FLAGS_world_size));
  // Without --threads a job's ranks use their workers' thread counts.
  spec.set_threads_per_worker(absl::GetFlag(FLAGS_threads));
  spec.set_max_length(absl::GetFlag(FLAGS_max_length));
  spec.set_precision(absl::GetFlag(FLAGS_bf16) ? v1::BF16_AUTOCAST : v1::FP32);
  spec.set_bf16_reference(absl::GetFlag(FLAGS_bf16_reference));
  spec.set_weights_dtype(absl::GetFlag(FLAGS_weights_dtype));
  spec.mutable_memory()->set_loss_chunk_tokens(
      absl::GetFlag(FLAGS_loss_chunk_tokens));
  spec.mutable_memory()->set_activation_checkpointing(
      absl::GetFlag(FLAGS_activation_checkpointing));
  spec.mutable_memory()->set_zero_stage(absl::GetFlag(FLAGS_zero_stage));
  if (absl::GetFlag(FLAGS_pack_row_length) >= 0) {
    spec.mutable_memory()->set_pack_row_length(
        absl::GetFlag(FLAGS_pack_row_length));
  }
  // Set as given: LoRA fields without --lora_rank are refused by validation.
  v1::LoraSpec& lora = *spec.mutable_lora();
  lora.set_rank(absl::GetFlag(FLAGS_lora_rank));
  lora.set_alpha(absl::GetFlag(FLAGS_lora_alpha));
  lora.set_dropout(absl::GetFlag(FLAGS_lora_dropout));
  for (const std::string& module : absl::GetFlag(FLAGS_lora_target_modules)) {
    lora.add_target_modules(module);
  }
  if (absl::GetFlag(FLAGS_evaluate) ||
      !absl::GetFlag(FLAGS_retain_logs).empty()) {
    spec.mutable_evaluation()->set_every_epochs(
        absl::GetFlag(FLAGS_eval_every_epochs));
    spec.mutable_evaluation()->set_retain_logs_path(
        AbsolutePath(absl::GetFlag(FLAGS_retain_logs)));
  }
  spec.mutable_checkpoint()->set_every_steps(
      absl::GetFlag(FLAGS_checkpoint_every));
  spec.set_output_dir(AbsolutePath(absl::GetFlag(FLAGS_output)));
  spec.mutable_run_policy()->set_max_restarts(
      absl::GetFlag(FLAGS_max_restarts));
  spec.set_priority(absl::GetFlag(FLAGS_priority));
  return spec;
}

// The job spec of `lethe submit`: the spec file (JSON or YAML) when given,
// else the flags.
absl::StatusOr<v1::JobSpec> SpecForSubmit(
    const std::vector<std::string>& arguments) {
  if (arguments.size() == 1) return ReadJobSpecFile(arguments[0]);
  return JobSpecFromFlags();
}

// `lethe unlearn`: the flags' spec, run here as one rank.
absl::Status Unlearn() {
  ASSIGN_OR_RETURN(v1::JobSpec spec, JobSpecFromFlags());
  if (spec.world_size() > 1) {
    return absl::InvalidArgumentError(
        "--world_size: lethe unlearn runs one rank; submit the job (lethe "
        "submit) to run it on several workers");
  }
  spec.set_threads_per_worker(LocalThreads());
  // Unlike a job's, a local run's output directory may be new.
  std::error_code error;
  std::filesystem::create_directories(spec.output_dir(), error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat(
        "--output: cannot create ", spec.output_dir(), ": ", error.message()));
  }
  spec = JobSpecWithDefaults(std::move(spec));
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  return RunUnlearn(spec);
}

// "7" -> "jobs/7"; names pass through.
std::string JobName(const std::string& argument) {
  return absl::StartsWith(argument, "jobs/") ? argument
                                             : absl::StrCat("jobs/", argument);
}

// Runs a job command; `arguments` are the positional words after it.
absl::Status JobCommand(const std::string& command,
                        const std::vector<std::string>& arguments) {
  ASSIGN_OR_RETURN(const OutputFormat format,
                   ParseOutputFormat(absl::GetFlag(FLAGS_format)));
  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::ChannelCredentials> credentials,
                   CoordinatorCredentials());
  JobClient client(
      CoordinatorAddress(), absl::Seconds(absl::GetFlag(FLAGS_timeout_seconds)),
      credentials,
      FlagOrEnvironment(absl::GetFlag(FLAGS_token), "LETHE_TOKEN"));
  const bool live = isatty(STDOUT_FILENO) && format == OutputFormat::kTable;
  auto watch_to_end = [&](const std::string& name) -> absl::Status {
    ASSIGN_OR_RETURN(v1::Job job, client.Watch(name, format, std::cout, live));
    if (job.state() != v1::Job::SUCCEEDED) {
      return absl::AbortedError(absl::StrCat(
          name, " ended ", v1::Job::State_Name(job.state()),
          job.error().empty() ? "" : absl::StrCat(": ", job.error())));
    }
    return absl::OkStatus();
  };
  if (command == "submit") {
    if (arguments.size() > 1) {
      return absl::InvalidArgumentError(
          "usage: lethe submit [SPEC.json|SPEC.yaml|SPEC.yml]");
    }
    ASSIGN_OR_RETURN(v1::JobSpec spec, SpecForSubmit(arguments));
    ASSIGN_OR_RETURN(v1::Job job,
                     client.Submit(spec, absl::GetFlag(FLAGS_request_id)));
    if (format == OutputFormat::kJson) {
      PrintJob(job, format, std::cout);
    } else {
      std::cout << "submitted " << job.name() << std::endl;
    }
    return absl::GetFlag(FLAGS_watch) ? watch_to_end(job.name())
                                      : absl::OkStatus();
  }
  if (command == "list") {
    v1::Job::State state = v1::Job::STATE_UNSPECIFIED;
    const std::string state_name = absl::GetFlag(FLAGS_state);
    if (!state_name.empty() && !v1::Job::State_Parse(state_name, &state)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--state: unknown state '", state_name, "'"));
    }
    return client.List(state, 0, format, std::cout);
  }
  if (arguments.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("usage: lethe ", command, " JOB"));
  }
  const std::string name = JobName(arguments[0]);
  if (command == "get") {
    ASSIGN_OR_RETURN(v1::Job job, client.Get(name));
    PrintJob(job, format, std::cout);
    return absl::OkStatus();
  }
  if (command == "cancel") {
    ASSIGN_OR_RETURN(v1::Job job, client.Cancel(name));
    if (format == OutputFormat::kJson) {
      PrintJob(job, format, std::cout);
    } else {
      std::cout << name << ": " << v1::Job::State_Name(job.state())
                << std::endl;
    }
    return absl::OkStatus();
  }
  if (command == "delete") {
    RETURN_IF_ERROR(client.Delete(name));
    if (format == OutputFormat::kTable) std::cout << "deleted " << name << "\n";
    return absl::OkStatus();
  }
  if (command == "watch") return watch_to_end(name);
  return client.Logs(name, absl::GetFlag(FLAGS_follow), format, std::cout);
}

bool IsJobCommand(const std::string& command) {
  for (const char* name :
       {"submit", "get", "list", "cancel", "delete", "watch", "logs"}) {
    if (command == name) return true;
  }
  return false;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  InitLogging(argv[0], "lethe");
  if (positional.size() < 2) {
    std::cerr << kUsage << std::endl;
    return 2;
  }
  const std::string command = positional[1];
  if (positional.size() > 2 && !IsJobCommand(command)) {
    std::cerr << "lethe " << command << ": unexpected argument '"
              << positional[2] << "'\n"
              << kUsage << std::endl;
    return 2;
  }
  absl::Status status;
  if (IsJobCommand(command)) {
    status = JobCommand(command, std::vector<std::string>(
                                     positional.begin() + 2, positional.end()));
  } else if (command == "version") {
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
                          .chat_args = ChatArgsFromFlags(),
                          .output_dir = absl::GetFlag(FLAGS_output),
                          .max_length = absl::GetFlag(FLAGS_max_length),
                          .training = TrainingFromFlags()});
  } else if (command == "generate") {
    status =
        RunGenerate({.model_dir = absl::GetFlag(FLAGS_model),
                     .question = absl::GetFlag(FLAGS_prompt),
                     .prompt_template = absl::GetFlag(FLAGS_template),
                     .chat_args = ChatArgsFromFlags(),
                     .weights_dtype = absl::GetFlag(FLAGS_weights_dtype),
                     .max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens),
                     .threads = LocalThreads(),
                     .pga_projection = absl::GetFlag(FLAGS_pga_projection)});
  } else if (command == "tokenize") {
    status = RunTokenize({.model_dir = absl::GetFlag(FLAGS_model),
                          .text = absl::GetFlag(FLAGS_text),
                          .add_bos = absl::GetFlag(FLAGS_add_bos)},
                         std::cout);
  } else if (command == "prompt") {
    status = RunPrompt({.model_dir = absl::GetFlag(FLAGS_model),
                        .prompt_template = absl::GetFlag(FLAGS_template),
                        .chat_args = ChatArgsFromFlags(),
                        .question = absl::GetFlag(FLAGS_question),
                        .answer = absl::GetFlag(FLAGS_answer)},
                       std::cout);
  } else if (command == "plan") {
    // The plan writes nothing; JobSpecFromFlags insists on --output.
    if (absl::GetFlag(FLAGS_output).empty()) absl::SetFlag(&FLAGS_output, ".");
    absl::StatusOr<v1::JobSpec> spec = JobSpecFromFlags();
    absl::StatusOr<std::string> text =
        spec.ok() ? PlanCommand(*spec)
                  : absl::StatusOr<std::string>(spec.status());
    if (text.ok()) std::cout << *text;
    status = text.status();
  } else if (command == "unlearn") {
    status = Unlearn();
  } else if (command == "eval") {
    status =
        RunEval({.model_dir = absl::GetFlag(FLAGS_model),
                 .data_dir = absl::GetFlag(FLAGS_data),
                 .forget_split = absl::GetFlag(FLAGS_forget_split),
                 .prompt_template = absl::GetFlag(FLAGS_template),
                 .chat_args = ChatArgsFromFlags(),
                 .weights_dtype = absl::GetFlag(FLAGS_weights_dtype),
                 .retain_logs = absl::GetFlag(FLAGS_retain_logs),
                 .reference_model_dir = absl::GetFlag(FLAGS_reference_model),
                 .output_dir = absl::GetFlag(FLAGS_output),
                 .batch_size = BatchSizeOr(32),
                 .max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens),
                 .threads = LocalThreads(),
                 .memorization_probe = absl::GetFlag(FLAGS_memorization_probe),
                 .only_memorization_probe =
                     absl::GetFlag(FLAGS_only_memorization_probe),
                 .pga_projection = absl::GetFlag(FLAGS_pga_projection)},
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
