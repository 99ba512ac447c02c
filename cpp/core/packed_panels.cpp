// Re-laying-out one PyTorch gate matrix into per-block panels, and its bias into the same
// column order (layout in packed_panels.h).
#include "core/packed_panels.h"

namespace pyrnn {

PackedPanels::PackedPanels(const float* weights, int gates, int units, int k)
    : gates_(gates), units_(units), k_(k) {
  const std::size_t panel_floats = checked_mul(static_cast<std::size_t>(k), row_width());
  data_.resize(checked_mul(panel_floats, blocks()));
  for (int j = 0; j < blocks(); ++j) {
    float* panel = data_.data() + j * panel_floats;
    for (int g = 0; g < gates; ++g) {
      for (int u = 0; u < kUnitBlock; ++u) {
        const int unit = j * kUnitBlock + u;
        if (unit >= units) break;  // padding stays zero
        const float* row = weights + (static_cast<std::size_t>(g) * units + unit) * k;
        // kk * row_width() in ptrdiff_t: k * 64 exceeds int for k > 2^25.
        float* column = panel + g * kUnitBlock + u;
        for (std::ptrdiff_t kk = 0; kk < k; ++kk) column[kk * row_width()] = row[kk];
      }
    }
  }
}

AlignedBuffer pack_bias(const float* bias, const float* extra, int gates, int units) {
  AlignedBuffer packed(
      checked_mul(checked_mul(static_cast<std::size_t>(block_count(units)), gates), kUnitBlock));
  for (int g = 0; g < gates; ++g) {
    for (int unit = 0; unit < units; ++unit) {
      const int j = unit / kUnitBlock, u = unit % kUnitBlock;
      float value = 0.0f;
      if (bias != nullptr) value += bias[g * units + unit];
      if (extra != nullptr) value += extra[g * units + unit];
      packed.data()[(j * gates + g) * kUnitBlock + u] = value;
    }
  }
  return packed;
}

}  // namespace pyrnn
