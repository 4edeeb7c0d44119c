#include "libs/model/packed_attention.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>

#ifdef LETHE_HAVE_CBLAS
#include <cblas.h>
#endif

namespace lethe {
namespace {

#ifdef LETHE_HAVE_CBLAS
// Row-major C [m x n] = alpha op(A) op(B) + beta C.
void Gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
          float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
              transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}
void Gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
          double alpha, const double* a, int64_t lda, const double* b,
          int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
              transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}
#else
template <typename T>
void Gemm(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*,
          int64_t, T, T*, int64_t) {
  TORCH_CHECK(false, "PackedCausalAttention: built without a BLAS");
}
#endif

// Shapes of one call: queries [R, W, Hq, d], keys/values [R, W, Hkv, d],
// all contiguous; block (segment s, head h) starts at row s.row, position
// s.start, and its rows are Hq * d (or Hkv * d) elements apart.
struct Layout {
  int64_t width = 0;
  int64_t query_heads = 0;
  int64_t kv_heads = 0;
  int64_t dim = 0;

  int64_t QueryOffset(const PackedSegment& s, int64_t head) const {
    return ((s.row * width + s.start) * query_heads + head) * dim;
  }
  int64_t KvOffset(const PackedSegment& s, int64_t head) const {
    return ((s.row * width + s.start) * kv_heads + head) * dim;
  }
  int64_t query_stride() const { return query_heads * dim; }
  int64_t kv_stride() const { return kv_heads * dim; }
  int64_t group() const { return query_heads / kv_heads; }
};

// Runs work(i) for every i in [0, count) on ATen's intra-op threads, each
// thread taking the next index as it finishes one (the blocks differ in
// size; callers order them largest first).
template <typename Work>
void ForEachBlock(int64_t count, const Work& work) {
  std::atomic<int64_t> next{0};
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), count);
  at::parallel_for(0, std::max<int64_t>(threads, 1), 1, [&](int64_t, int64_t) {
    for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) {
      work(i);
    }
  });
}

// What one call's forward and backward passes share, derived from the
// queries and keys ([R, W, H, d]) and the segment table ([n, 3]: row,
// start, length): the layout, the segments, where each segment's
// probabilities (l^2 per query head) start in the saved buffer and its
// total, and the segments longest first (the order blocks are handed out).
struct Blocks {
  Layout layout;
  std::vector<PackedSegment> segments;
  std::vector<int64_t> offsets;
  int64_t total = 0;
  std::vector<int64_t> order;
};

Blocks PlanBlocks(const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& table) {
  Blocks blocks;
  blocks.layout = {.width = q.size(1),
                   .query_heads = q.size(2),
                   .kv_heads = k.size(2),
                   .dim = q.size(3)};
  const int64_t* data = table.data_ptr<int64_t>();
  for (int64_t i = 0; i < table.size(0); ++i) {
    const PackedSegment s{data[3 * i], data[3 * i + 1], data[3 * i + 2]};
    blocks.segments.push_back(s);
    blocks.offsets.push_back(blocks.total);
    blocks.total += s.length * s.length * blocks.layout.query_heads;
  }
  blocks.order.resize(blocks.segments.size());
  std::iota(blocks.order.begin(), blocks.order.end(), 0);
  std::stable_sort(
      blocks.order.begin(), blocks.order.end(), [&](int64_t a, int64_t b) {
        return blocks.segments[a].length > blocks.segments[b].length;
      });
  return blocks;
}

// Softmax of each row i of the l x l scores over its columns j <= i (and,
// with a window W > 0, j > i - W); the other columns are set to 0.
template <typename T>
void CausalSoftmaxRows(T* scores, int64_t l, int64_t window) {
  for (int64_t i = 0; i < l; ++i) {
    T* row = scores + i * l;
    const int64_t first = window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
    T max = row[first];
    for (int64_t j = first + 1; j <= i; ++j) max = std::max(max, row[j]);
    double sum = 0;
    for (int64_t j = first; j <= i; ++j) {
      row[j] = std::exp(row[j] - max);
      sum += row[j];
    }
    const T inverse = static_cast<T>(1.0 / sum);
    for (int64_t j = first; j <= i; ++j) row[j] *= inverse;
    std::fill(row, row + first, T(0));
    std::fill(row + i + 1, row + l, T(0));
  }
}

template <typename T>
void ForwardBlocks(const Blocks& blocks, T scale, int64_t window, T softcap,
                   const T* queries, const T* keys, const T* values,
                   T* probabilities, T* capped, T* output) {
  const Layout& layout = blocks.layout;
  const std::vector<int64_t>& probability_offsets = blocks.offsets;
  const int64_t heads = layout.query_heads;
  ForEachBlock(
      static_cast<int64_t>(blocks.order.size()) * heads, [&](int64_t i) {
        const int64_t index = blocks.order[i / heads];
        const int64_t head = i % heads;
        const int64_t kv_head = head / layout.group();
        const PackedSegment& s = blocks.segments[index];
        const int64_t l = s.length;
        T* p = probabilities + probability_offsets[index] + head * l * l;
        const int64_t q = layout.QueryOffset(s, head);
        const int64_t kv = layout.KvOffset(s, kv_head);
        Gemm(false, true, l, l, layout.dim, scale, queries + q,
             layout.query_stride(), keys + kv, layout.kv_stride(), T(0), p, l);
        if (capped != nullptr) {
          // Gemma 2: scores c tanh(s / c); the tanh kept for the backward pass.
          T* t = capped + probability_offsets[index] + head * l * l;
          for (int64_t j = 0; j < l * l; ++j) {
            t[j] = std::tanh(p[j] / softcap);
            p[j] = softcap * t[j];
          }
        }
        CausalSoftmaxRows(p, l, window);
        Gemm(false, false, l, layout.dim, l, T(1), p, l, values + kv,
             layout.kv_stride(), T(0), output + q, layout.query_stride());
      });
}

// Gradients of one call. The query heads sharing a K/V head run in one block
// (in order), so that each block alone accumulates its K/V gradients.
template <typename T>
void BackwardBlocks(const Blocks& blocks, T scale, const T* queries,
                    const T* keys, const T* values, const T* probabilities,
                    const T* capped, const T* grad_output, T* grad_queries,
                    T* grad_keys, T* grad_values) {
  const Layout& layout = blocks.layout;
  const std::vector<int64_t>& probability_offsets = blocks.offsets;
  const int64_t kv_heads = layout.kv_heads;
  ForEachBlock(
      static_cast<int64_t>(blocks.order.size()) * kv_heads, [&](int64_t i) {
        const int64_t index = blocks.order[i / kv_heads];
        const int64_t kv_head = i % kv_heads;
        const PackedSegment& s = blocks.segments[index];
        const int64_t l = s.length;
        const int64_t kv = layout.KvOffset(s, kv_head);
        const int64_t d = layout.dim;
        std::vector<T> grad_scores(l * l);
        for (int64_t r = 0; r < layout.group(); ++r) {
          const int64_t head = kv_head * layout.group() + r;
          const T* p =
              probabilities + probability_offsets[index] + head * l * l;
          const int64_t q = layout.QueryOffset(s, head);
          const T accumulate = r == 0 ? T(0) : T(1);
          // dV += P^T dO; dP = dO V^T.
          Gemm(true, false, l, d, l, T(1), p, l, grad_output + q,
               layout.query_stride(), accumulate, grad_values + kv,
               layout.kv_stride());
          Gemm(false, true, l, l, d, T(1), grad_output + q,
               layout.query_stride(), values + kv, layout.kv_stride(), T(0),
               grad_scores.data(), l);
          // dS = P (dP - rowsum(P dP)), the softmax's backward (0 wherever P
          // is: above the diagonal and outside a window).
          for (int64_t row = 0; row < l; ++row) {
            const T* p_row = p + row * l;
            T* g_row = grad_scores.data() + row * l;
            double dot = 0;
            for (int64_t j = 0; j <= row; ++j) dot += p_row[j] * g_row[j];
            for (int64_t j = 0; j <= row; ++j) {
              g_row[j] = p_row[j] * (g_row[j] - static_cast<T>(dot));
            }
            std::fill(g_row + row + 1, g_row + l, T(0));
          }
          if (capped != nullptr) {
            // Through c tanh(s / c): times 1 - tanh^2.
            const T* t = capped + probability_offsets[index] + head * l * l;
            for (int64_t j = 0; j < l * l; ++j) {
              grad_scores[j] *= T(1) - t[j] * t[j];
            }
          }
          // dQ = scale dS K; dK += scale dS^T Q.
          Gemm(false, false, l, d, l, scale, grad_scores.data(), l, keys + kv,
               layout.kv_stride(), T(0), grad_queries + q,
               layout.query_stride());
          Gemm(true, false, l, d, l, scale, grad_scores.data(), l, queries + q,
               layout.query_stride(), accumulate, grad_keys + kv,
               layout.kv_stride());
        }
      });
}

// [R, H, W, d] -> contiguous [R, W, H, d].
at::Tensor HeadsInner(const at::Tensor& x) {
  return x.transpose(1, 2).contiguous();
}

class PackedCausalAttentionFunction
    : public torch::autograd::Function<PackedCausalAttentionFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* context,
                            const at::Tensor& queries, const at::Tensor& keys,
                            const at::Tensor& values,
                            const at::Tensor& segment_table, double scale,
                            int64_t window, double softcap) {
    const at::Tensor q = HeadsInner(queries);
    const at::Tensor k = HeadsInner(keys);
    const at::Tensor v = HeadsInner(values);
    const Blocks blocks = PlanBlocks(q, k, segment_table);
    at::Tensor probabilities = at::empty({blocks.total}, q.options());
    at::Tensor capped =
        softcap > 0 ? at::empty({blocks.total}, q.options()) : at::Tensor();
    at::Tensor output = at::empty(
        {q.size(0), q.size(1), blocks.layout.query_stride()}, q.options());
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "PackedCausalAttention", [&] {
      ForwardBlocks<scalar_t>(
          blocks, static_cast<scalar_t>(scale), window,
          static_cast<scalar_t>(softcap), q.data_ptr<scalar_t>(),
          k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
          probabilities.data_ptr<scalar_t>(),
          capped.defined() ? capped.data_ptr<scalar_t>() : nullptr,
          output.data_ptr<scalar_t>());
    });
    context->save_for_backward({q, k, v, probabilities, segment_table, capped});
    context->saved_data["scale"] = scale;
    return output;
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* context,
      torch::autograd::variable_list grad_outputs) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "PackedCausalAttention is differentiable once: no backward "
                "pass with create_graph=true (double backward)");
    const torch::autograd::variable_list saved = context->get_saved_variables();
    const at::Tensor& q = saved[0];
    const at::Tensor& k = saved[1];
    const at::Tensor& v = saved[2];
    const at::Tensor& probabilities = saved[3];
    const double scale = context->saved_data["scale"].toDouble();
    const Blocks blocks = PlanBlocks(q, k, saved[4]);
    const at::Tensor grad_output = grad_outputs[0].contiguous();
    at::Tensor grad_q = at::empty_like(q);
    at::Tensor grad_k = at::empty_like(k);
    at::Tensor grad_v = at::empty_like(v);
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "PackedCausalAttention", [&] {
      BackwardBlocks<scalar_t>(
          blocks, static_cast<scalar_t>(scale), q.data_ptr<scalar_t>(),
          k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
          probabilities.data_ptr<scalar_t>(),
          saved[5].defined() ? saved[5].data_ptr<scalar_t>() : nullptr,
          grad_output.data_ptr<scalar_t>(), grad_q.data_ptr<scalar_t>(),
          grad_k.data_ptr<scalar_t>(), grad_v.data_ptr<scalar_t>());
    });
    return {grad_q.transpose(1, 2),
            grad_k.transpose(1, 2),
            grad_v.transpose(1, 2),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

std::optional<std::vector<PackedSegment>> PackedSegmentsFromIds(
    const at::Tensor& segment_ids) {
  TORCH_CHECK(segment_ids.dim() == 2, "segment_ids must be [rows, width], got ",
              segment_ids.sizes());
  const at::Tensor ids = segment_ids.to(at::kCPU).to(at::kLong).contiguous();
  const int64_t rows = ids.size(0), width = ids.size(1);
  const int64_t* data = ids.data_ptr<int64_t>();
  std::vector<PackedSegment> segments;
  std::vector<int64_t> seen;
  for (int64_t row = 0; row < rows; ++row) {
    seen.clear();
    const int64_t* row_ids = data + row * width;
    for (int64_t start = 0; start < width;) {
      int64_t end = start + 1;
      while (end < width && row_ids[end] == row_ids[start]) ++end;
      if (std::find(seen.begin(), seen.end(), row_ids[start]) != seen.end()) {
        return std::nullopt;
      }
      seen.push_back(row_ids[start]);
      segments.push_back({row, start, end - start});
      start = end;
    }
  }
  return segments;
}

bool PackedCausalAttentionSupports(const at::Device& device,
                                   at::ScalarType dtype) {
#ifdef LETHE_HAVE_CBLAS
  return device.is_cpu() && (dtype == at::kFloat || dtype == at::kDouble);
#else
  (void)device;
  (void)dtype;
  return false;
#endif
}

at::Tensor PackedCausalAttention(const at::Tensor& queries,
                                 const at::Tensor& keys,
                                 const at::Tensor& values,
                                 const std::vector<PackedSegment>& segments,
                                 double scale, std::optional<int64_t> window,
                                 std::optional<double> softcap) {
  TORCH_CHECK(queries.dim() == 4 && keys.dim() == 4 && values.dim() == 4,
              "PackedCausalAttention: queries, keys and values must be "
              "[rows, heads, width, head_dim], got ",
              queries.sizes(), ", ", keys.sizes(), ", ", values.sizes());
  TORCH_CHECK(keys.sizes() == values.sizes(), "PackedCausalAttention: keys ",
              keys.sizes(), " and values ", values.sizes(), " differ in shape");
  const int64_t rows = queries.size(0), width = queries.size(2);
  TORCH_CHECK(keys.size(0) == rows && keys.size(2) == width &&
                  keys.size(3) == queries.size(3) && keys.size(1) > 0 &&
                  queries.size(1) % keys.size(1) == 0,
              "PackedCausalAttention: queries ", queries.sizes(), " and keys ",
              keys.sizes(),
              " must share rows, width and head_dim, with a multiple of the "
              "K/V heads as query heads");
  TORCH_CHECK(
      PackedCausalAttentionSupports(queries.device(), queries.scalar_type()) &&
          keys.scalar_type() == queries.scalar_type() &&
          values.scalar_type() == queries.scalar_type() &&
          keys.device() == queries.device() &&
          values.device() == queries.device(),
      "PackedCausalAttention: float or double CPU tensors of one "
      "dtype only, got ",
      queries.scalar_type(), " on ", queries.device());
  // Every position of every row in exactly one segment, in order.
  at::Tensor table = at::empty({static_cast<int64_t>(segments.size()), 3},
                               at::TensorOptions().dtype(at::kLong));
  int64_t* entry = table.data_ptr<int64_t>();
  int64_t row = 0, next = 0;
  for (const PackedSegment& s : segments) {
    if (s.row != row) {
      TORCH_CHECK(next == width && s.row == row + 1,
                  "PackedCausalAttention: segments must cover rows in order");
      row = s.row;
      next = 0;
    }
    TORCH_CHECK(s.start == next && s.length > 0 && s.start + s.length <= width,
                "PackedCausalAttention: segment (row ", s.row, ", start ",
                s.start, ", length ", s.length,
                ") does not continue its row's cover at ", next);
    next += s.length;
    *entry++ = s.row;
    *entry++ = s.start;
    *entry++ = s.length;
  }
  TORCH_CHECK(rows == 0 || (row == rows - 1 && next == width),
              "PackedCausalAttention: segments must cover all ", rows,
              " rows of width ", width);
  TORCH_CHECK(!window.has_value() || *window > 0,
              "PackedCausalAttention: a window must be positive, got ",
              window.value_or(0));
  TORCH_CHECK(!softcap.has_value() || *softcap > 0,
              "PackedCausalAttention: a soft-cap must be positive, got ",
              softcap.value_or(0));
  return PackedCausalAttentionFunction::apply(queries, keys, values, table,
                                              scale, window.value_or(0),
                                              softcap.value_or(0));
}

}  // namespace lethe
