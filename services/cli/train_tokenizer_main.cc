// lethe-train-tokenizer: trains a SentencePiece BPE tokenizer for Lethe's own
// models. A program of its own because the SentencePiece trainer cannot share
// a process with LibTorch (see DEVELOPERS.md); `lethe prepare-benchmark`
// runs it.
//
//   lethe-train-tokenizer --corpus=sentences.txt --vocab_size=1024
//       --output=model_dir/tokenizer.model
//
// The corpus holds one sentence per line. The model is written atomically.
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "libs/files/file_io.h"
#include "libs/tokenizer/tokenizer_training.h"

ABSL_FLAG(std::string, corpus, "", "text file, one sentence per line");
ABSL_FLAG(int, vocab_size, 1024, "pieces in the trained vocabulary");
ABSL_FLAG(int, threads, 2, "trainer threads");
ABSL_FLAG(std::string, output, "", "where to write tokenizer.model");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Trains a SentencePiece BPE tokenizer.\nUsage: lethe-train-tokenizer "
      "--corpus=FILE --output=PATH [--vocab_size=N] [--threads=N]");
  absl::ParseCommandLine(argc, argv);
  const std::string corpus_path = absl::GetFlag(FLAGS_corpus);
  const std::string output = absl::GetFlag(FLAGS_output);
  if (corpus_path.empty() || output.empty()) {
    std::cerr << "lethe-train-tokenizer: --corpus and --output are required\n";
    return 2;
  }
  std::ifstream in(corpus_path);
  if (!in) {
    std::cerr << "lethe-train-tokenizer: cannot read " << corpus_path << "\n";
    return 1;
  }
  std::vector<std::string> sentences;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) sentences.push_back(line);
  }
  absl::StatusOr<std::string> model = lethe::TrainTokenizer(
      sentences, {.vocab_size = absl::GetFlag(FLAGS_vocab_size),
                  .num_threads = absl::GetFlag(FLAGS_threads)});
  if (!model.ok()) {
    std::cerr << "lethe-train-tokenizer: " << model.status() << "\n";
    return 1;
  }
  const absl::Status written = lethe::WriteFileAtomically(output, *model);
  if (!written.ok()) {
    std::cerr << "lethe-train-tokenizer: " << written << "\n";
    return 1;
  }
  return 0;
}
