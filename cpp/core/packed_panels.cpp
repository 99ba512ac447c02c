// Re-laying-out one PyTorch gate matrix into per-block panels of its weight type, and its bias
// into the same column order (layout in packed_panels.h).
#include "core/packed_panels.h"

#include <stdexcept>

namespace pyrnn {

PackedPanels::PackedPanels(const WeightMatrix& weights, int gates, int units, int k)
    : type_(weights.type), gates_(gates), units_(units), k_(k) {
  if (weights.type == WeightType::I8 && weights.scales == nullptr)
    throw std::invalid_argument("pyrnn core: int8 weights need one scale per row");
  const std::size_t element = weight_size(type_);
  const std::size_t panel_elements = checked_mul(static_cast<std::size_t>(k), row_width());
  const std::size_t total = checked_mul(panel_elements, blocks());
  // Storage is counted in floats; narrow elements are packed into them.
  data_.resize((checked_mul(total, element) + sizeof(float) - 1) / sizeof(float));
  auto* out = reinterpret_cast<unsigned char*>(data_.data());
  const auto* in = static_cast<const unsigned char*>(weights.data);
  for (int j = 0; j < blocks(); ++j) {
    for (int g = 0; g < gates; ++g) {
      for (int u = 0; u < kUnitBlock; ++u) {
        const int unit = j * kUnitBlock + u;
        if (unit >= units) break;  // padding stays zero (0 in every type)
        const std::size_t row = static_cast<std::size_t>(g) * units + unit;
        // kk * row_width() in size_t: k * 64 exceeds int for k > 2^25.
        const std::size_t column = j * panel_elements + g * kUnitBlock + u;
        for (std::size_t kk = 0; kk < static_cast<std::size_t>(k); ++kk)
          std::memcpy(out + (column + kk * row_width()) * element, in + (row * k + kk) * element,
                      element);
      }
    }
  }
  if (type_ == WeightType::I8) scales_ = pack_bias(weights.scales, nullptr, gates, units);
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
