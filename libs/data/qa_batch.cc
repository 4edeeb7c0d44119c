#include "libs/data/qa_batch.h"

#include <algorithm>

namespace lethe {

QaBatch CollateQaBatch(const std::vector<const QaExample*>& examples,
                       int pad_id) {
  size_t length = 0;
  for (const QaExample* example : examples) {
    length = std::max(length, example->input_ids.size());
  }
  const int64_t batch = static_cast<int64_t>(examples.size());
  const int64_t width = static_cast<int64_t>(length);
  QaBatch result;
  result.input_ids = torch::full({batch, width}, pad_id, at::kLong);
  result.attention_mask = torch::zeros({batch, width}, at::kLong);
  result.labels = torch::full({batch, width}, kIgnoreIndex, at::kLong);
  auto ids = result.input_ids.accessor<int64_t, 2>();
  auto mask = result.attention_mask.accessor<int64_t, 2>();
  auto labels = result.labels.accessor<int64_t, 2>();
  for (int64_t row = 0; row < batch; ++row) {
    const QaExample& example = *examples[row];
    for (size_t t = 0; t < example.input_ids.size(); ++t) {
      ids[row][t] = example.input_ids[t];
      mask[row][t] = 1;
      labels[row][t] = example.labels[t];
    }
  }
  return result;
}

QaBatch QaBatch::To(const at::Device& device) const {
  return {.input_ids = input_ids.to(device),
          .attention_mask = attention_mask.to(device),
          .labels = labels.to(device)};
}

}  // namespace lethe
