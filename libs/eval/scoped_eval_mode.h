// Puts a model in eval mode for the guard's lifetime, then restores the mode
// it had (training or not). Shared by the evaluators.
//
//   { ScopedEvalMode eval_mode(model); ... no dropout here ... }
#ifndef LETHE_LIBS_EVAL_SCOPED_EVAL_MODE_H_
#define LETHE_LIBS_EVAL_SCOPED_EVAL_MODE_H_

#include "libs/model/llama_model.h"

namespace lethe {

class ScopedEvalMode {
 public:
  explicit ScopedEvalMode(LlamaForCausalLM& model)
      : model_(model), training_(model.is_training()) {
    model_.eval();
  }
  ~ScopedEvalMode() { model_.train(training_); }
  ScopedEvalMode(const ScopedEvalMode&) = delete;
  ScopedEvalMode& operator=(const ScopedEvalMode&) = delete;

 private:
  LlamaForCausalLM& model_;
  bool training_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_SCOPED_EVAL_MODE_H_
