// Causal self-attention within the sequences of packed rows
// (libs/data/packed_batch.h), on the CPU, computed segment by segment:
//
//   std::optional<std::vector<PackedSegment>> segments =
//       PackedSegmentsFromIds(segment_ids);            // [R, W] -> runs
//   at::Tensor attended = PackedCausalAttention(
//       queries, keys, values, *segments, 1 / sqrt(head_dim));  // [R, W, H*d]
//
// The result equals softmax(q k^T * scale + mask) v with the block-diagonal
// causal mask of the segments (a query attends to its own and earlier keys
// of its own run of equal segment ids; with a sliding window W, only to the
// W - 1 keys before its own and itself; with a soft-cap c, the scores
// first become c tanh(s / c), Gemma 2's), K/V heads shared by consecutive
// query heads (grouped-query attention), as the masked computation in
// llama_model.cc does, up to rounding. It differs in cost: each segment of
// length l costs l^2 per head instead of each row's W^2, there is no mask,
// no repeated K/V heads and no per-head slicing, and the (row, segment,
// head) blocks run in parallel on ATen's intra-op threads, each calling the
// BLAS from its thread (OpenBLAS's OpenMP build then runs it on that
// thread alone). The BLAS is called directly (cblas, Debian's
// libblas-dev; OpenBLAS at run time) because LibTorch 1.13 exports no
// per-matrix gemm and dispatching one ATen op per block costs more than the
// block's arithmetic at training lengths.
//
// Differentiable once (an autograd function; a backward pass with
// create_graph throws c10::Error). It keeps each block's softmax
// probabilities (and, soft-capped, the tanh) for the backward pass
// (segments' l^2 per head, as the masked computation keeps W^2). Float and
// double CPU tensors only (PackedCausalAttentionSupports); callers use the
// masked computation for other dtypes and devices. Errors are c10::Error,
// like any LibTorch operation's.
#ifndef LETHE_LIBS_MODEL_PACKED_ATTENTION_H_
#define LETHE_LIBS_MODEL_PACKED_ATTENTION_H_

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace lethe {

// A run of positions [start, start + length) of one row holding one segment
// id (one packed sequence, or the row's trailing padding).
struct PackedSegment {
  int64_t row = 0;
  int64_t start = 0;
  int64_t length = 0;
};

// The runs of equal ids of segment_ids [R, W] (any device; read on the CPU),
// row by row. nullopt when an id recurs in a row after another id: a mask
// on ids lets such positions attend to each other and runs do not, so the
// caller must use the mask.
std::optional<std::vector<PackedSegment>> PackedSegmentsFromIds(
    const at::Tensor& segment_ids);

// Whether PackedCausalAttention computes tensors of this kind: CPU, float or
// double, and built with a BLAS.
bool PackedCausalAttentionSupports(const at::Device& device,
                                   at::ScalarType dtype);

// queries [R, Hq, W, d], keys and values [R, Hkv, W, d] (Hq a multiple of
// Hkv, any strides), segments covering every position of every row (as
// PackedSegmentsFromIds returns them), an optional sliding window and
// soft-cap (each > 0). Returns [R, W, Hq * d], each query head's output in
// its d columns (the layout o_proj takes).
at::Tensor PackedCausalAttention(const at::Tensor& queries,
                                 const at::Tensor& keys,
                                 const at::Tensor& values,
                                 const std::vector<PackedSegment>& segments,
                                 double scale,
                                 std::optional<int64_t> window = std::nullopt,
                                 std::optional<double> softcap = std::nullopt);

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_PACKED_ATTENTION_H_
