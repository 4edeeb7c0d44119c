// Right-padded LibTorch batches of tokenized question-answer examples.
//
//   QaBatch batch = CollateQaBatch({&examples[3], &examples[8]}, pad_id);
//   at::Tensor logits = model.Forward(batch.input_ids, batch.attention_mask);
//
// input_ids are padded with `pad_id`, attention_mask is 1 on real tokens,
// labels are kIgnoreIndex on prompt tokens and padding. Batches are built on
// the CPU; To() moves one to the model's device.
#ifndef LETHE_LIBS_DATA_QA_BATCH_H_
#define LETHE_LIBS_DATA_QA_BATCH_H_

#include <torch/types.h>

#include <vector>

#include "libs/data/qa_example.h"

namespace lethe {

struct QaBatch {
  at::Tensor input_ids;       // [B, T] int64
  at::Tensor attention_mask;  // [B, T] int64
  at::Tensor labels;          // [B, T] int64
  int64_t real_tokens() const { return attention_mask.sum().item<int64_t>(); }
  // The same batch on `device` (itself when already there).
  QaBatch To(const at::Device& device) const;
};

QaBatch CollateQaBatch(const std::vector<const QaExample*>& examples,
                       int pad_id);

}  // namespace lethe

#endif  // LETHE_LIBS_DATA_QA_BATCH_H_
