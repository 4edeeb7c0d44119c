// A run's identity: everything that determines the weights a run ends
// with, as named fields. Checkpoints record it and a run resumes only from
// a checkpoint with the same identity (libs/unlearn/checkpoint.h: a
// mismatch is FAILED_PRECONDITION naming the field), so a job never takes
// over another run's checkpoints and returns a model that was not unlearned
// as its spec asks.
//
//   ASSIGN_OR_RETURN(RunIdentity identity, ComputeRunIdentity(spec));
//   training.checkpoint.run_identity = identity.fields;
//
// Fields: the SHA-256 of the model (config.json and every *.safetensors
// file and index in model_dir, by name), of the tokenizer file and the
// tokenizer_config.json beside it, and of the forget and retain split
// files; the splits, prompt template, system prompt, date string,
// max_length, precision, weights dtype and bf16_reference; the method and every
// coefficient as the objective uses it (defaults filled in); the optimizer and
// schedule (learning rate, weight decay, warm-up, clipping, epochs, max_steps);
// and the checkpoint format version. Seeds, batch sizes, accumulation and world
// size are recorded by the trainer itself. Numbers are printed exactly
// (%.17g), so 1e-3 and 0.001 are the same field.
//
// Hashing reads every model file once (about 1 GB/s here with SHA-NI); the
// result is also the reference model's identity for the reference log-prob
// cache (`reference`).
#ifndef LETHE_LIBS_RUN_RUN_IDENTITY_H_
#define LETHE_LIBS_RUN_RUN_IDENTITY_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "lethe/v1/job.pb.h"

namespace lethe {

struct RunIdentity {
  std::map<std::string, std::string> fields;
  // The frozen reference's identity: the model's hash, the tokenizer's,
  // the template and its arguments, max_length, precision and weights dtype
  // (what reference log-probs of the
  // same examples depend on).
  std::string reference;
};

// `spec` completed by JobSpecWithDefaults. NOT_FOUND naming a file that
// cannot be read; INVALID_ARGUMENT for an unknown method.
absl::StatusOr<RunIdentity> ComputeRunIdentity(const v1::JobSpec& spec);

// Lower-case hex SHA-256 of the file's bytes; NOT_FOUND naming the file.
absl::StatusOr<std::string> FileSha256(const std::string& path);

}  // namespace lethe

#endif  // LETHE_LIBS_RUN_RUN_IDENTITY_H_
