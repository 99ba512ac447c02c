// Weights re-laid-out for the kernels: a PyTorch gate matrix (G*H rows, K columns, row-major)
// becomes one panel per block of kUnitBlock hidden units, each panel K rows of G*kUnitBlock
// elements: panel[j][k][g][u] = W[g*H + j*kUnitBlock + u][k]. A kernel walking k reads one
// contiguous stream and accumulates every gate of the block at once. Padded units are zero.
//
// Elements are stored in the matrix's weight type (fp32, fp16, bf16 or int8), the layout the
// same for every type; int8 panels also hold one scale per output column (a gate unit), packed
// like a bias (blocks x G x kUnitBlock, padding 0).
//
// The packed elements are immutable once packed, and copies share them: a copy costs no memory,
// and any number of ops, graphs and threads may read one set of panels.
#pragma once

#include <cstddef>
#include <memory>

#include "core/aligned_buffer.h"
#include "core/dims.h"
#include "core/weight_type.h"

namespace pyrnn {

class PackedPanels {
 public:
  PackedPanels() = default;
  // `weights` is (gates*units, k) row-major in PyTorch's gate order.
  PackedPanels(const WeightMatrix& weights, int gates, int units, int k);

  // The inverse of packing, bit-exact: writes the (gates*units, k) row-major matrix of
  // storage elements (weight_size(type()) bytes each) that was packed; padding is dropped.
  // The panels are the only copy of a module's matrices, read back this way on demand.
  void unpack(void* out) const noexcept;

  WeightType type() const noexcept { return type_; }
  int gates() const noexcept { return gates_; }
  int units() const noexcept { return units_; }
  int k() const noexcept { return k_; }
  int blocks() const noexcept { return block_count(units_); }
  // Elements in one panel row (one k): every gate of one block.
  int row_width() const noexcept { return gates_ * kUnitBlock; }
  // Floats in one output row of a GEMM against these panels: all blocks side by side.
  int output_width() const noexcept { return blocks() * row_width(); }
  // Block j's panel as elements of its storage type `W` (float, Half, BFloat16, std::int8_t).
  template <class W>
  const W* panel_as(int block) const noexcept {
    return reinterpret_cast<const W*>(data_) + static_cast<std::size_t>(block) * k_ * row_width();
  }
  // fp32 panels only.
  const float* panel(int block) const noexcept { return panel_as<float>(block); }
  // int8 panels: the scale of each output column (output_width() floats); null otherwise.
  const float* scales() const noexcept { return scales_.size() ? scales_.data() : nullptr; }
  bool empty() const noexcept { return data_ == nullptr; }
  // Bytes of the packed elements (what a step streams through the caches).
  std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(blocks()) * k_ * row_width() * weight_size(type_);
  }

 private:
  WeightType type_ = WeightType::F32;
  int gates_ = 0;
  int units_ = 0;
  int k_ = 0;
  std::shared_ptr<const AlignedBuffer> storage_;  // elements of type_, in floats' worth
  const float* data_ = nullptr;                   // storage_'s, read by the kernels
  AlignedBuffer scales_;
};

// Packs a PyTorch bias (G*H) into the panel column order (blocks x G x kUnitBlock); a null
// `bias` packs zeros. `extra` (may be null) is added element-wise, to fold b_ih + b_hh.
AlignedBuffer pack_bias(const float* bias, const float* extra, int gates, int units);

}  // namespace pyrnn
