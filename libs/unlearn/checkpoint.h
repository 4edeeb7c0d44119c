// Training checkpoints: a model's parameters, its AdamW optimizer state and
// the step reached, written atomically so that a job restarted after a crash
// continues from its last checkpoint and ends with exactly the weights of an
// uninterrupted run.
//
//   ASSIGN_OR_RETURN(std::string dir,
//                    WriteCheckpoint(root, {.step = 40, .epoch = 3}, model,
//                                    optimizer, /*keep_last=*/2));
//   ...
//   absl::StatusOr<LoadedCheckpoint> loaded =
//       LoadLatestCheckpoint(root, model, optimizer);
//   if (absl::IsNotFound(loaded.status())) { /* start from scratch */ }
//
// Layout: <root>/checkpoint-<step, 8 digits>/ holding
//   model.safetensors   every named parameter of the model that trains
//                       (requires_grad; a LoRA run's adapters, not its
//                       frozen base), bit-exact
//   optimizer.pt        the optimizer's state (LibTorch's archive format)
//   trainer_state.json  {"format_version", "step", "epoch", "run": {...},
//                        "files": {name: {"bytes", "crc32"}}}
//   optimizer_shard_<rank>_of_<world>
//                       with a sharded optimizer (ZeRO, TrainingOptions::
//                       zero_stage): each rank's optimizer state, staged by
//                       that rank and moved in by the writer (staged_files)
// A checkpoint is written into <root>/.tmp-checkpoint-<step>-<pid>/, its
// files flushed to disk, then renamed into place; older checkpoints beyond
// the newest `keep_last` are deleted afterwards. One writer per root (in a
// data-parallel run, rank 0): the writer removes other processes' leftover
// .tmp directories.
//
// LoadLatestCheckpoint takes the newest checkpoint whose files all exist and
// match their recorded sizes and CRC32s; damaged ones are skipped and named
// in LoadedCheckpoint::warnings. Tensors that do not match the model's names,
// shapes or dtypes, or a `run` description that differs from the expected
// one, are FAILED_PRECONDITION (a configuration error, not damage: older
// checkpoints are not tried), checked before the model or optimizer change.
// Every error names the file.
#ifndef LETHE_LIBS_UNLEARN_CHECKPOINT_H_
#define LETHE_LIBS_UNLEARN_CHECKPOINT_H_

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lethe {

inline constexpr int kCheckpointFormatVersion = 1;

struct CheckpointState {
  int64_t step = 0;  // Optimizer steps completed.
  int64_t epoch = 0;
  // What the run must share with a run resuming from here (seed, batch
  // sizes, ...); compared by LoadLatestCheckpoint's `expected_run`.
  std::map<std::string, std::string> run;
};

// What a checkpoint's trainer_state.json records: the state, and the size
// and CRC32 of each of its files (file names as written in the JSON).
struct CheckpointFileRecord {
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};
struct CheckpointStateFile {
  CheckpointState state;
  std::map<std::string, CheckpointFileRecord> files;
};

// Parses the text of a trainer_state.json; `source` (its path) names it in
// errors. DATA_LOSS when it is malformed: not a JSON object, another
// format_version, step, epoch, sizes or CRC32s that are not integers in
// range (a negative step, a CRC32 above 2^32 - 1), run values that are not
// strings, files that are not objects, a file name that is empty, "." or
// ".." or holds '/', or no model.safetensors or optimizer.pt. The files
// themselves are not read (VerifyCheckpoint checks them).
absl::StatusOr<CheckpointStateFile> ParseCheckpointState(
    const std::string& text, const std::string& source);

// "<root>/checkpoint-00000042" for step 42.
std::string CheckpointDirectory(const std::string& root, int64_t step);

// Steps of the checkpoint directories under `root` (complete or not;
// temporary directories excluded), ascending. Empty when `root` is absent.
std::vector<int64_t> ListCheckpointSteps(const std::string& root);

// Checks that the files of the checkpoint in `dir` exist and match the sizes
// and CRC32s in its trainer_state.json, and returns its state; DATA_LOSS or
// NOT_FOUND naming the file otherwise.
absl::StatusOr<CheckpointState> VerifyCheckpoint(const std::string& dir);

// Writes the checkpoint for `state.step` (replacing one of the same step)
// and returns its directory; then deletes all but the newest `keep_last`
// checkpoints (keep_last <= 0 keeps all). When `may_commit` is set it is
// asked once the files are written and before they become the checkpoint;
// its error discards them and is returned (a superseded attempt's fence).
// `staged_files` (checkpoint file name -> path of a file already written and
// flushed, on the same file system as `root`) are moved into the checkpoint
// before it is committed and recorded with their sizes and CRC32s, so they
// become part of it atomically; a failure leaves them removed.
absl::StatusOr<std::string> WriteCheckpoint(
    const std::string& root, const CheckpointState& state,
    const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
    int keep_last = 2,
    const std::function<absl::Status()>& may_commit = nullptr,
    const std::map<std::string, std::string>& staged_files = {});

// "optimizer_shard_<rank>_of_<world_size>": a rank's optimizer shard in a
// checkpoint of a sharded (ZeRO) run.
std::string OptimizerShardFileName(int rank, int world_size);

struct LoadedCheckpoint {
  std::string dir;
  CheckpointState state;
  // One line per newer checkpoint skipped because it was damaged.
  std::vector<std::string> warnings;
};

// Restores `model` and `optimizer` from the newest intact checkpoint under
// `root`. NOT_FOUND when there is none (its message lists damaged ones).
// Every key of `expected_run` must have the same value in the checkpoint's
// `run`, else FAILED_PRECONDITION naming the key.
absl::StatusOr<LoadedCheckpoint> LoadLatestCheckpoint(
    const std::string& root, torch::nn::Module& model,
    torch::optim::Optimizer& optimizer,
    const std::map<std::string, std::string>& expected_run = {});

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_CHECKPOINT_H_
