// Time and peak memory of answer-token log-probabilities with and without
// the batch's full logits, at a Llama-3-sized vocabulary: the plain path
// (logits = hidden W^T over every position, then TokenMeanNll) against
// ChunkedTokenMeanNll (libs/loss/chunked_log_probs.h) at a few chunk sizes,
// each a forward and a backward pass with gradients for the hidden states
// and the output weight, as in training.
//
//   bazel run -c opt //benchmarks:chunked_loss -- --threads=2
//
// Peak memory is the process's peak resident set (VmHWM, reset through
// /proc/self/clear_refs before each measurement) above its resident set at
// that moment: what the pass itself allocated at its peak, including the
// [V, H] weight gradient every path produces (large blocks are mmap'ed so
// that freed memory leaves the resident set). The largest differences from
// the plain path's loss and gradients are printed as a check.
#include <malloc.h>
#include <torch/types.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "libs/data/qa_example.h"
#include "libs/loss/chunked_log_probs.h"
#include "libs/loss/sequence_loss.h"
#include "libs/sysinfo/process_memory.h"

ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(int64_t, vocab, 128256, "vocabulary size (Llama 3: 128256)");
ABSL_FLAG(int64_t, hidden, 1024, "hidden size (Llama 3.2 1B: 2048)");
ABSL_FLAG(int64_t, batch, 4, "sequences");
ABSL_FLAG(int64_t, length, 256, "tokens per sequence");
ABSL_FLAG(double, answer_fraction, 0.5,
          "share of each sequence's positions that are answer tokens");
ABSL_FLAG(std::string, chunks, "128,512", "chunk sizes in answer tokens");
ABSL_FLAG(int, repeats, 2, "timed repetitions per configuration (after one)");
ABSL_FLAG(bool, train_weight, true,
          "the output weight takes gradients (false: frozen, as under LoRA)");

namespace lethe {
namespace {

struct Outcome {
  double seconds = 0;  // Per forward + backward pass.
  double peak_mb = 0;  // Above the resident set before the pass.
  at::Tensor loss, hidden_grad, weight_grad;
};

Outcome Measure(const at::Tensor& hidden_data, const at::Tensor& weight_data,
                const at::Tensor& labels, int64_t chunk, int repeats) {
  Outcome outcome;
  auto pass = [&]() {
    const at::Tensor hidden = hidden_data.clone().requires_grad_();
    const at::Tensor weight =
        weight_data.detach().requires_grad_(absl::GetFlag(FLAGS_train_weight));
    const at::Tensor loss =
        chunk > 0
            ? ChunkedTokenMeanNll(hidden, {.weight = weight}, labels, chunk)
            : TokenMeanNll(at::matmul(hidden, weight.t()), labels);
    loss.backward();
    outcome.loss = loss.detach();
    outcome.hidden_grad = hidden.grad();
    outcome.weight_grad = weight.grad();
    weight.mutable_grad() = at::Tensor();
  };
  // Memory: one pass from a clean slate (its results are released first).
  malloc_trim(0);
  const int64_t before = ProcessMemoryBytes("VmRSS").value_or(-1);
  ResetPeakResidentMemory().IgnoreError();  // Checked once in main.
  pass();
  outcome.peak_mb =
      static_cast<double>(ProcessMemoryBytes("VmHWM").value_or(-1) - before) /
      (1 << 20);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) pass();
  outcome.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count() /
      repeats;
  return outcome;
}

double MaxDifference(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

void Run() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // Every allocation of 64 KiB or more gets its own mapping, returned to the
  // system when freed, so the resident set follows the live tensors (glibc
  // would otherwise keep freed blocks and hide the next pass's peak).
  mallopt(M_MMAP_THRESHOLD, 64 << 10);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const int64_t vocab = absl::GetFlag(FLAGS_vocab);
  const int64_t width = absl::GetFlag(FLAGS_hidden);
  const int64_t batch = absl::GetFlag(FLAGS_batch);
  const int64_t length = absl::GetFlag(FLAGS_length);
  const int repeats = absl::GetFlag(FLAGS_repeats);
  torch::manual_seed(0);
  const at::Tensor hidden = torch::randn({batch, length, width});
  const at::Tensor weight = torch::randn({vocab, width}) * 0.02;
  // Each sequence: a prompt, then `answer_fraction` of its positions as
  // answer tokens.
  const int64_t answers = static_cast<int64_t>(
      absl::GetFlag(FLAGS_answer_fraction) * static_cast<double>(length));
  at::Tensor labels = torch::randint(vocab, {batch, length}, at::kLong);
  labels.narrow(1, 0, length - answers).fill_(kIgnoreIndex);
  const int64_t answer_tokens =
      (labels.narrow(1, 1, length - 1) != kIgnoreIndex).sum().item<int64_t>();
  std::printf(
      "V=%lld H=%lld, %lld x %lld tokens, %lld answer tokens, %d threads; "
      "full fp32 logits %.0f MiB; output weight %s\n",
      static_cast<long long>(vocab), static_cast<long long>(width),
      static_cast<long long>(batch), static_cast<long long>(length),
      static_cast<long long>(answer_tokens), absl::GetFlag(FLAGS_threads),
      4.0 * batch * length * vocab / (1 << 20),
      absl::GetFlag(FLAGS_train_weight) ? "trained" : "frozen");
  if (!ResetPeakResidentMemory().ok())
    std::printf("(cannot reset VmHWM: peaks are cumulative)\n");

  std::vector<int64_t> chunks = {0};
  for (absl::string_view piece :
       absl::StrSplit(absl::GetFlag(FLAGS_chunks), ',', absl::SkipEmpty())) {
    int64_t chunk = 0;
    if (absl::SimpleAtoi(piece, &chunk) && chunk > 0) chunks.push_back(chunk);
  }
  Outcome plain;
  for (int64_t chunk : chunks) {
    Outcome outcome = Measure(hidden, weight, labels, chunk, repeats);
    if (chunk == 0) {
      std::printf("  %-14s %8.2f s/pass  peak %8.0f MiB\n", "plain",
                  outcome.seconds, outcome.peak_mb);
      plain = outcome;
      continue;
    }
    std::printf(
        "  chunk %-8lld %8.2f s/pass  peak %8.0f MiB  |d loss| %.1e  "
        "|d grad h| %.1e  |d grad W| %.1e\n",
        static_cast<long long>(chunk), outcome.seconds, outcome.peak_mb,
        MaxDifference(outcome.loss, plain.loss),
        MaxDifference(outcome.hidden_grad, plain.hidden_grad),
        outcome.weight_grad.defined()
            ? MaxDifference(outcome.weight_grad, plain.weight_grad)
            : 0.0);
  }
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  lethe::Run();
  return 0;
}
