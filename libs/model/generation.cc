#include "libs/model/generation.h"

#include <torch/types.h>

#include <algorithm>
#include <numeric>
#include <utility>

#include "absl/status/status.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {

std::vector<int64_t> GreedyGenerate(LlamaForCausalLM& model,
                                    const std::vector<int64_t>& prompt,
                                    int64_t max_new_tokens,
                                    const std::vector<int64_t>& stop_ids) {
  TORCH_CHECK(!prompt.empty(), "GreedyGenerate needs a non-empty prompt");
  torch::NoGradGuard no_grad;
  const at::Device device = model.parameters().front().device();
  KvCache cache;
  at::Tensor input =
      torch::tensor(prompt, torch::TensorOptions().dtype(at::kLong))
          .to(device)
          .unsqueeze(0);
  std::vector<int64_t> generated;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    const at::Tensor hidden = model.ForwardHidden(input, {}, &cache);
    const at::Tensor logits =
        model.Logits(hidden.select(1, hidden.size(1) - 1));
    const int64_t next = logits.argmax(-1).item<int64_t>();
    generated.push_back(next);
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) {
      break;
    }
    input = torch::full({1, 1}, next,
                        torch::TensorOptions().dtype(at::kLong).device(device));
  }
  return generated;
}

std::vector<size_t> LongestFirst(const std::vector<size_t>& sizes) {
  std::vector<size_t> order(sizes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });
  return order;
}

absl::StatusOr<std::vector<std::vector<int64_t>>> GreedyGenerateBatch(
    LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
    int64_t max_new_tokens, const std::vector<int64_t>& stop_ids,
    int64_t pad_id, int batch_size) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError("the batch size must be at least 1");
  }
  std::vector<size_t> lengths;
  for (const std::vector<int64_t>& prompt : prompts) {
    if (prompt.empty()) {
      return absl::InvalidArgumentError("cannot generate from an empty prompt");
    }
    lengths.push_back(prompt.size());
  }
  std::vector<std::vector<int64_t>> generated(prompts.size());
  if (max_new_tokens <= 0) return generated;
  const std::vector<size_t> order = LongestFirst(lengths);
  RETURN_IF_ERROR(CallTorch("batched generation", [&] {
    torch::NoGradGuard no_grad;
    const at::Device device = model.device();
    const auto longs = torch::TensorOptions().dtype(at::kLong);
    for (size_t begin = 0; begin < order.size(); begin += batch_size) {
      // `active[r]`: the prompt that row r of the batch tensors decodes.
      std::vector<size_t> active(
          order.begin() + begin,
          order.begin() + std::min(order.size(), begin + batch_size));
      const int64_t width = static_cast<int64_t>(lengths[active[0]]);
      const int64_t rows = static_cast<int64_t>(active.size());
      at::Tensor input = torch::full({rows, width}, pad_id, longs);
      at::Tensor mask = torch::zeros({rows, width}, longs);
      for (int64_t r = 0; r < rows; ++r) {
        const std::vector<int64_t>& prompt = prompts[active[r]];
        const int64_t offset = width - static_cast<int64_t>(prompt.size());
        input[r]
            .narrow(0, offset, prompt.size())
            .copy_(torch::tensor(prompt, longs));
        mask[r].narrow(0, offset, prompt.size()).fill_(1);
      }
      input = input.to(device);
      mask = mask.to(device);
      KvCache cache;
      at::Tensor hidden =
          model.ForwardHidden(input, mask, &cache, PositionIdsFromMask(mask));
      at::Tensor next = model.Logits(hidden.select(1, width - 1)).argmax(-1);
      for (int64_t step = 1;; ++step) {
        const at::Tensor tokens = next.cpu().contiguous();
        std::vector<int64_t> keep;
        for (int64_t r = 0; r < static_cast<int64_t>(active.size()); ++r) {
          const int64_t token = tokens.data_ptr<int64_t>()[r];
          generated[active[r]].push_back(token);
          const bool stopped = std::find(stop_ids.begin(), stop_ids.end(),
                                         token) != stop_ids.end();
          if (!stopped && step < max_new_tokens) keep.push_back(r);
        }
        if (keep.empty()) break;
        if (keep.size() < active.size()) {
          const at::Tensor index = torch::tensor(keep, longs).to(device);
          for (size_t layer = 0; layer < cache.keys.size(); ++layer) {
            cache.keys[layer] = cache.keys[layer].index_select(0, index);
            cache.values[layer] = cache.values[layer].index_select(0, index);
          }
          mask = mask.index_select(0, index);
          next = next.index_select(0, index);
          std::vector<size_t> still_active;
          for (int64_t r : keep) still_active.push_back(active[r]);
          active = std::move(still_active);
        }
        mask = torch::cat(
            {mask, torch::ones({mask.size(0), 1}, mask.options())}, 1);
        const at::Tensor positions = mask.sum(-1, /*keepdim=*/true) - 1;
        hidden =
            model.ForwardHidden(next.unsqueeze(1), mask, &cache, positions);
        next = model.Logits(hidden.select(1, 0)).argmax(-1);
      }
    }
  }));
  return generated;
}

}  // namespace lethe
