#include "libs/data/packed_batch.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "libs/data/qa_example.h"

namespace lethe {
namespace {

// One sequence of one part, read from its padded batch.
struct Sequence {
  const int64_t* ids;
  const int64_t* labels;
  int64_t length;
  int64_t row = 0;     // Where it is packed.
  int64_t offset = 0;  // First position in the row.
};

at::Tensor ToTensor(const std::vector<int64_t>& values) {
  return torch::tensor(at::ArrayRef<int64_t>(values), at::kLong);
}

}  // namespace

absl::StatusOr<PackedBatch> PackQaBatches(
    const std::vector<const QaBatch*>& parts, int64_t row_length, int pad_id) {
  if (row_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("row_length must be >= 1, got ", row_length));
  }
  // Contiguous CPU copies, kept alive while `sequences` points into them.
  std::vector<at::Tensor> ids_cpu, labels_cpu;
  std::vector<Sequence> sequences;
  PackedBatch packed;
  packed.sequence_begin.push_back(0);
  for (const QaBatch* part : parts) {
    if (part->input_ids.dim() != 2 ||
        part->attention_mask.sizes() != part->input_ids.sizes() ||
        part->labels.sizes() != part->input_ids.sizes()) {
      return absl::InvalidArgumentError(
          "a part's input_ids, attention_mask and labels must be [B, T]");
    }
    ids_cpu.push_back(part->input_ids.to(at::kCPU, at::kLong).contiguous());
    labels_cpu.push_back(part->labels.to(at::kCPU, at::kLong).contiguous());
    const at::Tensor mask =
        part->attention_mask.to(at::kCPU, at::kLong).contiguous();
    const int64_t batch = mask.size(0), width = mask.size(1);
    const int64_t* mask_data = mask.data_ptr<int64_t>();
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t* row = mask_data + b * width;
      const int64_t length = std::count(row, row + width, int64_t{1});
      if (std::count(row, row + length, int64_t{1}) != length) {
        return absl::InvalidArgumentError(
            "packing needs right-padded batches (attention_mask a prefix of "
            "ones)");
      }
      sequences.push_back(
          {.ids = ids_cpu.back().data_ptr<int64_t>() + b * width,
           .labels = labels_cpu.back().data_ptr<int64_t>() + b * width,
           .length = length});
    }
    packed.sequence_begin.push_back(static_cast<int64_t>(sequences.size()));
  }

  // The fewest balanced rows of at most `capacity` positions.
  int64_t total = 0, longest = 0;
  for (const Sequence& s : sequences) {
    total += s.length;
    longest = std::max(longest, s.length);
  }
  const int64_t capacity = std::max(row_length, longest);
  std::vector<size_t> order(sequences.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return sequences[a].length > sequences[b].length;
  });
  std::vector<int64_t> fill;
  for (int64_t rows = std::max<int64_t>(1, (total + capacity - 1) / capacity);;
       ++rows) {
    fill.assign(rows, 0);
    bool fits = true;
    for (size_t index : order) {
      Sequence& s = sequences[index];
      const int64_t row =
          std::min_element(fill.begin(), fill.end()) - fill.begin();
      if (fill[row] + s.length > capacity) {
        fits = false;
        break;
      }
      s.row = row;
      s.offset = fill[row];
      fill[row] += s.length;
    }
    if (fits) break;
  }
  const int64_t num_rows = static_cast<int64_t>(fill.size());
  const int64_t width =
      std::max<int64_t>(1, *std::max_element(fill.begin(), fill.end()));

  std::vector<int64_t> input_ids(num_rows * width, pad_id);
  std::vector<int64_t> position_ids(num_rows * width, 0);
  std::vector<int64_t> segment_ids(num_rows * width, 0);
  std::vector<int64_t> segments_in_row(num_rows, 0);
  std::vector<int64_t> answer_rows, answer_targets, answer_sequence;
  std::vector<int64_t> token_counts;
  packed.answer_begin.push_back(0);
  for (size_t p = 0; p < parts.size(); ++p) {
    for (int64_t i = packed.sequence_begin[p]; i < packed.sequence_begin[p + 1];
         ++i) {
      const Sequence& s = sequences[i];
      const int64_t base = s.row * width + s.offset;
      const int64_t segment = ++segments_in_row[s.row];
      int64_t count = 0;
      for (int64_t t = 0; t < s.length; ++t) {
        input_ids[base + t] = s.ids[t];
        position_ids[base + t] = t;
        segment_ids[base + t] = segment;
        if (t >= 1 && s.labels[t] != kIgnoreIndex) {
          answer_rows.push_back(base + t - 1);
          answer_targets.push_back(s.labels[t]);
          answer_sequence.push_back(i - packed.sequence_begin[p]);
          ++count;
        }
      }
      token_counts.push_back(count);
      packed.real_tokens += s.length;
    }
    packed.answer_begin.push_back(static_cast<int64_t>(answer_rows.size()));
  }
  packed.input_ids = ToTensor(input_ids).view({num_rows, width});
  packed.position_ids = ToTensor(position_ids).view({num_rows, width});
  packed.segment_ids = ToTensor(segment_ids).view({num_rows, width});
  packed.answer_rows = ToTensor(answer_rows);
  packed.answer_targets = ToTensor(answer_targets);
  packed.answer_sequence = ToTensor(answer_sequence);
  packed.token_counts = ToTensor(token_counts);
  return packed;
}

PackedBatch PackedBatch::To(const at::Device& device) const {
  PackedBatch moved = *this;
  for (at::Tensor* tensor :
       {&moved.input_ids, &moved.position_ids, &moved.segment_ids,
        &moved.answer_rows, &moved.answer_targets, &moved.answer_sequence,
        &moved.token_counts}) {
    *tensor = tensor->to(device);
  }
  return moved;
}

}  // namespace lethe
