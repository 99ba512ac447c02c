// Helpers shared by the op implementations: factories' signature, shape arithmetic, time-axis
// rules that many ops share, and strided copies of element slabs.
#pragma once

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "graph/op.h"

namespace pyrnn::graph::ops {

using Factory = std::unique_ptr<Op> (*)(const BuildContext& ctx);

// Factories, one per op family (the registry maps op names onto them).
std::unique_ptr<Op> make_int_op(const BuildContext& ctx);
std::unique_ptr<Op> make_shape_op(const BuildContext& ctx);
std::unique_ptr<Op> make_unary(const BuildContext& ctx);
std::unique_ptr<Op> make_binary(const BuildContext& ctx);
std::unique_ptr<Op> make_reduction(const BuildContext& ctx);
std::unique_ptr<Op> make_softmax(const BuildContext& ctx);
std::unique_ptr<Op> make_norm(const BuildContext& ctx);
std::unique_ptr<Op> make_linear(const BuildContext& ctx);
std::unique_ptr<Op> make_embedding(const BuildContext& ctx);
std::unique_ptr<Op> make_conv1d(const BuildContext& ctx);
std::unique_ptr<Op> make_pool1d(const BuildContext& ctx);
std::unique_ptr<Op> make_recurrent(const BuildContext& ctx);

inline std::string str(std::int64_t value) { return std::to_string(value); }

[[noreturn]] inline void shape_error(const std::string& message) {
  throw std::invalid_argument(message);
}

inline void require_f32(const ValueMeta& meta, const char* role) {
  if (meta.dtype != DType::F32)
    shape_error(std::string(role) + ": expected float32, got " + dtype_name(meta.dtype));
}

inline void require_rank(const ValueMeta& meta, int low, int high, const char* role) {
  if (meta.shape.rank < low || meta.shape.rank > high)
    shape_error(std::string(role) + ": expected rank " + str(low) +
                (low == high ? "" : " to " + str(high)) + ", got shape " + meta.shape.str());
}

// The time axis rule of ops that keep every axis where it is (element-wise, normalisations
// over other axes): every output carries input 0's time axis.
inline TimeFlow same_axes(const std::vector<int>& input_axes, const NodeDef& node) {
  return {std::vector<int>(node.outputs.size(), input_axes.empty() ? -1 : input_axes[0]), false};
}

// Copies `outer` slabs of `inner` elements: slab o goes from src + o * src_stride to
// dst + o * dst_stride (strides and sizes in bytes).
inline void copy_slabs(const std::byte* src, std::ptrdiff_t src_stride, std::byte* dst,
                       std::ptrdiff_t dst_stride, std::int64_t outer, std::size_t inner) noexcept {
  if (inner == 0) return;
  for (std::int64_t o = 0; o < outer; ++o)
    std::memcpy(dst + o * dst_stride, src + o * src_stride, inner);
}

}  // namespace pyrnn::graph::ops
