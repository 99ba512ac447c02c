// Weights re-laid-out for the kernels: a PyTorch gate matrix (G*H rows, K columns, row-major)
// becomes one panel per block of kUnitBlock hidden units, each panel K rows of G*kUnitBlock
// floats: panel[j][k][g][u] = W[g*H + j*kUnitBlock + u][k]. A kernel walking k reads one
// contiguous stream and accumulates every gate of the block at once. Padded units are zero.
#pragma once

#include <cstddef>

#include "core/aligned_buffer.h"
#include "core/dims.h"

namespace pyrnn {

class PackedPanels {
 public:
  PackedPanels() = default;
  // `weights` is (gates*units, k) row-major in PyTorch's gate order.
  PackedPanels(const float* weights, int gates, int units, int k);

  int gates() const noexcept { return gates_; }
  int units() const noexcept { return units_; }
  int k() const noexcept { return k_; }
  int blocks() const noexcept { return block_count(units_); }
  // Floats in one panel row (one k): every gate of one block.
  int row_width() const noexcept { return gates_ * kUnitBlock; }
  // Floats in one output row of a GEMM against these panels: all blocks side by side.
  int output_width() const noexcept { return blocks() * row_width(); }
  const float* panel(int block) const noexcept {
    return data_.data() + static_cast<std::size_t>(block) * k_ * row_width();
  }
  bool empty() const noexcept { return data_.size() == 0; }

 private:
  int gates_ = 0;
  int units_ = 0;
  int k_ = 0;
  AlignedBuffer data_;
};

// Packs a PyTorch bias (G*H) into the panel column order (blocks x G x kUnitBlock); a null
// `bias` packs zeros. `extra` (may be null) is added element-wise, to fold b_ih + b_hh.
AlignedBuffer pack_bias(const float* bias, const float* extra, int gates, int units);

}  // namespace pyrnn
